#!/usr/bin/env bash
# Draws the plots of the benchmark documents from flatstore-bench's JSON output, those
# its records allow. Needs gnuplot (Debian: gnuplot-nox).
#   - docs/benchmarks.md, from the scaling_<N>t records: throughput and p99 commit
#     latency against the number of writer threads, one line per system
#     (scaling-throughput.png, scaling-p99.png).
#   - docs/benchmarks-postgres.md, from the pg_* records: commits per second in
#     pg_storm_4tables, and table B's p99 in pg_small_alone beside pg_small_beside_big,
#     one bar (group) per system (postgres-storm.png, postgres-small-p99.png).
#
#   scripts/plot-benchmarks.sh [RESULTS.json] [OUTPUT_DIR]
#
# Defaults: docs/benchmarks/contention.json and docs/benchmarks.
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
# --- docs/benchmarks.md: the scaling runs ---------------------------------------------
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

if ((${#systems[@]} > 0)); then
  plot 2 'commits per second' 'Write storm throughput (synchronous=NORMAL)' \
    "$out/scaling-throughput.png" linear
  plot 3 'p99 commit latency (µs, log scale)' 'Write storm p99 latency (synchronous=NORMAL)' \
    "$out/scaling-p99.png" log
fi

# --- docs/benchmarks-postgres.md: the pg_* scenarios ----------------------------------
declare -A storm alone beside
pg_systems=()
while IFS= read -r line; do
  [[ "$line" == *'"scenario": "pg_'* ]] || continue
  scenario=$(field scenario "$line")
  system=$(field system "$line")
  case "$scenario" in
    pg_storm_4tables) storm[$system]=$(field ops_per_s "$line") ;;
    pg_small_alone) alone[$system]=$(field p99_us "$line") ;;
    pg_small_beside_big) beside[$system]=$(field p99_us "$line") ;;
    *) continue ;;
  esac
  [[ " ${pg_systems[*]} " == *" $system "* ]] || pg_systems+=("$system")
done <"$json"

# bars FILE TITLE YLABEL DATA SERIES...: one bar, or group of bars, per system.
bars() {
  local file=$1 title=$2 ylabel=$3
  gnuplot <<EOF
set terminal pngcairo size 1100,500 font "sans,11"
set output '$file'
set title '$title'
set ylabel '$ylabel'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set grid ytics
set xtics nomirror
$4
EOF
  echo "plot-benchmarks: wrote $file"
}

if ((${#pg_systems[@]} > 0)); then
  for s in "${pg_systems[@]}"; do
    [[ -n "${storm[$s]:-}" ]] && echo "\"$s\" ${storm[$s]}" >>"$tmp/storm.dat"
    if [[ -n "${alone[$s]:-}" && -n "${beside[$s]:-}" ]]; then
      echo "\"$s\" $(awk "BEGIN { print ${alone[$s]} / 1000, ${beside[$s]} / 1000 }")" \
        >>"$tmp/small.dat"
    fi
  done
  if [[ -s "$tmp/storm.dat" ]]; then
    bars "$out/postgres-storm.png" \
      'pg\_storm\_4tables: 16 threads, one-object transactions, thread t writes table t % 4' \
      'commits per second' \
      "set yrange [0:*]
set key off
plot '$tmp/storm.dat' using 2:xtic(1) linecolor rgb '#4477aa'"
  fi
  if [[ -s "$tmp/small.dat" ]]; then
    bars "$out/postgres-small-p99.png" \
      'p99 of the one-object transactions into table B, alone and beside 2,000-object ones into A' \
      'p99 latency (ms, log scale)' \
      "set logscale y
set key inside right top
plot '$tmp/small.dat' using 2:xtic(1) title 'pg\_small\_alone' linecolor rgb '#4477aa', \
     '' using 3 title 'pg\_small\_beside\_big' linecolor rgb '#cc6677'"
  fi
fi

if ((${#systems[@]} == 0 && ${#pg_systems[@]} == 0)); then
  echo "plot-benchmarks: no scaling_* or pg_* records in $json" >&2
  exit 1
fi
