#!/usr/bin/env bash
# The benchmark suite (BENCHMARKS.md), in one command.
# Usage: scripts/bench.sh [--quick] [--no-ha] [--only FIGURE,...] | --write | --stream | --soak [--minutes N]
# Installs redis-benchmark (redis-tools) when missing, starts Redis via
# scripts/services.sh when it does not answer, builds both binaries in release
# mode (the bench is the workspace member bench/) and runs target/release/bench
# ($CARGO_TARGET_DIR/release/bench when CARGO_TARGET_DIR is set). The full run also starts the real Home
# Assistant through scripts/ha/start.sh (a no-op when it is up).
# --write (a full run only, no other flag): afterwards, puts the run's block
# (target/bench/current.md) between BENCHMARKS.md's bench:current markers and
# moves the block that was there to the top of "Earlier runs", under a heading
# with its date and commit.
set -euo pipefail
cd "$(dirname "$0")/.."

write=0
args=()
for a in "$@"; do
  if [ "$a" = --write ]; then write=1; else args+=("$a"); fi
done
if [ "$write" = 1 ] && [ "${#args[@]}" -gt 0 ]; then
  echo "bench.sh: --write records only a full run; drop ${args[*]} (no --quick, --only, --no-ha or other mode)" >&2
  exit 2
fi

# splice [--check] BENCHMARKS.md [current.md]: with --check, only whether
# BENCHMARKS.md can take a new block (markers in place, the old block dated).
splice() {
  python3 - "$@" <<'PY'
import re, sys

START, END = "<!-- bench:current:start -->", "<!-- bench:current:end -->"
args = sys.argv[1:]
check = args[:1] == ["--check"]
if check:
    args = args[1:]
md_path = args[0]
md = open(md_path, encoding="utf-8").read()

def fail(msg):
    sys.exit(f"bench.sh --write: {md_path}: {msg}")

if md.count(START) != 1 or md.count(END) != 1 or md.index(START) > md.index(END):
    fail(f"needs one {START} line followed by one {END} line")
before, rest = md.split(START, 1)
old, after = rest.split(END, 1)
old = old.strip("\n")
heading = None
if old:
    first = old.splitlines()[0]
    date = re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC", first)
    commit = re.search(r"commit `?([^\s`,;]+)", first)
    if not date or not commit:
        fail("the current block's first line has no 'YYYY-MM-DD HH:MM UTC' "
             "and 'commit <hash>': move it under Earlier runs by hand")
    heading = f"### {date.group(0)} ({commit.group(1)})"
section = re.search(r"^## Earlier runs[^\n]*\n", after, re.M)
if not section:
    fail("has no '## Earlier runs' section after the markers")
if check:
    sys.exit(0)

new = open(args[1], encoding="utf-8").read().strip("\n")
if "mode: full;" not in new.split("\n", 1)[0]:
    sys.exit(f"bench.sh --write: {args[1]} is not from a full run (its first line "
             "lacks 'mode: full;'); BENCHMARKS.md unchanged")
if old:
    # The top of the section: before its first run's heading, after any
    # introduction; at its end when it has no run yet.
    nxt = re.compile(r"^#{2,3} ", re.M).search(after, section.end())
    at = nxt.start() if nxt else len(after)
    moved = f"{heading}\n\n{old}\n" + ("\n" if nxt else "")
    if not after[:at].endswith("\n\n"):
        moved = "\n" + moved
    after = after[:at] + moved + after[at:]
open(md_path, "w", encoding="utf-8").write(
    f"{before}{START}\n{new}\n{END}{after}")
print(f"{md_path}: the run is the current table" +
      (f"; the previous one is now under '{heading}'" if heading else ""))
PY
}

if [ "$write" = 1 ]; then
  splice --check BENCHMARKS.md
  rm -f target/bench/current.md
fi
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
# Where cargo put them; the run's own files still go to target/bench/.
bench="${CARGO_TARGET_DIR:-target}/release/bench"
if [ "$write" = 0 ]; then
  exec "$bench" "$@"
fi
"$bench"
if [ ! -s target/bench/current.md ]; then
  echo "bench.sh --write: the run left no target/bench/current.md; BENCHMARKS.md unchanged" >&2
  exit 1
fi
splice BENCHMARKS.md target/bench/current.md
