#!/usr/bin/env bash
# The soak: `ha-fetchers serve` on Redis against a fake HA with 10,000
# entities, 1,000 events/s and 5,000 reads/s for N minutes (default 10).
# Passes when RSS grows < 5 % after warm-up, no request fails, the app logs no
# warning, HA sees no REST call and the cache ends equal to the house.
# Not part of .ci/run (it takes ten minutes); RELIABILITY.md has the last run.
# Usage: scripts/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services.sh >/dev/null
cargo build --release --quiet -p bench --bin bench -p ha-fetchers --bin ha-fetchers
exec target/release/bench --soak --minutes "${1:-10}"
