#!/usr/bin/env bash
# Configures, builds and installs libflamingo into build/prefix.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build
cmake --install build --prefix "$PWD/build/prefix" >/dev/null
echo "installed into $PWD/build/prefix"
