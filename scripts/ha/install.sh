#!/usr/bin/env bash
# Install a real Home Assistant core into a virtual environment, for the
# conformance tests. Picks 2025.4.4 where Python 3.13 is available, else
# 2024.3.3 on Python 3.11/3.12. HA_PYTHON overrides the interpreter.
# Usage: scripts/ha/install.sh [VENV_DIR]   (default: $HOME/.cache/ha-fetchers/ha-venv)
set -euo pipefail
VENV="${1:-${HA_VENV:-$HOME/.cache/ha-fetchers/ha-venv}}"
if [ -x "$VENV/bin/hass" ]; then echo "home assistant already installed in $VENV"; exit 0; fi
PY="${HA_PYTHON:-}"
if [ -z "$PY" ]; then
  for c in python3.13 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3; do
    if "$c" -c 'import sys' >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
PY="${PY:-python3}"
case "$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" in
  3.13) PKGS=("homeassistant==2025.4.4") ;;
  # josepy 2 breaks the cloud import during onboarding on 2024.3.3
  3.11|3.12) PKGS=("homeassistant==2024.3.3" "josepy<2") ;;
  *) echo "no Python 3.11-3.13 found for Home Assistant (set HA_PYTHON)" >&2; exit 1 ;;
esac
mkdir -p "$(dirname "$VENV")"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q "${PKGS[@]}"
echo "home assistant ${PKGS[0]#homeassistant==} installed in $VENV"
