#!/usr/bin/env bash
# Regenerates the checked-in goldens in tests/codegen/goldens/ with the current
# flatstore-codegen. Run it after an intended change to the generator, review the diff
# (`git diff tests/codegen/goldens`) and commit it together with that change:
#
#   tests/codegen/update_goldens.sh [BUILD_DIR]
#
# BUILD_DIR is a configured CMake build directory (default: build/ in the source tree);
# the script builds its flatstore-codegen target first. To use a tool built elsewhere,
# set FLATSTORE_CODEGEN=/path/to/flatstore-codegen (then BUILD_DIR is not used).
#
# golden_test (ctest -R codegen) runs the tool the same way and fails with the first
# differing line while a golden is out of date. The schemas are listed here and in
# kGoldenCases in golden_test.cc; keep the two in step.
set -euo pipefail

# Relative to the source tree.
schemas=(schemas/game.fbs schemas/docs.fbs tests/codegen/schemas/constructs.v2.fbs)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
goldens="$root/tests/codegen/goldens"

codegen="${FLATSTORE_CODEGEN:-}"
if [[ -z "$codegen" ]]; then
  build="${1:-$root/build}"
  if [[ ! -f "$build/CMakeCache.txt" ]]; then
    echo "update_goldens.sh: $build is not a configured build directory;" \
         "run: cmake -S $root -B $build" >&2
    exit 1
  fi
  cmake --build "$build" --target flatstore-codegen >&2
  codegen="$(find "$build" -type f -name flatstore-codegen -perm -u+x -print -quit)"
  if [[ -z "$codegen" ]]; then
    echo "update_goldens.sh: no flatstore-codegen executable under $build" >&2
    exit 1
  fi
fi

# Generate everything into a scratch directory first, so that a failure leaves the
# goldens as they were.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
args=()
for s in "${schemas[@]}"; do args+=("$root/$s"); done
"$codegen" -o "$tmp" "${args[@]}"

mkdir -p "$goldens"
for s in "${schemas[@]}"; do
  stem="$(basename "$s" .fbs)"
  for file in "${stem}_flatstore.h" "${stem}_flatstore.cc"; do
    if cmp -s "$tmp/$file" "$goldens/$file"; then
      echo "unchanged: tests/codegen/goldens/$file"
    else
      cp "$tmp/$file" "$goldens/$file"
      echo "updated:   tests/codegen/goldens/$file"
    fi
  done
done
