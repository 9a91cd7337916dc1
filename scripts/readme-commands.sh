#!/usr/bin/env bash
# Runs the README's commands, so the docs stay true: the demo (release build;
# with HA_FETCHERS_BIN set, that binary instead, as CI does) and the curl
# lines it prints, `serve` on the settings of .env.example, and `check` on the
# shipped definitions. (`scripts/test.sh` runs in .ci/run itself;
# `docker compose up` needs a Docker engine: .ci/run checks the file instead.)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

bin="${HA_FETCHERS_BIN:-}"
echo "== cargo run --release -- demo${bin:+ (on $bin)}"
if [ -z "$bin" ]; then
    cargo build --release --bin ha-fetchers
    bin="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/release/ha-fetchers"
fi
"$bin" demo --bind 127.0.0.1:0 > "$work/demo.out" 2> "$work/demo.err" &
pids+=($!)
for _ in $(seq 1 300); do grep -q "Serving until Ctrl-C" "$work/demo.out" 2>/dev/null && break; sleep 0.1; done
grep -q "Serving until Ctrl-C" "$work/demo.out" || { cat "$work/demo.out" "$work/demo.err"; echo "demo did not start" >&2; exit 1; }
grep -q "Home status at" "$work/demo.out"
# Every curl line the demo prints must answer with JSON.
grep -E '^  curl ' "$work/demo.out" | while read -r line; do
  out=$(bash -c "${line/curl -s/curl -sf}")
  echo "$out" | python3 -c 'import json,sys; json.load(sys.stdin)' || { echo "not JSON: $line" >&2; exit 1; }
  echo "ok: $line"
done
# The console page it names, and the live stream line (cut after 3 s).
console=$(sed -n 's/^Console: \([^ ]*\).*/\1/p' "$work/demo.out")
curl -sf "$console" | grep -q "<title>ha-fetchers console</title>"
echo "ok: the console answers at $console"
stream=$(grep -o "curl -sN '[^']*'" "$work/demo.out")
out=$(bash -c "${stream/curl -sN/curl -sN --max-time 3}" || true)
echo "$out" | grep -q '^retry: ' || { echo "the stream line did not stream: $stream" >&2; exit 1; }
echo "ok: $stream"
kill -INT "${pids[0]}"; wait "${pids[0]}"; pids=()
echo "demo stopped cleanly on Ctrl-C"

echo "== cp .env.example .env && cargo run --release -- serve && curl -s localhost:8080/api/health"
mkdir -p "$work/run" && cp .env.example "$work/run/.env" && ln -s "$PWD/fetchers" "$work/run/fetchers"
sed -i 's/^BIND=.*/BIND=127.0.0.1:18999/' "$work/run/.env"   # 8080 may be taken on a shared machine
(cd "$work/run" && exec "$bin" serve) > "$work/serve.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s localhost:18999/api/health >/dev/null 2>&1 && break; sleep 0.1; done
health=$(curl -s localhost:18999/api/health)
echo "$health" | python3 -c 'import json,sys; h=json.load(sys.stdin); assert h["websocket"]["configured"] is False, h'
echo "ok: serve answers health with no Home Assistant configured"
kill -INT "${pids[0]}"; wait "${pids[0]}"; pids=()

echo "== ha-fetchers check"
"$bin" check
echo "README commands: all ran"
