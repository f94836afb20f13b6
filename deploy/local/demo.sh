#!/usr/bin/env bash
# make demo: the whole noticecast flow on this machine, with a real Kafka broker.
#
# Starts (or reuses) the local broker on $KAFKA_PORT (default 9092), creates the topics,
# publishes the example notice (English, Spanish, Portuguese) and reads it back with kcat,
# a different Kafka client.  The broker keeps running afterwards: `make kafka-down` stops it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${NC_BIN_DIR:-$REPO/build}/noticecast
export KAFKA_PORT=${KAFKA_PORT:-9092}
NOTICE=$REPO/config/examples/moi-egov-latam.json
DEMO=$REPO/var/demo
CONF=$DEMO/noticecast.conf

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "Kafka ${KAFKA_VERSION:-3.9.2} on 127.0.0.1:$KAFKA_PORT (KRaft, single node)"
"$HERE/kafka.sh" fetch
"$HERE/kafka.sh" up

mkdir -p "$DEMO"
# The example configuration, pointed at the local broker.
sed -e "s/^bootstrap.servers = .*/bootstrap.servers = 127.0.0.1:$KAFKA_PORT/" \
	-e "s/^timeout_ms = .*/timeout_ms = 15000/" "$REPO/config/noticecast.conf" >"$CONF"
export NOTICECAST_CONFIG=$CONF

step "Check the configuration and create the topics"
run "$BIN" topics create

step "Validate the example notice (facts of the MOI notice of 2017-06-20, in en/es/pt)"
run "$BIN" validate "$NOTICE"

step "Publish it: one Kafka transaction, idempotent producer, acks=all"
out=$(run "$BIN" publish "$NOTICE")
echo "$out"
IFS=$'\t' read -r id topic partition offset <<<"$(tail -n 1 <<<"$out")"

step "Read it back with kcat (read_committed): topic, key, headers, value"
kcat -b "127.0.0.1:$KAFKA_PORT" -C -t "$topic" -p "$partition" -o "$offset" -c 1 -e -q \
	-X isolation.level=read_committed -J |
	python3 -c '
import json, sys
m = json.loads(sys.stdin.read())
h = m["headers"]
print("topic     :", m["topic"], " partition:", m["partition"], " offset:", m["offset"])
print("key       :", m["key"])
print("headers   :", ", ".join(f"{h[i]}={h[i+1]}" for i in range(0, len(h), 2)))
v = json.loads(m["payload"])
for lang in ("en", "es", "pt"):
    print(f"title.{lang}  :", v["title"][lang])
print("value     :", json.dumps(v, ensure_ascii=False)[:160] + " ...")'
[[ $(kcat -b "127.0.0.1:$KAFKA_PORT" -C -t "$topic" -p "$partition" -o "$offset" -c 1 -e -q -f '%k') == "$id" ]] ||
	{ echo "demo: the key read back is not $id" >&2; exit 1; }

step "A subscriber in Lima who reads Spanish"
run "$BIN" subscribers add --email ana.quispe@example.pe --name "Ana Quispe" --lang es \
	--category news --region PE --frequency daily --tz America/Lima --send-at 07:30
run "$BIN" subscribers list

step "Bad input is refused with file:line: field, and nothing is published"
printf '%s\n' '{"category":"news","title":"Fine"}' \
	'{"category":"news","title":"Injected\r\nBcc: victim@example.org"}' >"$DEMO/bad.ndjson"
set +e
"$BIN" publish "$DEMO/bad.ndjson"
rc=$?
set -e
echo "exit status: $rc (65 = invalid input)"

step "Done"
echo "The broker is still running on 127.0.0.1:$KAFKA_PORT; stop it with: make kafka-down"
