#!/usr/bin/env bash
# Installs what flatstore needs to build, test and benchmark on Debian 12. Run as root.
# Idempotent: when every package is already installed it does not touch apt.
set -euo pipefail

packages=(
  build-essential cmake g++ clang clang-format git dpkg-dev
  libsqlite3-dev sqlite3 libflatbuffers-dev flatbuffers-compiler libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  liblmdb-dev libsqlitecpp-dev pkg-config gnuplot-nox  # for the benchmarks
  libpq-dev postgresql  # the PostgreSQL client library; the server for tests and benchmarks
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [[ "$status" == installed ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

if ((EUID != 0)); then
  echo "setup: missing packages (${missing[*]}); run this script as root" >&2
  exit 1
fi

# quietly COMMAND...: runs COMMAND, showing its output only if it fails.
quietly() {
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "setup: failed: $*" >&2
    exit 1
  fi
  rm -f "$log"
}

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
quietly apt-get update -q
quietly apt-get install -y -q --no-install-recommends "${missing[@]}"

for p in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != installed ]]; then
    echo "setup: $p is still not installed" >&2
    exit 1
  fi
done
echo "setup: done"
