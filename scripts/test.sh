#!/usr/bin/env bash
# Sets up the machine, then builds and runs every check flatstore has. Run as root on
# Debian 12 from the repository root: bash scripts/test.sh
#
# Stages: a release build with its tests; an AddressSanitizer + UBSan build with its
# tests; the tests labelled postgresql of both builds against a private PostgreSQL server
# (FLATSTORE_PG=0 skips it); a clang build with -Wthread-safety -Werror; the clang-format
# check; an install test; a ThreadSanitizer run of the concurrency tests (FLATSTORE_TSAN=0
# skips it). The script stops at the first failure and ends with "N passed, 0 failed", N
# counting the tests ctest ran and passed; tests that skipped themselves are not counted.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=2
passed=0
skipped=0
last_skipped=0
tmp=$(mktemp -d)
pg_dir=""  # the PostgreSQL stage's server, stopped on exit whatever happened

cleanup() {
  if [[ -n "$pg_dir" ]]; then
    bash scripts/pg-cluster.sh stop "$pg_dir" || true
    rm -rf "$pg_dir"
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# stage NAME COMMAND...: runs COMMAND under a header line and reports its time.
stage() {
  local name=$1 start=$SECONDS
  shift
  echo
  echo "=== $name"
  "$@"
  echo "=== $name: ok in $((SECONDS - start))s"
}

# run_ctest BUILD_DIR [CTEST ARGS...]: runs ctest and adds the passed tests to $passed,
# the skipped ones to $skipped (and sets $last_skipped to this run's).
run_ctest() {
  local dir=$1 log
  shift
  log="$dir/ctest.log"
  ctest --test-dir "$dir" --output-on-failure -j"$jobs" "$@" | tee "$log"
  # ctest's summary: "100% tests passed, 0 tests failed out of 12". It counts a test that
  # skipped itself (GTEST_SKIP) as passed, and lists it below the summary as
  # "  12 - Suite.Name (Skipped)".
  local summary failed total
  summary=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of.*/\1/' <<<"$summary")
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$summary")
  last_skipped=$(grep -cE '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" || true)
  passed=$((passed + total - failed - last_skipped))
  skipped=$((skipped + last_skipped))
}

# build DIR [CMAKE ARGS...]: configures DIR with the given options and builds it.
build() {
  local dir=$1
  shift
  cmake -S . -B "$dir" "$@"
  cmake --build "$dir" -j"$jobs"
}

release() {
  build build/ci-release -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLATSTORE_BUILD_TESTS=ON
  run_ctest build/ci-release --no-tests=error
}

asan() {
  build build/ci-asan -DCMAKE_BUILD_TYPE=Debug -DFLATSTORE_SANITIZE=address \
    -DFLATSTORE_BUILD_TESTS=ON
  UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} run_ctest build/ci-asan --no-tests=error
}

# The tests labelled "postgresql" (flatstore_test(... POSTGRESQL ...)) need the server
# that FLATSTORE_TEST_PG names and skip without one, as in the stages above. Here
# scripts/pg-cluster.sh starts a private server in a folder of its own, the tests of both
# builds run against it, and none may skip; cleanup() stops the server on any exit.
postgresql() {
  pg_dir=$(mktemp -d "${TMPDIR:-/tmp}/flatstore-pg.XXXXXX")
  local uri dir
  uri=$(bash scripts/pg-cluster.sh start "$pg_dir")
  echo "server: $uri"
  for dir in build/ci-release build/ci-asan; do
    FLATSTORE_TEST_PG=$uri run_ctest "$dir" --no-tests=error -L postgresql
    if ((last_skipped > 0)); then
      echo "postgresql: $last_skipped tests of $dir skipped although FLATSTORE_TEST_PG is set" >&2
      return 1
    fi
  done
  bash scripts/pg-cluster.sh stop "$pg_dir"
  rm -rf "$pg_dir"
  pg_dir=""
}

# The thread-safety analysis matters for the code that takes locks: the library and the
# code generator. The tests are built and run by the stages before.
clang_thread_safety() {
  cmake -S . -B build/ci-clang -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++ \
    -DFLATSTORE_THREAD_SAFETY=ON -DFLATSTORE_BUILD_TESTS=OFF -DFLATSTORE_BUILD_SAMPLES=OFF
  cmake --build build/ci-clang -j"$jobs" --target flatstore flatstore-codegen
}

# Every .h/.cc file git knows of (committed, staged, or new and not ignored).
format_check() {
  git ls-files -z --cached --others --exclude-standard -- '*.h' '*.cc' |
    xargs -0 -r clang-format --dry-run --Werror
}

# --- (e') ThreadSanitizer: the tests labelled "concurrency" ---------------------------
# A test joins by carrying the ctest label "concurrency" (for gtest_discover_tests:
# PROPERTIES LABELS concurrency). Only the executables of those tests are built, found by
# name from the release build's test commands (an executable is named as its target).
# Until a test carries the label, this stage is skipped without building anything.
# Debian's Abseil is not built with -fsanitize=thread; ThreadSanitizer would not see
# absl::Mutex lock and unlock and would report races on data the mutexes do protect. So
# the build links an instrumented Abseil made from Debian's own source package
# (scripts/tsan-absl.sh, kept in build/ci-tsan-absl between runs), and tests/tsan.supp
# silences the one false report that Abseil version still makes.
tsan() {
  local targets
  targets=$(ctest --test-dir build/ci-release -N -V -L concurrency |
    sed -nE 's|^[0-9]+: Test command: ([^ ]*/)?([^/ ]+)( .*)?$|\2|p' | sort -u)
  if [[ -z "$targets" ]]; then
    echo "no test is labelled concurrency: skipped"
    return
  fi
  JOBS=$jobs bash scripts/tsan-absl.sh build/ci-tsan-absl
  cmake -S . -B build/ci-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLATSTORE_SANITIZE=thread \
    -DFLATSTORE_BUILD_TESTS=ON -DFLATSTORE_BUILD_SAMPLES=OFF \
    -Dabsl_DIR="$PWD/build/ci-tsan-absl/prefix/lib/cmake/absl"
  # shellcheck disable=SC2086 # one target per word
  cmake --build build/ci-tsan -j"$jobs" --target $targets
  # shellcheck disable=SC2086 # one target per word
  check_no_shared_absl $targets
  # tests/tsan.supp lists the reports known to be false. It stays when the caller sets
  # TSAN_OPTIONS, whose options replace the defaults here.
  local defaults="halt_on_error=1 second_deadlock_stack=1"
  TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp ${TSAN_OPTIONS:-$defaults}" \
    run_ctest build/ci-tsan --no-tests=error -L concurrency
}

# check_no_shared_absl TARGET...: fails if a TSan test executable would load a shared
# Abseil. The instrumented Abseil is linked in statically and has the same inline
# namespace, so the same symbol names, as Debian's libabsl*.so. A libabsl*.so pulled in by
# some other library would put a second, uninstrumented copy of those functions and of
# their global state in the process, and which copy a call reaches would be up to the
# dynamic linker.
check_no_shared_absl() {
  local target exe
  for target in "$@"; do
    exe=$(find build/ci-tsan -type f -executable -name "$target" | head -n 1)
    if [[ -z "$exe" ]]; then
      echo "tsan: no executable $target in build/ci-tsan" >&2
      return 1
    fi
    if ldd "$exe" | grep -F libabsl; then
      echo "tsan: $exe would load a shared Abseil (above)" >&2
      return 1
    fi
  done
}
# --------------------------------------------------------------------------------------

# Installs the release build into a temporary prefix (the flatstore tool must run from
# there), then builds and runs tests/install, a separate project that uses it through
# find_package(flatstore) and flatstore_generate().
install_test() {
  local prefix="$tmp/prefix"
  cmake --install build/ci-release --prefix "$prefix"
  "$prefix/bin/flatstore" --help >/dev/null
  rm -rf build/ci-install
  cmake -S tests/install -B build/ci-install -DCMAKE_PREFIX_PATH="$prefix"
  cmake --build build/ci-install -j"$jobs"
  build/ci-install/consumer
}

stage "setup" bash scripts/setup-debian.sh
stage "release build and tests" release
stage "AddressSanitizer + UBSan build and tests" asan
if [[ "${FLATSTORE_PG:-1}" != 0 ]]; then
  stage "PostgreSQL tests" postgresql
else
  echo
  echo "=== PostgreSQL tests: skipped (FLATSTORE_PG=0)"
fi
stage "clang -Wthread-safety build" clang_thread_safety
stage "clang-format" format_check
stage "install test" install_test
if [[ "${FLATSTORE_TSAN:-1}" != 0 ]]; then
  stage "ThreadSanitizer concurrency tests" tsan
else
  echo
  echo "=== ThreadSanitizer concurrency tests: skipped (FLATSTORE_TSAN=0)"
fi

echo
((skipped == 0)) || echo "($skipped tests skipped themselves; they are not counted)"
echo "$passed passed, 0 failed"
