#!/usr/bin/env bash
# BENCHMARKS.md's MCP figures: ha-fetchers' /mcp beside Home Assistant's own
# mcp_server (2025.4.4 with `demo`, its config entry made through the REST
# config flow), same real HA, same client (the official Python SDK), one run.
# Also our live-context p50 at 10,000 entities (`demo --house` on a generated house).
# Usage: scripts/bench-mcp.sh      (CALLS=200 per p50)
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/ha/start.sh | grep -E '^HA_(URL|TOKEN)=')"
PY="$(scripts/mcp-client.sh | tail -n 1)"
cargo build --release --bin ha-fetchers
TOKEN=bench-mcp-token
OURS_PORT=18091 BIG_PORT=18092
tmp="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

BIND=127.0.0.1:$OURS_PORT HA_URL="$HA_URL" HA_TOKEN="$HA_TOKEN" API_TOKEN=$TOKEN \
  RUST_LOG=warn target/release/ha-fetchers serve >"$tmp/ours.log" 2>&1 &
pids+=($!)

# 10,000 entities: the demo house plus generated sensors, lights and switches.
"$PY" - "$tmp/house.json" <<'PY'
import json, sys
from pathlib import Path
demo = json.loads(Path("tests/fixtures/home-assistant-2025.4.4/rest-states.json").read_text())
out = list(demo)
for i in range(10_000 - len(out)):
    dom = ("sensor", "light", "switch", "binary_sensor")[i % 4]
    st = {"sensor": str(20 + i % 7), "light": "on" if i % 3 else "off",
          "switch": "off", "binary_sensor": "off"}[dom]
    attrs = {"friendly_name": f"Bench {dom} {i}"}
    if dom == "sensor":
        attrs.update(unit_of_measurement="°C", device_class="temperature")
    if dom == "light":
        attrs.update(brightness=128)
    out.append({"entity_id": f"{dom}.bench_{i}", "state": st, "attributes": attrs,
                "last_changed": "2026-01-01T00:00:00+00:00", "last_updated": "2026-01-01T00:00:00+00:00",
                "context": {"id": f"c{i}", "parent_id": None, "user_id": None}})
Path(sys.argv[1]).write_text(json.dumps(out))
PY
API_TOKEN=$TOKEN RUST_LOG=warn target/release/ha-fetchers demo --bind 127.0.0.1:$BIG_PORT \
  --house "$tmp/house.json" >"$tmp/big.log" 2>&1 &
pids+=($!)

for port in $OURS_PORT $BIG_PORT; do
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$port/api/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
done
sleep 2  # the first snapshot

HA_URL="$HA_URL" HA_TOKEN="$HA_TOKEN" OURS_TOKEN=$TOKEN \
  OURS_URL="http://127.0.0.1:$OURS_PORT/mcp" BIG_URL="http://127.0.0.1:$BIG_PORT/mcp" \
  "$PY" bench/mcp/compare.py
