#!/usr/bin/env bash
# Stop the Home Assistant that start.sh started. Usage: scripts/ha/stop.sh [CONFIG_DIR]
set -euo pipefail
CONF="${1:-${HA_CONFIG:-$HOME/.cache/ha-fetchers/ha-config}}"
if [ -f "$CONF/hass.pid" ]; then
  pid=$(cat "$CONF/hass.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  rm -f "$CONF/hass.pid"
fi
