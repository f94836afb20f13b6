#!/usr/bin/env bash
# Installs what noticecast needs to build and test on Debian 12 (bookworm):
# build tools + library headers from apt, the integration-test Python packages (pinned in
# tests/integration/requirements.txt) with pip, and axe-core (the accessibility checker the
# browser tests inject into the pages, tests/integration/browser.py) from the npm registry.
# Idempotent.
#
#   install-deps.sh           install whatever is missing
#   install-deps.sh --check   install nothing; exit 0 if everything is present, else list what
#                             is missing and exit 1
#   install-deps.sh --bench   also what `make bench` needs: nginx (the HTTP sink) and wrk
#                             (with --check: check those too)
#
# Java (JRE 17+) and Maven are needed by deploy/local/kafka.sh to fetch and run the test broker;
# they are installed from apt too if `java` / `mvn` are not on PATH, and so is npm (to fetch
# axe-core) if `npm` is not.
#
# The browser tests (test_39) drive Debian's Chromium with its ChromeDriver through Selenium,
# with a Korean font so that the Korean pages render in screenshots.  axe-core (AXE_VERSION) is
# fetched with `npm pack`, its tarball checked against the integrity pinned below, and only
# axe.min.js kept, in ${NC_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/noticecast}/axe-core-VERSION/
# (the cache root of deploy/local/kafka.sh).
#
# Postfix is for the tests of the inbound mail loop, which run private instances of it with
# their own configuration directories on free loopback ports (tests/integration/postfix.py),
# and for the benchmarks' smtp-sink / smtp-source.
#
# Installing Debian's nginx or postfix normally starts the packaged service.  The tests and
# benchmarks never use those (they run their own instances and sinks on free loopback ports), so while installing, a
# temporary /usr/sbin/policy-rc.d (exit 101: "do not start services") is put in place if the
# machine has none, and removed afterwards.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
REQUIREMENTS=$REPO/tests/integration/requirements.txt

APT_PACKAGES=(
	build-essential pkg-config
	librdkafka-dev libjansson-dev libcurl4-openssl-dev libesmtp-dev libssl-dev
	libgmime-3.0-dev libmicrohttpd-dev
	libcmocka-dev
	kcat clang-format shellcheck mandoc netcat-openbsd tzdata openssl
	prometheus # promtool: make check-monitoring, the /metrics tests
	systemd python3-seccomp # make systemd-check (systemd-analyze, offline); test_08's sandbox
	chromium chromium-driver fonts-nanum # the browser tests (test_39): Chromium, its driver, Korean
	postfix # test_42, test_44: a private Postfix on loopback (the inbound mail loop); smtp-sink
)
PY_MODULES=(pytest confluent_kafka standardwebhooks aiosmtpd selenium)
# axe-core: tests/integration/browser.py reads AXE_VERSION from this line.
AXE_VERSION=4.14.1
AXE_INTEGRITY=sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==
CACHE_ROOT=${NC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noticecast}
AXE_JS=$CACHE_ROOT/axe-core-$AXE_VERSION/axe.min.js
BENCH_PACKAGES=(nginx wrk)

check=0 bench=0
for arg in "$@"; do
	case $arg in
	--check) check=1 ;;
	--bench) bench=1 ;;
	-h | --help)
		sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "usage: $0 [--check] [--bench]" >&2
		exit 64
		;;
	esac
done
((bench)) && APT_PACKAGES+=("${BENCH_PACKAGES[@]}")

missing_apt=()
for p in "${APT_PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing_apt+=("$p")
	fi
done
command -v java >/dev/null || missing_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing_apt+=(maven)
missing_axe=0
[[ -s $AXE_JS ]] || missing_axe=1
if ((missing_axe)) && ! command -v npm >/dev/null; then missing_apt+=(npm); fi

missing_py=()
if ! command -v python3 >/dev/null; then
	missing_py=("${PY_MODULES[@]}")
	missing_apt+=(python3 python3-pip)
else
	for m in "${PY_MODULES[@]}"; do
		python3 -c "import $m" 2>/dev/null || missing_py+=("$m")
	done
fi

# The linters of `make lint` (deploy/deploy.mk), in their own cache: see that script.
lint_tools=1
"$HERE/install-lint-tools.sh" --check >/dev/null || lint_tools=0

if ((check)); then
	if ((${#missing_apt[@]} == 0 && ${#missing_py[@]} == 0 && !missing_axe && lint_tools)); then
		echo "install-deps: all dependencies present"
		exit 0
	fi
	((${#missing_apt[@]})) && echo "install-deps: missing Debian packages: ${missing_apt[*]}"
	((${#missing_py[@]})) && echo "install-deps: missing Python modules: ${missing_py[*]} (see $REQUIREMENTS)"
	((missing_axe)) && echo "install-deps: missing axe-core $AXE_VERSION: $AXE_JS"
	((lint_tools)) || "$HERE/install-lint-tools.sh" --check
	exit 1
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || {
		echo "install-deps: not root and no sudo" >&2
		exit 1
	}
	SUDO=(sudo)
fi

# npm pack axe-core@$AXE_VERSION into a temporary directory, check the tarball against
# AXE_INTEGRITY, keep only package/axe.min.js (renamed into place: never a half-written file).
fetch_axe() {
	local tmp tgz want got
	tmp=$(mktemp -d)
	# shellcheck disable=SC2064 # expand $tmp now: it is local
	trap "rm -rf '$tmp'; remove_policy" EXIT
	tgz=$(cd "$tmp" && npm pack --silent "axe-core@$AXE_VERSION" | tail -n 1)
	[[ -f $tmp/$tgz ]] || {
		echo "install-deps: npm pack axe-core@$AXE_VERSION made no tarball" >&2
		exit 1
	}
	want=${AXE_INTEGRITY#sha512-}
	got=$(openssl dgst -sha512 -binary "$tmp/$tgz" | base64 -w0)
	if [[ $got != "$want" ]]; then
		echo "install-deps: axe-core-$AXE_VERSION tarball: sha512 $got, expected $want" >&2
		exit 1
	fi
	tar -xzf "$tmp/$tgz" -C "$tmp" package/axe.min.js
	mkdir -p "${AXE_JS%/*}"
	mv -f "$tmp/package/axe.min.js" "$AXE_JS.tmp"
	mv -f "$AXE_JS.tmp" "$AXE_JS"
	rm -rf "$tmp"
	trap remove_policy EXIT
}

POLICY=/usr/sbin/policy-rc.d
made_policy=0
remove_policy() { if ((made_policy)); then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap remove_policy EXIT
if ((${#missing_apt[@]})); then
	echo "install-deps: installing Debian packages: ${missing_apt[*]}"
	if [[ ! -e $POLICY ]]; then
		printf '#!/bin/sh\n# temporary, from noticecast deploy/local/install-deps.sh\nexit 101\n' |
			"${SUDO[@]}" tee "$POLICY" >/dev/null
		"${SUDO[@]}" chmod 755 "$POLICY"
		made_policy=1
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${SUDO[@]}" apt-get update -q
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing_apt[@]}"
	remove_policy
	made_policy=0
else
	echo "install-deps: Debian packages present"
fi

if ((${#missing_py[@]})); then
	echo "install-deps: installing Python packages from $REQUIREMENTS"
	# PIP_BREAK_SYSTEM_PACKAGES only matters for a Debian-managed python3 (PEP 668);
	# a pyenv/venv interpreter ignores it.
	PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore \
		--only-binary=confluent-kafka -r "$REQUIREMENTS"
else
	echo "install-deps: Python modules present"
fi

if ((missing_axe)); then
	echo "install-deps: fetching axe-core $AXE_VERSION with npm into ${AXE_JS%/*}"
	fetch_axe
else
	echo "install-deps: axe-core $AXE_VERSION present"
fi

((lint_tools)) || "$HERE/install-lint-tools.sh"

# verify
if ((bench)); then "$0" --check --bench; else "$0" --check; fi
