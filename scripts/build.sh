#!/usr/bin/env bash
# Builds the single-file agentowl binary: Bun embeds its runtime, the code, the console's assets
# and the migrations, and stamps the version, the commit and the target in (`agentowl version --json`).
#
#   scripts/build.sh                      dist/agentowl, for this machine (what `npm run build` runs)
#   scripts/build.sh --all                the release: every target below, into dist/release/
#   scripts/build.sh --target linux-x64   the release of some targets only (repeatable)
#   scripts/build.sh --out DIR            the release into DIR instead of dist/release
#
# A release holds, per target, the binary (agentowl-<target>) and a tarball
# (agentowl-<version>-<target>.tar.gz: the binary, install.sh, the systemd unit, the launchd plist
# and INSTALL), and SHA256SUMS over all of them (`sha256sum -c SHA256SUMS`). A cross target needs
# Bun's runtime for it, which `bun build` downloads once (from the npm registry, @oven/bun-<target>);
# a target that cannot be built is reported at the end, the others are still built, and the exit
# status is 1. docs/operations.md describes the release and the install.
set -euo pipefail
cd "$(dirname "$0")/.."
BUN="${BUN:-node_modules/.bin/bun}"
ALL_TARGETS=(linux-x64 linux-arm64 darwin-arm64 darwin-x64)

die() {
  echo "build.sh: $*" >&2
  exit 2
}

targets=()
out=""
while (($#)); do
  case "$1" in
    --all) targets=("${ALL_TARGETS[@]}") ;;
    --target)
      [[ $# -ge 2 ]] || die "--target needs one of: ${ALL_TARGETS[*]}"
      [[ " ${ALL_TARGETS[*]} " == *" $2 "* ]] || die "unknown target '$2' (one of: ${ALL_TARGETS[*]})"
      targets+=("$2")
      shift
      ;;
    --out)
      [[ $# -ge 2 ]] || die "--out needs a directory"
      out="$2"
      shift
      ;;
    -h | --help)
      sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
  shift
done

version="$("$BUN" -e 'console.log(require("./package.json").version)')"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ "$commit" != unknown && -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  commit="$commit-dirty"
fi

host_target() {
  local os arch
  case "$(uname -s)" in Linux) os=linux ;; Darwin) os=darwin ;; *) os="$(uname -s | tr '[:upper:]' '[:lower:]')" ;; esac
  case "$(uname -m)" in x86_64 | amd64) arch=x64 ;; aarch64 | arm64) arch=arm64 ;; *) arch="$(uname -m)" ;; esac
  echo "$os-$arch"
}

# The binary starts with JavaScriptCore's tier-up thresholds times this: code that runs once at
# start-up stays in the interpreter instead of compiling (and paging in the optimizing compilers),
# about 4 MB less resident at idle; `agentowl serve` sets the normal policy back once it serves.
JIT_POLICY=20

# compile TARGET OUTFILE [--target=bun-TARGET]: the workers are entry points of their own, so
# that the binary finds them inside its embedded filesystem (src/mail/parse.ts says why).
compile() {
  local target="$1" outfile="$2"
  shift 2
  "$BUN" build --compile --minify --sourcemap=none --bytecode --format=esm --compile-jit-policy="$JIT_POLICY" "$@" \
    --define "AGENTOWL_COMMIT=\"$commit\"" --define "AGENTOWL_TARGET=\"$target\"" \
    src/main.ts src/mail/parse-worker.ts src/mail/sender-auth-worker.ts src/control/desired/parse-worker.ts src/store/sqlite/checkpoint-worker.ts src/backup/worker.ts \
    src/store/postgres/bridge-worker.ts \
    --outfile "$outfile"
}

# record_order BINARY ORDERFILE: start BINARY's `serve` on a data dir that `init` made (what a user
# gets on power-on) and write the order its start-up runs functions in (BUN_BYTECODE_ORDER_OUT).
# Compiled again with --bytecode-order, start-up's bytecode sits together in the binary: a start
# reads fewer of its pages, about 6 MiB less resident (docs/performance.md). False when the run
# did not get to serving; the binary is then left as it is.
record_order() {
  local bin="$1" order="$2" tmp pid i ok=1
  tmp="$(mktemp -d)"
  rm -f "$order"
  if AGENTOWL_DATA_DIR="$tmp/data" "$bin" init </dev/null >/dev/null 2>&1; then
    BUN_BYTECODE_ORDER_OUT="$order" AGENTOWL_DATA_DIR="$tmp/data" AGENTOWL_HTTP_LISTEN=127.0.0.1:0 \
      AGENTOWL_SMTP_LISTEN=127.0.0.1:0 AGENTOWL_LOG_LEVEL=info "$bin" serve </dev/null >"$tmp/log" 2>&1 &
    pid=$!
    for ((i = 0; i < 200; i++)); do
      if grep -q '"agentowl serving"' "$tmp/log"; then
        ok=0
        break
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
  [[ $ok == 0 && -s "$order" ]]
}

if ((${#targets[@]} == 0)); then
  mkdir -p dist
  compile "$(host_target)" dist/agentowl
  order="$(mktemp)"
  if record_order dist/agentowl "$order"; then
    compile "$(host_target)" dist/agentowl --bytecode-order="$order"
  else
    echo "build.sh: recording the start-up order failed; dist/agentowl is built without it" >&2
  fi
  rm -f "$order"
  exit 0
fi

out="${out:-dist/release}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi
}

# The same bytes from the same commit: fixed owner, modes, order and dates in the tarball.
pack() {
  local dir="$1" tarball="$2"
  if tar --version 2>/dev/null | grep -q GNU; then
    local mtime
    mtime="@$(git log -1 --format=%ct 2>/dev/null || echo 0)"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -C "$stage" -czf "$tarball" "$dir"
  else
    tar --uid 0 --gid 0 -C "$stage" -czf "$tarball" "$dir"
  fi
}

install_text() {
  cat <<EOF
AgentOwl $version ($1, commit $commit)

Install as a service (Linux with systemd, or macOS with launchd), as root, from this folder:

  sudo ./install.sh

It creates the service user and the data dir, installs the binary, runs 'agentowl init' (which
prints the first admin's console password and API token once: store them), installs, enables
and starts the service, waits until it is ready, and prints the console URL and the SMTP address.
See what it would do first with --dry-run. Other options: --prefix DIR (default /usr/local),
--data-dir DIR, --upgrade (keeps the previous binary as agentowl.prev), --uninstall (keeps the
data dir unless --purge). './install.sh --help' lists them all.

Check the download first:  sha256sum -c SHA256SUMS --ignore-missing
Run without installing:     ./agentowl serve   (data in ./data)
EOF
}

built=()
failed=()
for target in "${targets[@]}"; do
  echo "build.sh: $target" >&2
  bin="$out/agentowl-$target"
  log="$stage/build-$target.log"
  if ! compile "$target" "$bin" --target="bun-$target" >"$log" 2>&1; then
    cat "$log" >&2
    failed+=("$target: $(grep -v '^\s*$' "$log" | tail -1)")
    rm -f "$bin"
    continue
  fi
  dir="agentowl-$version-$target"
  rm -rf "${stage:?}/$dir"
  mkdir -p "$stage/$dir/systemd" "$stage/$dir/launchd"
  cp "$bin" "$stage/$dir/agentowl"
  cp install.sh "$stage/$dir/install.sh"
  cp systemd/agentowl.service "$stage/$dir/systemd/"
  cp launchd/dev.agentowl.agentowl.plist "$stage/$dir/launchd/"
  install_text "$target" >"$stage/$dir/INSTALL"
  chmod 0755 "$stage/$dir/agentowl" "$stage/$dir/install.sh"
  chmod 0644 "$stage/$dir/INSTALL" "$stage/$dir/systemd/agentowl.service" "$stage/$dir/launchd/dev.agentowl.agentowl.plist"
  pack "$dir" "$out/$dir.tar.gz"
  built+=("agentowl-$target" "$dir.tar.gz")
done

# SHA256SUMS names every file of the release in this folder, whichever run built it.
(
  cd "$out"
  files=()
  for f in agentowl-*; do [[ -f "$f" && "$f" != *.log ]] && files+=("$f"); done
  if ((${#files[@]})); then sha256 "${files[@]}" >SHA256SUMS; fi
)

echo "build.sh: built ${#built[@]} files in $out: ${built[*]:-none}" >&2
if ((${#failed[@]})); then
  echo "build.sh: NOT built (the others are complete and in SHA256SUMS):" >&2
  for f in "${failed[@]}"; do echo "  $f" >&2; done
  echo "build.sh: a cross target needs Bun's runtime for it, downloaded from the npm registry (@oven/bun-<target>)" >&2
  exit 1
fi
