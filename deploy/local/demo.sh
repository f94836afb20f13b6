#!/usr/bin/env bash
# make demo: the whole noticecast flow on this machine, with a real Kafka broker.
#
# Starts (or reuses) the local broker on $KAFKA_PORT (default 9092), creates the topics, starts
# a local webhook receiver and noticecast-webhooks with two partner agencies (one per payload
# format), a local SMTP server and noticecast-mailer with two subscribers (Spanish in Lima,
# English in London), publishes the example notice (English, Spanish, Portuguese) and an
# urgent alert, reads the notice back with kcat, shows it arriving signed at both partners and
# shows the emails: the urgent alert at once and the daily digest at the subscribers' send
# time.  The broker keeps running afterwards (`make kafka-down` stops it); everything else
# is stopped at the end.
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

mkdir -p "$DEMO/secrets"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SINK_PORT=$(free_port)
for p in pe-pcm sp-prefeitura; do
	[[ -s $DEMO/secrets/$p ]] || (umask 077 && python3 -c 'import base64,os; print("whsec_" + base64.b64encode(os.urandom(32)).decode())' >"$DEMO/secrets/$p")
done
# The example configuration, pointed at the local broker, plus two partner agencies.
sed -e "s/^bootstrap.servers = .*/bootstrap.servers = 127.0.0.1:$KAFKA_PORT/" \
	-e "s/^timeout_ms = .*/timeout_ms = 15000/" "$REPO/config/noticecast.conf" >"$CONF"
SMTP_PORT=$(free_port)
MAILER_PORT=$(free_port)
UNSUB_PORT=$(free_port)
[[ -s $DEMO/secrets/unsubscribe ]] || (umask 077 && head -c 48 /dev/urandom | base64 >"$DEMO/secrets/unsubscribe")
cat >>"$CONF" <<PARTNERS

[mailer]
group_id = demo-mailer
listen = 127.0.0.1:$MAILER_PORT
public_listen = 127.0.0.1:$UNSUB_PORT
from_name = Ministry of the Interior
from_address = notices@mois.example.go.kr
list_id = notices.mois.example.go.kr
unsubscribe_url = http://127.0.0.1:$UNSUB_PORT/unsubscribe
unsubscribe_mailto = unsubscribe@mois.example.go.kr
unsubscribe_secret_file = $DEMO/secrets/unsubscribe
templates = $REPO/config/templates
message_id_domain = mois.example.go.kr

[smtp]
host = 127.0.0.1
port = $SMTP_PORT
starttls = off
sessions = 2

[webhooks]
group_id = demo-webhooks
listen = 127.0.0.1:0

# Peru's Presidency of the Council of Ministers: notices for Peru, standard payload
[partner.pe-pcm]
url = http://127.0.0.1:$SINK_PORT/pe-pcm
secret_file = $DEMO/secrets/pe-pcm
regions = PE
format = standard

# The city of São Paulo: notices for Brazil, as CloudEvents
[partner.sp-prefeitura]
url = http://127.0.0.1:$SINK_PORT/sp-prefeitura
secret_file = $DEMO/secrets/sp-prefeitura
regions = BR
format = cloudevents
PARTNERS
export NOTICECAST_CONFIG=$CONF

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	exec 7>&- 2>/dev/null || true
	wait 2>/dev/null || true
}
trap cleanup EXIT

step "Check the configuration and create the topics"
run "$BIN" topics create

step "Start a webhook receiver (127.0.0.1:$SINK_PORT) and noticecast-webhooks"
python3 "$HERE/webhook-sink.py" "$SINK_PORT" "/pe-pcm=$DEMO/secrets/pe-pcm" \
	"/sp-prefeitura=$DEMO/secrets/sp-prefeitura" >"$DEMO/sink.log" 2>&1 &
pids+=($!)
run "${BIN%/*}/noticecast-webhooks" -n
"${BIN%/*}/noticecast-webhooks" >"$DEMO/webhooks.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do grep -q 'msg="assigned' "$DEMO/webhooks.log" && break; sleep 0.2; done
grep -E 'http listening|started|assigned' "$DEMO/webhooks.log" | sed 's/^/    /'

step "Start an SMTP server (127.0.0.1:$SMTP_PORT); two subscribers"
rm -rf "$DEMO/mail" "$DEMO/smtp.in" && mkdir -p "$DEMO/mail" && mkfifo "$DEMO/smtp.in"
python3 "$REPO/tests/integration/smtp_server.py" --port "$SMTP_PORT" --spool "$DEMO/mail" \
	<"$DEMO/smtp.in" >"$DEMO/smtp.log" 2>&1 &
pids+=($!)
exec 7>"$DEMO/smtp.in" # keeps the server's command input open until the end
# Daily digests go out at each subscriber's local send time.  So that nobody waits, the demo
# sets the send time a few minutes ahead and, when it starts the mailer, runs the planner's
# clock (only the planner's) ahead by as much, minus five seconds.
now=$(date +%s)
target=$(((now / 60 + 3) * 60))
lima_at=$(TZ=America/Lima date -d "@$target" +%H:%M)
london_at=$(TZ=Europe/London date -d "@$target" +%H:%M)
run "$BIN" subscribers add --email ana.quispe@example.pe --name "Ana Quispe" --lang es \
	--category news --category alerts --region PE --frequency daily --tz America/Lima \
	--send-at "$lima_at"
run "$BIN" subscribers add --email j.smith@example.org --name "Jane Smith" --lang en \
	--frequency daily --tz Europe/London --send-at "$london_at"
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

step "The notice arrives at both partners, signed (one standard payload, one CloudEvent)"
for _ in $(seq 1 100); do [[ $(grep -c '^POST' "$DEMO/sink.log") -ge 2 ]] && break; sleep 0.2; done
cat "$DEMO/sink.log"
[[ $(grep -c 'signature: VALID' "$DEMO/sink.log") -ge 2 ]] ||
	{ echo "demo: expected two validly signed deliveries" >&2; exit 1; }
sleep 1 # the delivery events are produced right after the HTTP answers
run "$BIN" deliveries "$id"

step "An urgent alert: it is emailed at once to every subscriber of the category"
run "$BIN" publish --category alerts --priority urgent --region PE --lang es \
	--title "Mantenimiento del portal de gobierno digital esta noche" \
	--body "El portal estará fuera de servicio de 23:00 a 01:00 (hora de Lima)."

step "Start noticecast-mailer (urgent alerts at once, digests at the send time)"
clock_offset=$((target - $(date +%s) - 5))
run "${BIN%/*}/noticecast-mailer" -n
"${BIN%/*}/noticecast-mailer" --clock-offset "$clock_offset" >"$DEMO/mailer.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 150); do grep -q 'view loaded' "$DEMO/mailer.log" && break; sleep 0.2; done
grep -E 'http listening|started|view loaded|plans the digests' "$DEMO/mailer.log" | sed 's/^/    /'

step "The emails (SMTP server spool: $DEMO/mail)"
echo "waiting for the urgent alerts and for the daily digests due at $lima_at in Lima / $london_at in London ..."
for _ in $(seq 1 600); do [[ $(find "$DEMO/mail" -maxdepth 1 -name '*.eml' 2>/dev/null | wc -l) -ge 4 ]] && break; sleep 0.25; done
python3 - "$DEMO/mail" <<'PY'
import email, email.policy, glob, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.eml")), key=lambda p: int(os.path.basename(p)[:-4])):
    m = email.message_from_bytes(open(f, "rb").read(), policy=email.policy.default)
    text = m.get_body(("plain",)).get_content()
    print(f"{os.path.basename(f):7} To: {m['To']}")
    print(f"        Subject: {m['Subject']}")
    print(f"        parts: {', '.join(p.get_content_type() + '; charset=' + str(p.get_content_charset()) for p in m.iter_parts())}")
    print(f"        List-Unsubscribe-Post: {m['List-Unsubscribe-Post']}   Message-ID: {m['Message-ID']}")
    print("        | " + "\n        | ".join(l for l in text.splitlines()[:6] if l.strip()))
PY
n=$(find "$DEMO/mail" -maxdepth 1 -name '*.eml' 2>/dev/null | wc -l)
[[ $n -ge 4 ]] || { echo "demo: expected 4 emails (2 alerts, 2 digests), got $n" >&2; tail -5 "$DEMO/mailer.log" >&2; exit 1; }
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
echo "The receivers and the daemons stop now (logs and the emails are in var/demo/)."
echo "The broker is still running on 127.0.0.1:$KAFKA_PORT; stop it with: make kafka-down"
