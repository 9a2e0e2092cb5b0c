#!/usr/bin/env bash
# Draws the scaling plots of docs/benchmarks.md from flatstore-bench's JSON output:
# throughput and p99 commit latency against the number of writer threads, one line per
# system, from the scaling_<N>t records. Needs gnuplot (Debian: gnuplot-nox).
#
#   scripts/plot-benchmarks.sh [RESULTS.json] [OUTPUT_DIR]
#
# Defaults: docs/benchmarks/contention.json and docs/benchmarks. Writes
# scaling-throughput.png and scaling-p99.png there.
set -euo pipefail
cd "$(dirname "$0")/.."

json=${1:-docs/benchmarks/contention.json}
out=${2:-docs/benchmarks}
[[ -r "$json" ]] || { echo "plot-benchmarks: cannot read $json" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot-benchmarks: gnuplot is missing" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# flatstore-bench writes one record per line:
#   {"scenario": "scaling_4t", "system": "flatstore", "ops_per_s": 1.000, ..., "p99_us": 2.000, ...}
# field NAME LINE: the value of NAME in the record LINE.
field() {
  sed -E "s/.*\"$1\": (\"([^\"]*)\"|([^,}]*)).*/\2\3/" <<<"$2"
}

systems=()
while IFS= read -r line; do
  [[ "$line" == *'"scenario": "scaling_'* ]] || continue
  scenario=$(field scenario "$line")
  system=$(field system "$line")
  threads=${scenario#scaling_}
  threads=${threads%t}
  [[ -e "$tmp/$system.dat" ]] || systems+=("$system")
  echo "$threads $(field ops_per_s "$line") $(field p99_us "$line")" >>"$tmp/$system.dat"
done <"$json"
((${#systems[@]} > 0)) || { echo "plot-benchmarks: no scaling_* records in $json" >&2; exit 1; }

# plot COLUMN YLABEL TITLE FILE YAXIS: one line per system, threads on a log2 axis; YAXIS
# is "linear" (from 0) or "log".
plot() {
  local column=$1 ylabel=$2 title=$3 file=$4 yaxis=$5 series=""
  for s in "${systems[@]}"; do
    sort -n "$tmp/$s.dat" -o "$tmp/$s.dat"
    series+="${series:+, }'$tmp/$s.dat' using 1:$column with linespoints linewidth 2 title '$s'"
  done
  gnuplot <<EOF
set terminal pngcairo size 960,500 font "sans,11"
set output '$file'
set title '$title'
set xlabel 'writer threads'
set ylabel '$ylabel'
set logscale x 2
set xtics (1, 2, 4, 8, 16, 32)
set grid
set key outside right top
$(if [[ $yaxis == log ]]; then echo "set logscale y"; else echo "set yrange [0:*]"; fi)
plot $series
EOF
  echo "plot-benchmarks: wrote $file"
}

plot 2 'commits per second' 'Write storm throughput (synchronous=NORMAL)' \
  "$out/scaling-throughput.png" linear
plot 3 'p99 commit latency (µs, log scale)' 'Write storm p99 latency (synchronous=NORMAL)' \
  "$out/scaling-p99.png" log
