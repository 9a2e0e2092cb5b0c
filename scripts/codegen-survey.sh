#!/usr/bin/env bash
# Runs flatstore-codegen over every schema in a folder of FlatBuffers schemas that flatc
# accepts, compiles what it writes, and counts the outcomes:
#
#   scripts/codegen-survey.sh CODEGEN SCHEMA_DIR [WORK_DIR]
#
# CODEGEN is a built flatstore-codegen; SCHEMA_DIR is searched recursively for *.fbs.
# Every folder under SCHEMA_DIR that holds a schema is an include directory, so that
# `include` lines resolve as they do in the project the schemas come from; they are on
# the compiler's include path too, for headers a schema names with `native_include`. For each
# schema that flatc accepts:
#   compiles  flatstore-codegen wrote a header and a .cc, and both compile (g++ -std=c++20
#             -fsyntax-only) against flatc's header for the schema;
#   rejected  flatstore-codegen stopped with `file:line:col: error:` (the message is
#             printed; docs/guide.md lists the limitations);
#   fails     anything else: a crash, an error without a location, or generated code
#             that does not compile (the compiler's first error is printed).
# flatc's own header is compiled first; when it does not compile alone with flatstore's
# flatc options (as --gen-compare with a native_type that has no operator==), the schema
# is counted apart, since no header that includes it can compile.
# flatc runs with --gen-all, so one header holds the schema and everything it includes
# (cyclic includes need no --no-includes then). WORK_DIR (default: a temporary folder,
# removed at the end) keeps every generated file for inspection. Exits 1 when any
# schema fails.
set -uo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 CODEGEN SCHEMA_DIR [WORK_DIR]" >&2
  exit 2
fi
if [[ ! -x "$1" || ! -d "$2" ]]; then
  echo "$0: $1 is not an executable or $2 is not a folder" >&2
  exit 2
fi
codegen="$(realpath "$1")"
schemas="$(realpath "$2")"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ $# -ge 3 ]]; then
  work="$(realpath -m "$3")"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi
cxx="${CXX:-g++}"

includes=()
while IFS= read -r dir; do includes+=(-I "$dir"); done < <(
  find "$schemas" -name '*.fbs' -printf '%h\n' | sort -u)

compiles=0
rejected=0
fails=0
not_flatc=0
flatc_broken=0
while IFS= read -r schema; do
  rel="${schema#"$schemas"/}"
  out="$work/$(echo "$rel" | tr '/' '_')"
  mkdir -p "$out"
  if ! flatc --cpp --gen-object-api --gen-compare --scoped-enums --gen-all -o "$out" \
       "${includes[@]}" "$schema" > "$out/flatc.log" 2>&1; then
    not_flatc=$((not_flatc + 1))
    continue
  fi
  "$codegen" -o "$out" "${includes[@]}" "$schema" > "$out/codegen.log" 2>&1
  status=$?
  if [[ $status -eq 1 ]] && grep -qE '^[^:]+:[0-9]+:[0-9]+: error: ' "$out/codegen.log"; then
    rejected=$((rejected + 1))
    echo "rejected  $rel: $(grep -m1 -E ': error: ' "$out/codegen.log" | sed 's/.*: error: //')"
    continue
  fi
  if [[ $status -ne 0 ]]; then
    fails=$((fails + 1))
    echo "FAILS     $rel: flatstore-codegen exit $status: $(head -n1 "$out/codegen.log")"
    continue
  fi
  stem="$(basename "$schema" .fbs)"
  ok=1
  for src in "$stem"_generated.h "$stem"_flatstore.h "$stem"_flatstore.cc; do
    [[ -f "$out/$src" ]] || continue
    # flatc --gen-all leaves out the schema's native_include lines; the TU has them.
    sed -n 's/^ *native_include *"\([^"]*\)".*/#include "\1"/p' "$schema" > "$out/tu_$src.cc"
    printf '#include "%s"\n' "$src" >> "$out/tu_$src.cc"
    if ! "$cxx" -std=c++20 -fsyntax-only -I "$out" -I "$root/include" "${includes[@]}" \
         "$out/tu_$src.cc" \
         > "$out/compile_$src.log" 2>&1; then
      ok=0
      if [[ "$src" == *_generated.h ]]; then
        flatc_broken=$((flatc_broken + 1))
        echo "flatc's   $rel: flatc's own header does not compile:" \
             "$(grep -m1 'error' "$out/compile_$src.log")"
      else
        fails=$((fails + 1))
        echo "FAILS     $rel: $src: $(grep -m1 'error' "$out/compile_$src.log")"
      fi
      break
    fi
  done
  if [[ $ok -eq 1 ]]; then
    compiles=$((compiles + 1))
    echo "compiles  $rel"
  fi
done < <(find "$schemas" -name '*.fbs' | sort)

echo "flatc accepts $((compiles + rejected + fails + flatc_broken)) schemas" \
     "(rejects $not_flatc): $compiles compile, $rejected rejected with a located error," \
     "$fails fail; flatc's own header does not compile for $flatc_broken"
[[ $fails -eq 0 ]]
