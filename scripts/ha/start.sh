#!/usr/bin/env bash
# Start a real Home Assistant on loopback with the `demo` integration, onboard
# an owner, and print `HA_URL=...` and `HA_TOKEN=...` (a long-lived token).
# Running it again while HA is up is a no-op that prints the same lines.
# Usage: scripts/ha/start.sh [CONFIG_DIR] [PORT]
# With HA_TLS_CERT, HA_TLS_KEY and HA_TLS_CA set, HA serves https itself
# (`http: ssl_certificate`/`ssl_key`) and HA_URL is https://.
# HA_INSTALL_ONLY=1 installs it and stops there (CI installs while it compiles).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${HA_VENV:-$HOME/.cache/ha-fetchers/ha-venv}"
CONF="${1:-${HA_CONFIG:-$HOME/.cache/ha-fetchers/ha-config}}"
PORT="${2:-${HA_PORT:-8123}}"
URL="http://127.0.0.1:$PORT"
curl_tls=()
[ -x "$VENV/bin/hass" ] || "$HERE/install.sh" "$VENV" >&2
[ "${HA_INSTALL_ONLY:-0}" = 1 ] && exit 0
mkdir -p "$CONF"
# Written each start, so a run with TLS and one without never mix.
sed "s/@PORT@/$PORT/" "$HERE/configuration.yaml" > "$CONF/configuration.yaml"
if [ -n "${HA_TLS_CERT:-}" ]; then
  URL="https://127.0.0.1:$PORT"
  curl_tls=(--cacert "$HA_TLS_CA")
  sed -i "s|^  server_port: .*|&\n  ssl_certificate: $HA_TLS_CERT\n  ssl_key: $HA_TLS_KEY|" "$CONF/configuration.yaml"
fi
code() { curl -s "${curl_tls[@]}" -o /dev/null -w '%{http_code}' "$URL$1" 2>/dev/null || true; }
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
  HA_TLS_CA="${HA_TLS_CA:-}" "$VENV/bin/python" "$HERE/onboard.py" "$URL" > "$CONF/token.tmp"
  # HA saves its auth store a moment later: a stop before that (the restart
  # test stops HA soon after this) would leave a token the next start refuses.
  # The token's `iss` is its refresh token's id; wait until the store has it.
  iss=$("$VENV/bin/python" -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))["iss"])' "$(cat "$CONF/token.tmp")")
  for _ in $(seq 1 60); do
    grep -q "$iss" "$CONF/.storage/auth" 2>/dev/null && break; sleep 1
  done
  grep -q "$iss" "$CONF/.storage/auth" || { echo "home assistant did not save the new token; see $CONF/hass.out" >&2; exit 1; }
  mv "$CONF/token.tmp" "$CONF/token"
fi
# Until HA says RUNNING its integrations (the demo's lights) are still being
# set up, and a stop now may be lost. A 401 means a token this HA never saved.
auth=(-H "Authorization: Bearer $(cat "$CONF/token")")
state=""
for _ in $(seq 1 240); do
  body=$(curl -s "${curl_tls[@]}" -w '\n%{http_code}' "${auth[@]}" "$URL/api/config" 2>/dev/null || true)
  case "${body##*$'\n'}" in
    401) echo "home assistant refuses the token in $CONF/token; delete $CONF to start over" >&2; exit 1 ;;
    200) case "$body" in *'"state":"RUNNING"'*|*'"state": "RUNNING"'*) state=RUNNING; break ;; esac ;;
  esac
  sleep 1
done
[ "$state" = RUNNING ] || { echo "home assistant did not reach RUNNING; see $CONF/hass.out" >&2; exit 1; }
echo "HA_URL=$URL"
echo "HA_TOKEN=$(cat "$CONF/token")"
