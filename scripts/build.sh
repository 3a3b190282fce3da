#!/usr/bin/env bash
# Builds the single-file binary: dist/agentowl for this machine, or for every SPEC §15 target
# with --all (dist/agentowl-<os>-<arch>). Bun embeds the runtime, the code and the migrations.
set -euo pipefail
cd "$(dirname "$0")/.."
BUN="${BUN:-node_modules/.bin/bun}"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
flags=(build --compile --minify --sourcemap=none --bytecode --format=esm
  --define "AGENTOWL_COMMIT=\"$commit\"" src/main.ts src/mail/parse-worker.ts src/control/desired/parse-worker.ts src/store/sqlite/checkpoint-worker.ts)

mkdir -p dist
if [[ "${1:-}" == "--all" ]]; then
  for target in linux-x64 linux-arm64 darwin-arm64 darwin-x64; do
    "$BUN" "${flags[@]}" --target="bun-$target" --outfile "dist/agentowl-$target"
  done
else
  "$BUN" "${flags[@]}" --outfile dist/agentowl
fi
