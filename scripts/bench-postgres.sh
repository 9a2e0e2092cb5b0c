#!/usr/bin/env bash
# Reproduces docs/benchmarks-postgres.md: builds flatstore-bench (RelWithDebInfo, in
# build/rel), starts a private PostgreSQL server with pg-cluster.sh in a temporary
# folder, runs the PostgreSQL scenarios (^pg_) with REPEAT runs per system (3 by default:
# about 10 minutes on 2 vCPUs), writes docs/benchmarks/postgres.json, the printed table
# docs/benchmarks/postgres.txt and the plots, and stops the server. Needs the packages of
# setup-debian.sh.
#
#   scripts/bench-postgres.sh [REPEAT]
set -euo pipefail
cd "$(dirname "$0")/.."

repeat=${1:-3}
out=docs/benchmarks
cmake -S . -B build/rel -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLATSTORE_BUILD_TESTS=ON \
  -DFLATSTORE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build build/rel -j2 --target flatstore-bench

pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/flatstore-pg.XXXXXX")
stop() {
  bash scripts/pg-cluster.sh stop "$pg_dir" >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap stop EXIT
uri=$(bash scripts/pg-cluster.sh start "$pg_dir")

mkdir -p "$out"
FLATSTORE_BENCH_PG=$uri build/rel/tests/bench/flatstore-bench --filter '^pg_' \
  --repeat "$repeat" --json "$out/postgres.json" | tee "$out/postgres.txt"
scripts/plot-benchmarks.sh "$out/postgres.json" "$out"
