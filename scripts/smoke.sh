#!/usr/bin/env bash
# Smoke test of a compiled binary, as an operator would meet it: copied alone into an empty
# directory (no node_modules), started on a fresh data dir, healthy, ready, stopped by SIGTERM.
set -euo pipefail
bin="$(realpath "${1:-dist/agentowl}")"
work="$(mktemp -d)"
trap 'kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp "$bin" "$work/agentowl"
cd "$work"

./agentowl version
start_ns=$(date +%s%N)
AGENTOWL_DATA_DIR="$work/data" AGENTOWL_HTTP_LISTEN=127.0.0.1:0 AGENTOWL_SMTP_LISTEN=127.0.0.1:0 ./agentowl serve >serve.log 2>&1 &
pid=$!
url=""
for _ in $(seq 1 200); do
  url=$(grep -o '"http":"[^"]*"' serve.log 2>/dev/null | head -1 | cut -d'"' -f4 || true)
  if [[ -n "$url" ]] && curl -sf "$url/healthz" >/dev/null; then break; fi
  url=""
  sleep 0.02
done
[[ -n "$url" ]] || { echo "smoke: no healthy /healthz"; cat serve.log; exit 1; }
echo "smoke: healthy at $url after $(( ($(date +%s%N) - start_ns) / 1000000 )) ms (wall clock, including process start)"
curl -sf "$url/readyz" >/dev/null || { echo "smoke: /readyz not ready"; curl -s "$url/readyz"; exit 1; }
curl -sf "$url/metrics" | grep -q '^agentowl_queue_jobs' || { echo "smoke: /metrics lacks queue depth"; exit 1; }
kill -TERM "$pid"
wait "$pid" && rc=0 || rc=$?
[[ $rc -eq 0 ]] || { echo "smoke: exit code $rc after SIGTERM"; cat serve.log; exit 1; }
grep -q '"msg":"stopped"' serve.log || { echo "smoke: no clean stop logged"; cat serve.log; exit 1; }
[[ -s data/agentowl.db ]] || { echo "smoke: no database written"; exit 1; }
echo "smoke: ok (started, healthy, ready, migrated, stopped cleanly)"
