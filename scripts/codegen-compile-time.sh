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

# Seconds of one compilation of $1.
compile() {
  local start end
  start=$(date +%s.%N)
  "$cxx" -std=c++20 -O2 -I "$work" -I "$root/include" "${includes[@]}" -c "$1" -o "$work/out.o"
  end=$(date +%s.%N)
  echo "$end - $start" | bc
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
a=$(median < "$work/a.times")
b=$(median < "$work/b.times")
c=$(median < "$work/c.times")
source_time=$(compile "$work/${stem}_flatstore.cc")
entities=$(grep -c '^class .*Entity final' "$work/${stem}_flatstore.h" || true)
echo "schema $stem.fbs: $entities entities; header $(stat -c %s "$work/${stem}_flatstore.h") bytes," \
     "source $(stat -c %s "$work/${stem}_flatstore.cc") bytes," \
     "flatc's header $(stat -c %s "$work/${stem}_generated.h") bytes"
echo "median of $runs: flatc's header alone ${a} s; with ${stem}_flatstore.h ${b} s" \
     "(ratio $(echo "scale=2; $b / $a" | bc)); flatc's and flatstore's public headers" \
     "${c} s (ratio $(echo "scale=2; $c / $a" | bc))"
echo "${stem}_flatstore.cc, compiled once: ${source_time} s"
