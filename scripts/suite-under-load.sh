#!/usr/bin/env bash
# Runs the README's test command RUNS times in a row (default 5) while a release
# build of the workspace competes for the cores, the way a busy CI machine does.
# Stops at the first failing run. Prints the wall time of each run.
#
#   scripts/suite-under-load.sh            # 5 runs
#   RUNS=2 scripts/suite-under-load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${RUNS:-5}"

# Build the tests first so that every timed run measures the suite, not its compilation.
cargo test --workspace --no-run --quiet

# The competing build: a release build in its own target directory, started again
# with a clean slate whenever it finishes, until the runs are over.
hog_dir="$(mktemp -d)"
# setsid: the hog gets a process group of its own, so one kill stops cargo and rustc too.
setsid bash -c '
  while :; do
    CARGO_TARGET_DIR="$1" cargo build --release --workspace --quiet >/dev/null 2>&1 || true
    rm -rf "$1/release"
  done' hog "$hog_dir" &
hog=$!
trap 'kill -- -$hog 2>/dev/null || true; wait $hog 2>/dev/null || true; rm -rf "$hog_dir"' EXIT

for i in $(seq "$runs"); do
  start=$(date +%s)
  if ! cargo test --workspace --quiet >"$hog_dir.run$i.log" 2>&1; then
    echo "run $i of $runs FAILED after $(( $(date +%s) - start )) s; log: $hog_dir.run$i.log"
    grep -E "panicked|FAILED|failed" "$hog_dir.run$i.log" | head -20
    exit 1
  fi
  echo "run $i of $runs passed in $(( $(date +%s) - start )) s (a release build running alongside)"
  rm -f "$hog_dir.run$i.log"
done
