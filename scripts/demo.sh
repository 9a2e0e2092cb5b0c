#!/usr/bin/env bash
# Sets up the machine, builds the demo sample in Release mode and runs it.
# Run as root on Debian 12 from the repository root: bash scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup-debian.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release -DFLATSTORE_BUILD_TESTS=OFF
cmake --build build/release -j2 --target flatstore-demo
./build/release/samples/flatstore-demo
