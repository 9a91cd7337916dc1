#!/usr/bin/env bash
# Installs the official Model Context Protocol Python SDK (`mcp` from PyPI)
# into a virtual environment of its own, for tests/mcp/client.py: the client
# nobody on this project wrote. Prints the venv's python on the last line.
# Usage: scripts/mcp-client.sh [VENV_DIR]   (default: $HOME/.cache/ha-fetchers/mcp-venv)
set -euo pipefail
VENV="${1:-${MCP_VENV:-$HOME/.cache/ha-fetchers/mcp-venv}}"
# The SDK release the tests were written against; bump it deliberately.
MCP_VERSION="${MCP_VERSION:-2.3.0}"
PY="${MCP_PYTHON_BASE:-python3}"
if ! "$VENV/bin/python" -c "import mcp, importlib.metadata as m; assert m.version('mcp') == '$MCP_VERSION'" 2>/dev/null; then
  if ! "$PY" -m venv --help >/dev/null 2>&1 || ! "$PY" -c 'import ensurepip' 2>/dev/null; then
    as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq python3-venv >&2
  fi
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q "mcp==$MCP_VERSION" >&2
  echo "mcp $MCP_VERSION installed in $VENV" >&2
fi
echo "$VENV/bin/python"
