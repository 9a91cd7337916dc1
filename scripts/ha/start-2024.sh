#!/usr/bin/env bash
# The older Home Assistant the conformance tests also run against: 2024.3.3 on
# Python 3.12 or 3.11, in a virtual environment and config folder of its own,
# on its own port (default 8125). Prints HA_URL=… and HA_TOKEN=… like start.sh
# and HA_VENV=… for the restart test, which starts its own instances.
# Usage: scripts/ha/start-2024.sh [PORT]
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PORT="${1:-8125}"
PY=""
for c in python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 \
         python3.11 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.11*/bin/python3; do
  if "$c" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12))' >/dev/null 2>&1; then
    PY="$c"; break
  fi
done
[ -n "$PY" ] || { echo "start-2024.sh: Home Assistant 2024.3.3 needs Python 3.11 or 3.12" >&2; exit 1; }
export HA_PYTHON="$PY" HA_VENV="$HOME/.cache/ha-fetchers/ha-venv-2024.3.3"
"$HERE/start.sh" "$HOME/.cache/ha-fetchers/ha-config-2024.3.3" "$PORT"
[ "${HA_INSTALL_ONLY:-0}" = 1 ] && exit 0
echo "HA_VENV=$HA_VENV"
