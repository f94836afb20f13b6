# deploy/deploy.mk: checks of the Kubernetes manifests and the container image, included by
# the Makefile; `make lint` runs deploy-lint.  The tools come from deploy/local/install-lint-tools.sh
# (run by deploy/local/install-deps.sh) into a cache; docs/kubernetes.md says what each checks.
#
#   make deploy-lint     kustomize render, kubeconform -strict, kube-score, hadolint, the
#                        build-context check and the pod secrets check
#   make deploy-render   only write the rendered manifests to $(DEPLOY_OUT)
#   make image           podman (or buildah) build of deploy/container/Containerfile
#   make image-check     the built image's programs run as 10001 in the pods' layout

LINT_TOOLS_DIR = $(shell deploy/local/install-lint-tools.sh --print-dir)
LINT_BIN := $(LINT_TOOLS_DIR)/bin
DEPLOY_OUT := $(BUILD)/deploy
K8S_DIRS := deploy/kubernetes/base deploy/kubernetes/overlays/example
# Kubernetes releases validated against (the schemas install-lint-tools.sh extracts).
K8S_VERSIONS := 1.30.0 1.37.0
KUBECONFORM_SCHEMAS := $(LINT_TOOLS_DIR)/schemas/{{ .NormalizedKubernetesVersion }}-local{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json
# kubectl's built-in kustomize if there is one, else the one install-lint-tools.sh built.
KUSTOMIZE = $(if $(shell kubectl kustomize --help >/dev/null 2>&1 && echo y),kubectl kustomize,$(LINT_BIN)/kustomize build)
IMAGE ?= noticecast:$(VERSION)

.PHONY: deploy-lint deploy-render deploy-lint-tools image image-check image-base-debootstrap

deploy-lint-tools:
	@deploy/local/install-lint-tools.sh --check >/dev/null || deploy/local/install-lint-tools.sh

deploy-render: deploy-lint-tools
	@mkdir -p $(DEPLOY_OUT)
	@set -e; for d in $(K8S_DIRS); do \
		out=$(DEPLOY_OUT)/$$(echo $$d | tr / _).yaml; \
		$(KUSTOMIZE) $$d > $$out; echo "rendered $$d -> $$out"; done

# kubeconform: also a deliberately invalid copy must be rejected, so a run that validates
# nothing (no schema found, a wrong location) cannot pass.
deploy-lint: deploy-render $(BUILD)/noticecast-webhooks $(BUILD)/noticecast-mailer
	@set -e; for v in $(K8S_VERSIONS); do \
		echo "kubeconform -strict (Kubernetes $$v)"; \
		$(LINT_BIN)/kubeconform -strict -summary -kubernetes-version $$v \
			-schema-location '$(KUBECONFORM_SCHEMAS)' $(DEPLOY_OUT)/*.yaml; \
		mkdir -p $(DEPLOY_OUT)/negative; sed 's/^  replicas: 2$$/  replicas: 2\n  replicaz: 2/' \
			$(DEPLOY_OUT)/deploy_kubernetes_base.yaml > $(DEPLOY_OUT)/negative/invalid.yaml; \
		if $(LINT_BIN)/kubeconform -strict -kubernetes-version $$v \
			-schema-location '$(KUBECONFORM_SCHEMAS)' $(DEPLOY_OUT)/negative/invalid.yaml >/dev/null; then \
			echo "kubeconform accepted an unknown field: the schemas are not in use" >&2; exit 1; fi; \
		done; rm -rf $(DEPLOY_OUT)/negative
	@echo "kube-score (CRITICAL or WARNING fails)"
	@$(LINT_BIN)/kube-score score --output-format ci --exit-one-on-warning \
		$(DEPLOY_OUT)/deploy_kubernetes_overlays_example.yaml > $(DEPLOY_OUT)/kube-score.txt \
		|| { grep -v '^\[OK\]\|^\[SKIPPED\]' $(DEPLOY_OUT)/kube-score.txt; exit 1; }
	@cut -d' ' -f1 $(DEPLOY_OUT)/kube-score.txt | sort | uniq -c
	@echo "hadolint deploy/container/Containerfile"
	@$(LINT_BIN)/hadolint deploy/container/Containerfile
	@python3 deploy/container/check_context.py $(if $(shell command -v podman),--podman) .
	@python3 deploy/kubernetes/check_pod_secrets.py $(DEPLOY_OUT)/deploy_kubernetes_overlays_example.yaml \
		$(BUILD) config/templates deploy/container/copy-secrets.sh; rc=$$?; \
		[ $$rc -eq 0 ] || [ $$rc -eq 77 ]

# Needs the base image debian:12-slim from a registry, or IMAGE_BASE=an image of Debian 12 that is
# here already (make image-base-debootstrap).  IMAGE_ISOLATION=chroot where the OCI runtime cannot
# create containers (docs/kubernetes.md, "Image").
IMAGE_BASE ?=
IMAGE_ISOLATION ?=
IMAGE_FLAGS = $(if $(IMAGE_BASE),--build-arg BASE=$(IMAGE_BASE)) $(if $(IMAGE_ISOLATION),--isolation $(IMAGE_ISOLATION)) --format docker
image:
	@if command -v podman >/dev/null; then \
		podman build $(IMAGE_FLAGS) -f deploy/container/Containerfile -t $(IMAGE) .; \
	elif command -v buildah >/dev/null; then \
		buildah bud $(IMAGE_FLAGS) -f deploy/container/Containerfile -t $(IMAGE) .; \
	else echo "make image: needs podman or buildah" >&2; exit 1; fi

# The image's own programs, copy-secrets and templates in the pods' layout (check_pod_secrets.py
# --root), and no build tree, .git or var/ in it.
image-check: deploy-render
	@set -e; root=$$(podman image mount $(IMAGE)); trap 'podman image unmount $(IMAGE) >/dev/null' EXIT; \
		for p in noticecast noticecast-webhooks noticecast-mailer; do \
			chroot --userspec=10001:10001 $$root /usr/bin/$$p -V | head -1; done; \
		left=$$(find $$root -xdev \( -name .git -o -path '*/var/demo' -o -path "$$root/src" \) -print); \
		[ -z "$$left" ] || { echo "image-check: found in the image: $$left" >&2; exit 1; }; \
		python3 deploy/kubernetes/check_pod_secrets.py --root $$root \
			$(DEPLOY_OUT)/deploy_kubernetes_overlays_example.yaml

# A Debian 12 base image made here from Debian's packages, for machines that reach no
# container registry: make image IMAGE_BASE=localhost/nc-bookworm-minbase:12 IMAGE_ISOLATION=chroot
image-base-debootstrap:
	@command -v debootstrap >/dev/null || { echo "apt-get install debootstrap" >&2; exit 1; }
	rm -rf $(BUILD)/bookworm-rootfs
	debootstrap --variant=minbase bookworm $(BUILD)/bookworm-rootfs http://deb.debian.org/debian
	tar -C $(BUILD)/bookworm-rootfs -c . | podman import - localhost/nc-bookworm-minbase:12
	rm -rf $(BUILD)/bookworm-rootfs
