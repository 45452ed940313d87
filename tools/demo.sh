#!/usr/bin/env bash
# The main job on the small model shipped in the repository: loads it through
# the installed library (version, devices, model information), then captions
# a JPEG through the whole path with the `flamingo` command.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$PWD/build/prefix
[[ -e $prefix/lib/libflamingo.so.1 ]] || bash tools/build.sh
PKG_CONFIG_PATH=$prefix/lib/pkgconfig make -s -C bindings/c example
bindings/c/example Tests/Fixtures/mpt_tiny
echo
echo "caption of Tests/Fixtures/images/exif1_40x24.jpg (random-weight model):"
build/prefix/bin/flamingo caption -m Tests/Fixtures/mpt_tiny Tests/Fixtures/images/exif1_40x24.jpg
