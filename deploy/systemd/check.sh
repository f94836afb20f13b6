#!/usr/bin/env bash
# make systemd-check: the units as `make install` writes them, checked offline (systemd need
# not be PID 1): `systemd-analyze verify` must be clean and `systemd-analyze security
# --offline=true` exposure at most MAX_EXPOSURE (default 2.0) for each unit; a templated
# unit is checked as an instance.
#
#   check.sh BUILD_DIR      (the programs and man pages are taken from there)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$(cd "${1:?usage: check.sh BUILD_DIR}" && pwd)
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
command -v systemd-analyze >/dev/null || {
	echo "systemd-check: systemd-analyze not found (apt-get install systemd)" >&2
	exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The man pages where man(1) finds them, for Documentation=man:...
for sec in 1 5 8; do
	mkdir -p "$work/man/man$sec"
	cp "$BUILD"/man/*."$sec" "$work/man/man$sec/"
done
# ExecStart= must name an executable that exists: the built programs.
units=()
for in in "$HERE"/*.service.in; do
	name=$(basename "$in" .in)
	sed -e "s|@BINDIR@|$BUILD|g" -e 's|@SYSCONFDIR@|/etc|g' -e 's|@SYSTEMDUNITDIR@|/usr/lib/systemd/system|g' \
		"$in" >"$work/$name"
	units+=("$work/${name/@./@check.}")
done

failures=0
if ! out=$(MANPATH=$work/man systemd-analyze verify "${units[@]}" 2>&1) || [[ -n $out ]]; then
	echo "$out"
	echo "systemd-check: systemd-analyze verify is not clean" >&2
	failures=1
fi
for u in "${units[@]}"; do
	line=$(systemd-analyze security --offline=true "$u" 2>&1 | grep 'Overall exposure level')
	level=$(grep -oE '[0-9]+\.[0-9]+' <<<"$line" | head -1)
	printf 'systemd-check: %-34s exposure %s\n' "$(basename "$u")" "$level"
	if ! awk -v l="$level" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(l != "" && l <= m) }'; then
		echo "systemd-check: $(basename "$u"): exposure ${level:-?} is above $MAX_EXPOSURE" >&2
		failures=1
	fi
done
((failures == 0)) && echo "systemd-check: verify clean, every unit at most $MAX_EXPOSURE"
exit "$failures"
