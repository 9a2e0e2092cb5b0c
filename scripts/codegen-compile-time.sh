#!/usr/bin/env bash
# Measures what including a generated header costs: the median time of `g++ -std=c++20
# -O2 -c` over a file that includes <stem>_flatstore.h, against one that includes flatc's
# <stem>_generated.h alone, and against one that includes flatc's header and the public
# flatstore headers the generated one includes (what any generated header costs at
# least); and the time to compile <stem>_flatstore.cc once.
#
#   scripts/codegen-compile-time.sh CODEGEN SCHEMA.fbs [RUNS] [-I DIR]...
#
# CODEGEN is a built flatstore-codegen; RUNS (default 5) compilations of each file are
# alternated so that a change in machine load hits both alike. -I directories go to
# flatc, flatstore-codegen and the compiler. CXX overrides g++.
#
# Each compilation is timed twice over: wall-clock seconds, and the CPU seconds (user +
# system) the compiler used. On a machine that other work shares, the CPU time moves less
# with the load than the wall time does; both are printed, with the ratios of each.
#
# With INSTRUCTIONS=1 (and valgrind installed) each of the three files is also compiled
# once under Cachegrind, which counts the instructions the compiler proper (cc1plus)
# executes: a figure that does not move with the load at all, and that follows the CPU
# time closely on an idle machine.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CODEGEN SCHEMA.fbs [RUNS] [-I DIR]..." >&2
  exit 2
fi
codegen="$(realpath "$1")"
schema="$(realpath "$2")"
shift 2
runs=5
if [[ $# -gt 0 && "$1" != -I ]]; then
  runs="$1"
  shift
fi
includes=("$@")
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cxx="${CXX:-g++}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

stem="$(basename "$schema" .fbs)"
"$codegen" -o "$work" --depfile "$work/deps" "${includes[@]}" "$schema"
# flatc's headers for the schema and every schema it includes, as the build makes them.
read -r -a included < <(cut -d: -f2- "$work/deps")
flatc --cpp --gen-object-api --gen-compare --scoped-enums -o "$work" "${includes[@]}" \
  "$schema" "${included[@]}"
printf '#include "%s_generated.h"\n' "$stem" > "$work/flatc_only.cc"
grep '^#include "flatstore/' "$work/${stem}_flatstore.h" > "$work/floor.cc"
printf '#include "%s_generated.h"\n' "$stem" >> "$work/floor.cc"
printf '#include "%s_flatstore.h"\n' "$stem" > "$work/flatstore.cc"

# "WALL CPU": the wall-clock and the CPU (user + system) seconds of one compilation of $1.
compile() {
  local start end cpu
  start=$(date +%s.%N)
  cpu=$( { TIMEFORMAT='%U %S'; time "$cxx" -std=c++20 -O2 -I "$work" -I "$root/include" \
             "${includes[@]}" -c "$1" -o "$work/out.o"; } 2>&1 >/dev/null | tail -n1)
  end=$(date +%s.%N)
  echo "$(echo "$end - $start" | bc) $(echo "$cpu" | awk '{print $1 + $2}')"
}

median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

: > "$work/a.times"
: > "$work/b.times"
: > "$work/c.times"
for ((i = 0; i < runs; i++)); do
  compile "$work/flatc_only.cc" >> "$work/a.times"
  compile "$work/flatstore.cc" >> "$work/b.times"
  compile "$work/floor.cc" >> "$work/c.times"
done
# Median of column $2 of file $1.
median_of() { cut -d' ' -f"$2" "$1" | median; }
a=$(median_of "$work/a.times" 1)
b=$(median_of "$work/b.times" 1)
c=$(median_of "$work/c.times" 1)
a_cpu=$(median_of "$work/a.times" 2)
b_cpu=$(median_of "$work/b.times" 2)
c_cpu=$(median_of "$work/c.times" 2)
# Millions of instructions the compiler proper executes for $1 (the largest count of the
# processes g++ starts: cc1plus, not the driver or the assembler).
instructions() {
  valgrind --tool=cachegrind --cache-sim=no --trace-children=yes \
    --cachegrind-out-file=/dev/null "$cxx" -std=c++20 -O2 -I "$work" -I "$root/include" \
    "${includes[@]}" -c "$1" -o "$work/out.o" 2>&1 >/dev/null |
    awk '/I *refs:/ {gsub(",", "", $4); if ($4 + 0 > m) m = $4 + 0} END {printf "%.0f", m / 1e6}'
}
if [[ "${INSTRUCTIONS:-0}" == 1 ]]; then
  a_ins=$(instructions "$work/flatc_only.cc")
  b_ins=$(instructions "$work/flatstore.cc")
  c_ins=$(instructions "$work/floor.cc")
fi
source_time=$(compile "$work/${stem}_flatstore.cc" | cut -d' ' -f1)
entities=$(grep -c '^class .*Entity final' "$work/${stem}_flatstore.h" || true)
echo "schema $stem.fbs: $entities entities; header $(stat -c %s "$work/${stem}_flatstore.h") bytes," \
     "source $(stat -c %s "$work/${stem}_flatstore.cc") bytes," \
     "flatc's header $(stat -c %s "$work/${stem}_generated.h") bytes"
echo "median of $runs: flatc's header alone ${a} s; with ${stem}_flatstore.h ${b} s" \
     "(ratio $(echo "scale=2; $b / $a" | bc)); flatc's and flatstore's public headers" \
     "${c} s (ratio $(echo "scale=2; $c / $a" | bc))"
echo "CPU seconds, median of $runs: flatc's header alone ${a_cpu} s; with ${stem}_flatstore.h" \
     "${b_cpu} s (ratio $(echo "scale=2; $b_cpu / $a_cpu" | bc)); flatc's and flatstore's" \
     "public headers ${c_cpu} s (ratio $(echo "scale=2; $c_cpu / $a_cpu" | bc))"
if [[ "${INSTRUCTIONS:-0}" == 1 ]]; then
  echo "compiler instructions (millions): flatc's header alone ${a_ins}; with" \
       "${stem}_flatstore.h ${b_ins} (ratio $(echo "scale=2; $b_ins / $a_ins" | bc));" \
       "flatc's and flatstore's public headers ${c_ins} (ratio $(echo "scale=2; $c_ins / $a_ins" | bc))"
fi
echo "${stem}_flatstore.cc, compiled once: ${source_time} s"
