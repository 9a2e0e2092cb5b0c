#!/usr/bin/env bash
# Reproduces docs/benchmarks.md: builds flatstore-bench (Release), runs the contention
# scenarios with REPEAT runs per system (3 by default: about 20 minutes on 2 vCPUs, of
# which wal_bound takes 5), and writes docs/benchmarks/contention.json, the printed table
# docs/benchmarks/contention.txt and the plots. Needs the packages of setup-debian.sh.
#
#   scripts/bench-contention.sh [REPEAT] [SYNC_DELAY_US]
#
# With SYNC_DELAY_US, every SQLite sync takes that many microseconds longer, as on a disk
# whose flush is slower than this machine's (flatstore-bench --sync-delay-us; lmdb is left
# out), and everything is written to docs/benchmarks/sync-delay-<N>us/ instead.
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=${1:-3}
out=docs/benchmarks
flags=()
if [[ -n "${2:-}" ]]; then
  out=docs/benchmarks/sync-delay-${2}us
  flags=(--sync-delay-us "$2")
fi
cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=Release -DFLATSTORE_BUILD_TESTS=ON \
  -DFLATSTORE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/rel -j2 --target flatstore-bench
mkdir -p "$out"
build/rel/tests/bench/flatstore-bench --filter '^(storm_|reads_|priority_|wal_bound$|scaling_)' \
  --repeat "$repeat" "${flags[@]}" --json "$out/contention.json" | tee "$out/contention.txt"
scripts/plot-benchmarks.sh "$out/contention.json" "$out"
