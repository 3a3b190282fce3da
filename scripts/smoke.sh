#!/usr/bin/env bash
# Smoke test of a compiled binary, as an operator would meet it: copied alone into an empty
# directory (no node_modules), started on a fresh data dir, healthy, ready, stopped by SIGTERM.
# HTTPS as on a LAN address (http_tls = on, here on loopback): curl trusts the generated
# certificate (it names localhost, 127.0.0.1 and ::1), and the CLI logs in pinning the fingerprint
# the server logged, as an operator would after comparing it.
set -euo pipefail
bin="$(realpath "${1:-dist/agentowl}")"
work="$(mktemp -d)"
trap 'kill -9 "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp "$bin" "$work/agentowl"
cd "$work"

./agentowl version
start_ns=$(date +%s%N)
token="smoke-bootstrap-token-0123456789abcdef"
AGENTOWL_DATA_DIR="$work/data" AGENTOWL_HTTP_LISTEN=127.0.0.1:0 AGENTOWL_HTTP_TLS=on AGENTOWL_SMTP_LISTEN=127.0.0.1:0 \
  AGENTOWL_BOOTSTRAP_TOKEN="$token" AGENTOWL_DNS_SERVERS=127.0.0.1:9 AGENTOWL_DNS_TIMEOUT=200ms ./agentowl serve >serve.log 2>&1 &
pid=$!
url=""
for _ in $(seq 1 200); do
  url=$(grep -o '"http":"[^"]*"' serve.log 2>/dev/null | head -1 | cut -d'"' -f4 || true)
  if [[ -n "$url" ]] && curl -sf --cacert data/tls/cert.pem "$url/healthz" >/dev/null; then break; fi
  url=""
  sleep 0.02
done
[[ -n "$url" ]] || { echo "smoke: no healthy /healthz"; cat serve.log; exit 1; }
echo "smoke: healthy at $url after $(( ($(date +%s%N) - start_ns) / 1000000 )) ms (wall clock, including process start)"
[[ "$url" == https://* ]] || { echo "smoke: not HTTPS with http_tls = on: $url"; exit 1; }
curl -sf --cacert data/tls/cert.pem "$url/readyz" >/dev/null || { echo "smoke: /readyz not ready"; curl -s --cacert data/tls/cert.pem "$url/readyz"; exit 1; }
# Read whole, then searched (`curl | grep -q` can fail under pipefail when grep stops reading
# early); on a failure the answer and the log are shown.
metrics=$(curl -s --cacert data/tls/cert.pem -w '\nHTTP %{http_code}' "$url/metrics") || true
grep -q '^agentowl_queue_jobs' <<<"$metrics" || { echo "smoke: /metrics lacks queue depth"; tail -5 <<<"$metrics"; cat serve.log; exit 1; }

# One mail through the whole pipeline: SMTP → spool → mail.process (mailparser in its worker,
# which must be inside the binary) → an event on /v1/events with the parsed text.
smtp=$(grep -o '"smtp":"[^"]*"' serve.log | head -1 | cut -d'"' -f4)
api() { curl -sf --cacert data/tls/cert.pem -H "authorization: Bearer $token" -H 'content-type: application/json' "$@"; }
api -X POST "$url/v1/tenants" -d '{"name":"beta"}' >/dev/null
api -X POST "$url/v1/tenants/beta/bindings" -d '{"name":"mail","type":"email","addresses":["hello"]}' >/dev/null

# The CLI pins the certificate whose fingerprint the server logged, then uses it from the profile.
fingerprint=$(grep -o '"fingerprint":"[^"]*"' serve.log | head -1 | cut -d'"' -f4)
HOME="$work" ./agentowl login --url "$url" --fingerprint "$fingerprint" <<<"$token" >login.out 2>&1 \
  || { echo "smoke: login with the logged fingerprint failed"; cat login.out; exit 1; }
tenants=$(HOME="$work" ./agentowl tenants ls 2>&1) || { echo "smoke: the pinned CLI cannot list tenants"; echo "$tenants"; exit 1; }
grep -q beta <<<"$tenants" || { echo "smoke: the pinned CLI does not see tenant beta"; echo "$tenants"; exit 1; }
echo "smoke: HTTPS served; the CLI pinned $fingerprint and used it"
if command -v swaks >/dev/null; then
  swaks --server "$smtp" --to hello@beta.agentowl.lan --from smoke@example.com --header "Subject: smoke" \
    --body "smoke body parsed" --silent 2 || { echo "smoke: SMTP refused the message"; cat serve.log; exit 1; }
  for _ in $(seq 1 100); do
    events=$(api "$url/v1/events?tenant=beta")
    grep -q 'smoke body parsed' <<<"$events" && break
    sleep 0.05
  done
  grep -q 'smoke body parsed' <<<"$events" || { echo "smoke: no parsed email event"; echo "$events"; cat serve.log; exit 1; }
  grep -q '"parse_warnings":\[\]' <<<"$events" || { echo "smoke: the message was not parsed cleanly"; echo "$events"; exit 1; }
  echo "smoke: a mail over SMTP became an event with its parsed text"
else
  echo "smoke: swaks not installed: SMTP round trip skipped"
fi
kill -TERM "$pid"
wait "$pid" && rc=0 || rc=$?
[[ $rc -eq 0 ]] || { echo "smoke: exit code $rc after SIGTERM"; cat serve.log; exit 1; }
grep -q '"msg":"stopped"' serve.log || { echo "smoke: no clean stop logged"; cat serve.log; exit 1; }
# The WAL checkpoint worker, another module that must be inside the binary: it logs if it cannot run.
if grep -q '"msg":"WAL checkpoint"' serve.log; then echo "smoke: the checkpoint worker did not run"; grep '"WAL checkpoint"' serve.log; exit 1; fi
[[ -s data/agentowl.db ]] || { echo "smoke: no database written"; exit 1; }
echo "smoke: ok (started, healthy, ready, migrated, stopped cleanly)"
