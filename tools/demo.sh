#!/usr/bin/env bash
# The main job on the small model shipped in the repository: loads it through
# the installed library and prints version, devices and model information.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$PWD/build/prefix
[[ -e $prefix/lib/libflamingo.so.1 ]] || bash tools/build.sh
PKG_CONFIG_PATH=$prefix/lib/pkgconfig make -s -C bindings/c example
bindings/c/example Tests/Fixtures/mpt_tiny
