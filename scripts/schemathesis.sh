#!/usr/bin/env bash
# Contract test: starts `ha-fetchers demo` (a simulated house, no services needed)
# and runs schemathesis against its /api/openapi.json. Every response must match the
# document: documented status code, content type, headers and schema, and no 5xx the
# document does not list. Bounded: ST_MAX_EXAMPLES per operation, ST_TIMEOUT overall.
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5 # works with Python 3.11
VENV="$HOME/.cache/ha-fetchers/st-venv"
PORT="${ST_PORT:-18787}"
MAX_EXAMPLES="${ST_MAX_EXAMPLES:-100}"
TIMEOUT="${ST_TIMEOUT:-180}"
# The demo runs with a token so the document's bearer scheme is exercised too.
TOKEN="st-$RANDOM$RANDOM"
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method,allow_header_conformance,missing_required_header,ignored_auth

command -v python3 >/dev/null || { echo "schemathesis.sh: python3 is missing (apt-get install python3 python3-venv)" >&2; exit 1; }
if ! "$VENV/bin/st" --version 2>/dev/null | grep -qF "$ST_VERSION"; then
    echo "schemathesis.sh: installing schemathesis $ST_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$ST_VERSION"
fi

# HA_FETCHERS_BIN: a binary already built (CI's test build), else build one.
bin="${HA_FETCHERS_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --quiet --bin ha-fetchers
    bin="${CARGO_TARGET_DIR:-target}/debug/ha-fetchers"
fi
log="$(mktemp)"
API_TOKEN="$TOKEN" "$bin" demo --bind "127.0.0.1:$PORT" >"$log" 2>&1 &
demo=$!
stop_demo() {
    kill "$demo" 2>/dev/null || true
    wait "$demo" 2>/dev/null || true
    rm -f "$log"
}
trap stop_demo EXIT

# The demo prints `API: http://…` once it serves (on another port if ours is busy).
base=""
for _ in $(seq 150); do
    base="$(sed -n 's/^API: //p' "$log")"
    [ -n "$base" ] && break
    kill -0 "$demo" 2>/dev/null || { cat "$log" >&2; echo "schemathesis.sh: the demo exited" >&2; exit 1; }
    sleep 0.2
done
[ -n "$base" ] || { cat "$log" >&2; echo "schemathesis.sh: the demo did not start" >&2; exit 1; }

echo "schemathesis.sh: checking $base/api/openapi.json"
timeout "$TIMEOUT" "$VENV/bin/st" run "$base/api/openapi.json" \
    --checks "$CHECKS" \
    --exclude-path /api/v1/events \
    --header "Authorization: Bearer $TOKEN" \
    --max-examples "$MAX_EXAMPLES" \
    --request-timeout 10 \
    --seed "${ST_SEED:-1}" \
    --no-color
