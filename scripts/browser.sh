#!/usr/bin/env bash
# Installs Debian's headless browser for the console's WebDriver test
# (tests/it/console.rs) when it is missing: `chromium` and `chromium-driver`
# (chromedriver). Prints chromedriver's path on the last line.
# Usage: scripts/browser.sh
set -euo pipefail
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || {
    echo "browser.sh: install chromium and chromedriver (no apt-get here)" >&2; exit 1; }
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  echo "browser.sh: installing chromium and chromium-driver" >&2
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium chromium-driver >/dev/null
fi
command -v chromedriver
