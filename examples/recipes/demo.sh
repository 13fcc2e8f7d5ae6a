#!/usr/bin/env bash
# The recipe pipeline end to end on a fresh local broker:
# start tansu on a free port, create the topics, run sluice, load the sample
# pages, print the alerts as they arrive, stop everything this script started.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
target="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
sluice="${SLUICE_BIN:-$target/debug/sluice}"
tansu="${SLUICE_TANSU:-$HOME/.cache/sluice/bin/tansu}"
threshold="${CALORIE_THRESHOLD:-500}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics_port=$(free_port)
admin_port=$(free_port)
export KAFKA_BROKERS="127.0.0.1:$port"
export SLUICE_METRICS="127.0.0.1:$metrics_port"
export SLUICE_ADMIN="127.0.0.1:$admin_port"
export SLUICE_ADMIN_TOKEN="${SLUICE_ADMIN_TOKEN:-$(python3 -c 'import secrets; print(secrets.token_hex(16))')}"
export CALORIE_THRESHOLD="$threshold"
work=$(mktemp -d)
export ALERTS_DB="sqlite://$work/alerts.db"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "==> starting tansu on $KAFKA_BROKERS"
"$tansu" broker --listener-url "tcp://$KAFKA_BROKERS" --advertised-listener-url "tcp://$KAFKA_BROKERS" \
    --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
for t in raw_recipes parsed_recipes alerts recipes_dlq; do
    "$tansu" topic create --broker "tcp://$KAFKA_BROKERS" --partitions 4 "$t" >/dev/null
done

echo "==> checking the pipeline file"
"$sluice" check "$here/pipeline.toml"

echo "==> running sluice (metrics on http://$SLUICE_METRICS/metrics)"
"$sluice" run "$here/pipeline.toml" >"$work/sluice.log" 2>&1 &
sluice_pid=$!
pids+=($sluice_pid)

pages=("$here"/pages/*.html)
echo "==> producing ${#pages[@]} pages to raw_recipes"
"$sluice" produce raw_recipes "${pages[@]}"

expected=$(python3 - "$root/tests/golden/recipe-parser" "$threshold" <<'PY'
import json, pathlib, sys
n = 0
for f in pathlib.Path(sys.argv[1]).glob("*.json"):
    c = json.loads(f.read_text()).get("calories")
    if c is not None and c > float(sys.argv[2]):
        n += 1
print(n)
PY
)
echo "==> alerts (calories > $threshold; expecting $expected):"
"$sluice" consume alerts --max "$expected" --timeout 60s | tee "$work/alerts.jsonl"
got=$(wc -l <"$work/alerts.jsonl")

echo "==> dead-lettered records:"
"$sluice" consume recipes_dlq --max 1 --timeout 5s >"$work/dlq.jsonl"
python3 - "$work/dlq.jsonl" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line)
    h = r["headers"]
    print("  %s: %s: %s" % (r["key"], h.get("sluice.error.kind"), h.get("sluice.error.message")))
PY

echo "==> alerts stored in SQLite ($ALERTS_DB):"
stored=0
for _ in $(seq 100); do
    stored=$(sqlite3 "$work/alerts.db" "SELECT count(*) FROM alerts" 2>/dev/null || echo 0)
    [ "$stored" -ge "$expected" ] && break
    sleep 0.1
done
sqlite3 -header -column "$work/alerts.db" "SELECT name, calories FROM alerts ORDER BY calories DESC"

if [ "$got" -ne "$expected" ] || [ "$stored" -ne "$expected" ]; then
    echo "demo FAILED: expected $expected alerts, got $got on the topic and $stored in SQLite" >&2
    tail -20 "$work/sluice.log" >&2
    exit 1
fi
echo "==> demo OK: $got alerts on the topic and in SQLite"

if [ -n "${SLUICE_DEMO_LIVE:-}" ]; then
    cat <<EOF
==> sluice keeps running (Ctrl-C stops everything). Try a hot swap:
    1. edit plugins/calorie-alert/src/lib.rs (say, add a field to the alert)
    2. in another terminal: just plugins
    3. watch the swap below, and the versions at:
       curl -s -H "Authorization: Bearer $SLUICE_ADMIN_TOKEN" http://$SLUICE_ADMIN/plugins
    4. send the pages again: KAFKA_BROKERS=$KAFKA_BROKERS $sluice produce raw_recipes $here/pages/*.html
       and read the alerts: KAFKA_BROKERS=$KAFKA_BROKERS $sluice consume alerts
EOF
    tail -n +1 -f "$work/sluice.log" | grep --line-buffered -E "swapped|rejected|rolled back|file changed" &
    pids+=($!)
    wait "$sluice_pid" || true
    exit 0
fi

kill -TERM "$sluice_pid"
wait "$sluice_pid" || true
