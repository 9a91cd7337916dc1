#!/usr/bin/env bash
# The whole test suite on a fresh machine: starts (or installs) MariaDB and
# Redis, installs and starts a real Home Assistant for the conformance tests
# (2025.4.4, then the real-HA tests again on 2024.3.3),
# headless Chromium for the console and the official MCP Python SDK for the
# protocol tests, then runs every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh
eval "$(scripts/ha/start.sh | grep -E '^HA_(URL|TOKEN)=')"
export HA_TEST_URL="$HA_URL" HA_TEST_TOKEN="$HA_TOKEN" HA_CONFORMANCE_REQUIRED=1
# tests/it/real_ha_restarts.rs restarts a second HA of its own (port 8124) this often.
export HA_RESTARTS="${HA_RESTARTS:-10}"
unset HA_URL HA_TOKEN
# Headless Chromium drives the console through WebDriver (tests/it/console.rs).
CHROMEDRIVER="$(scripts/browser.sh | tail -n 1)"
export CHROMEDRIVER BROWSER_REQUIRED=1
# The official MCP Python SDK drives /mcp (tests/it/mcp_python.rs): a client nobody here wrote.
MCP_PYTHON="$(scripts/mcp-client.sh | tail -n 1)"
export MCP_PYTHON MCP_CLIENT_REQUIRED=1
# sqlx::test makes a fresh database per test; it keeps its bookkeeping in this one.
mysql -h 127.0.0.1 -P 3306 -uroot -e 'CREATE DATABASE IF NOT EXISTS ha_fetchers_test'
export DATABASE_URL="mysql://root@127.0.0.1:3306/ha_fetchers_test"
export REDIS_TEST_URL="redis://127.0.0.1:6379"
cargo test --workspace --all-targets --no-fail-fast "$@"

# The real-HA conformance and restart tests once more, against Home Assistant
# 2024.3.3 (Python 3.12/3.11), each version in a virtual environment of its own.
# HA_SECOND=0 skips this pass.
if [ "${HA_SECOND:-1}" = 1 ]; then
    older="$(scripts/ha/start-2024.sh)"
    HA_TEST_URL="$(sed -n 's/^HA_URL=//p' <<<"$older")" \
    HA_TEST_TOKEN="$(sed -n 's/^HA_TOKEN=//p' <<<"$older")" \
    HA_VENV="$(sed -n 's/^HA_VENV=//p' <<<"$older")" \
    HA_RESTARTS_PORT=8126 HA_RESTARTS_CONFIG="$HOME/.cache/ha-fetchers/ha-restarts-2024.3.3" \
        cargo test --workspace --test it --no-fail-fast "$@" -- real_ha
fi
