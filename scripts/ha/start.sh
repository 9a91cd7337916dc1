#!/usr/bin/env bash
# Start a real Home Assistant on loopback with the `demo` integration, onboard
# an owner, and print `HA_URL=...` and `HA_TOKEN=...` (a long-lived token).
# Running it again while HA is up is a no-op that prints the same lines.
# Usage: scripts/ha/start.sh [CONFIG_DIR] [PORT]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${HA_VENV:-$HOME/.cache/ha-fetchers/ha-venv}"
CONF="${1:-${HA_CONFIG:-$HOME/.cache/ha-fetchers/ha-config}}"
PORT="${2:-${HA_PORT:-8123}}"
URL="http://127.0.0.1:$PORT"
[ -x "$VENV/bin/hass" ] || "$HERE/install.sh" "$VENV" >&2
mkdir -p "$CONF"
[ -f "$CONF/configuration.yaml" ] || sed "s/@PORT@/$PORT/" "$HERE/configuration.yaml" > "$CONF/configuration.yaml"
code() { curl -s -o /dev/null -w '%{http_code}' "$URL$1" 2>/dev/null || true; }
if [ "$(code /api/)" = 000 ]; then
  setsid "$VENV/bin/hass" -c "$CONF" >"$CONF/hass.out" 2>&1 < /dev/null &
  echo $! > "$CONF/hass.pid"
  c=000
  for _ in $(seq 1 240); do
    c=$(code /api/onboarding); [ "$c" = 200 ] && break; sleep 1
  done
  [ "$c" = 200 ] || { echo "home assistant did not come up; see $CONF/hass.out" >&2; exit 1; }
fi
if [ ! -s "$CONF/token" ]; then
  "$VENV/bin/python" "$HERE/onboard.py" "$URL" > "$CONF/token.tmp"
  mv "$CONF/token.tmp" "$CONF/token"
fi
echo "HA_URL=$URL"
echo "HA_TOKEN=$(cat "$CONF/token")"
