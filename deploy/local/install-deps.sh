#!/usr/bin/env bash
# Installs what noticecast needs to build and test on Debian 12 (bookworm):
# build tools + library headers from apt, and the integration-test Python packages (pinned in
# tests/integration/requirements.txt) with pip.  Idempotent.
#
#   install-deps.sh           install whatever is missing
#   install-deps.sh --check   install nothing; exit 0 if everything is present, else list what
#                             is missing and exit 1
#   install-deps.sh --bench   also what `make bench` needs: nginx (the HTTP sink), wrk, and
#                             postfix for smtp-sink / smtp-source (with --check: check those too)
#
# Java (JRE 17+) and Maven are needed by deploy/local/kafka.sh to fetch and run the test broker;
# they are installed from apt too if `java` / `mvn` are not on PATH.
#
# Installing Debian's nginx or postfix normally starts the packaged service.  The benchmarks
# never use those (they run their own sinks on free loopback ports), so while installing, a
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
)
PY_MODULES=(pytest confluent_kafka standardwebhooks aiosmtpd)
BENCH_PACKAGES=(nginx wrk postfix)

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
	if ((${#missing_apt[@]} == 0 && ${#missing_py[@]} == 0 && lint_tools)); then
		echo "install-deps: all dependencies present"
		exit 0
	fi
	((${#missing_apt[@]})) && echo "install-deps: missing Debian packages: ${missing_apt[*]}"
	((${#missing_py[@]})) && echo "install-deps: missing Python modules: ${missing_py[*]} (see $REQUIREMENTS)"
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

((lint_tools)) || "$HERE/install-lint-tools.sh"

# verify
if ((bench)); then "$0" --check --bench; else "$0" --check; fi
