#!/usr/bin/env bash
# The benchmark suite (BENCHMARKS.md), in one command.
# Usage: scripts/bench.sh [--quick] [--no-ha] [--only FIGURE,...] | --stream | --soak [--minutes N]
# Installs redis-benchmark (redis-tools) when missing, starts Redis via
# scripts/services.sh when it does not answer, builds both binaries in release
# mode (the bench is the workspace member bench/) and runs target/release/bench. The full run also starts the real Home
# Assistant through scripts/ha/start.sh (a no-op when it is up).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-benchmark >/dev/null; then
  echo "installing redis-tools for redis-benchmark…" >&2
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-tools >&2
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
  scripts/services.sh >&2
fi
cargo build --release -p bench --bin bench -p ha-fetchers --bin ha-fetchers
exec target/release/bench "$@"
