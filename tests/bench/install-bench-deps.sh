#!/usr/bin/env bash
# Installs what the webhook benchmark (tests/bench/webhooks.sh) needs beyond
# deploy/local/install-deps.sh, from Debian 12 packages: nginx (the HTTP sink) and wrk (the
# reference load generator).  Idempotent: runs `apt-get update` and `apt-get install` only if
# something is missing.
#
#   install-bench-deps.sh           install whatever is missing
#   install-bench-deps.sh --check   install nothing; exit 0 if everything is present, else list
#                                   what is missing and exit 1
#
# Installing Debian's nginx normally starts the packaged service on port 80.  The benchmark
# never uses it (it runs its own nginx on a free loopback port), so while installing, a
# temporary /usr/sbin/policy-rc.d (exit 101: "do not start services") is put in place if the
# machine has none, and removed afterwards.
set -euo pipefail

APT_PACKAGES=(nginx wrk libcurl4-openssl-dev pkg-config build-essential python3)

check=0
case ${1:-} in
--check) check=1 ;;
"") ;;
-h | --help)
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "usage: $0 [--check]" >&2
	exit 64
	;;
esac

missing=()
for p in "${APT_PACKAGES[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]} == 0)); then
	exit 0
fi
if ((check)); then
	echo "missing Debian packages: ${missing[*]}" >&2
	exit 1
fi

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	command -v sudo >/dev/null || {
		echo "install-bench-deps.sh: need root (or sudo) to install: ${missing[*]}" >&2
		exit 1
	}
	SUDO=(sudo)
fi

POLICY=/usr/sbin/policy-rc.d
made_policy=0
cleanup() { if ((made_policy)); then "${SUDO[@]}" rm -f "$POLICY"; fi; }
trap cleanup EXIT
if [[ ! -e $POLICY ]]; then
	printf '#!/bin/sh\n# temporary, from noticecast tests/bench/install-bench-deps.sh\nexit 101\n' |
		"${SUDO[@]}" tee "$POLICY" >/dev/null
	"${SUDO[@]}" chmod 755 "$POLICY"
	made_policy=1
fi

echo "install-bench-deps.sh: installing ${missing[*]}"
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	"${missing[@]}" >/dev/null
