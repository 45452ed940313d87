#!/usr/bin/env bash
# Runs the three "info" programs — bindings/c/example.c, `python -m flamingo
# info` and the Rust example `info` — on each MODEL_DIR (and once without a
# model) and fails unless their stdout is byte-for-byte identical.
#
#   bindings/c/compare.sh [MODEL_DIR ...]
#
# The library comes from FLAMINGO_LIB_DIR (a directory holding libflamingo.so)
# when set, else from pkg-config (`pkg-config flamingo`). Needs cc, python3
# and cargo (builds offline).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="$(mktemp -d "${TMPDIR:-/tmp}/flamingo-compare.XXXXXX")"
trap 'rm -rf "$out"' EXIT

if [ -n "${FLAMINGO_LIB_DIR:-}" ]; then
    libdir="$(cd "$FLAMINGO_LIB_DIR" && pwd)"
    cflags="-I$root/include"
    libs="-L$libdir -lflamingo"
else
    cflags="$(pkg-config --cflags flamingo)"
    libs="$(pkg-config --libs flamingo)"
    libdir="$(pkg-config --libs-only-L flamingo | sed -n 's/^ *-L\([^ ]*\).*/\1/p')"
fi
pylib=""
for n in libflamingo.so.1 libflamingo.so; do
    if [ -n "$libdir" ] && [ -e "$libdir/$n" ]; then pylib="$libdir/$n"; break; fi
done

rpath=""
[ -n "$libdir" ] && rpath="-Wl,-rpath,$libdir"
# shellcheck disable=SC2086
${CC:-cc} -std=c99 -O1 -Wall -Wextra $cflags "$here/example.c" -o "$out/example_c" $libs $rpath -lm
(cd "$root/bindings/rust" && FLAMINGO_LIB_DIR="$libdir" cargo build -q --offline --example info)
rust="$root/bindings/rust/target/debug/examples/info"

status=0
compare() {
    local tag="$1"; shift
    "$out/example_c" "$@" > "$out/c.txt" 2> "$out/c.err" || true
    (cd "$root/bindings/python" && FLAMINGO_LIBRARY="${pylib:-${FLAMINGO_LIBRARY:-}}" python3 -m flamingo info "$@") \
        > "$out/py.txt" 2> "$out/py.err" || true
    "$rust" "$@" > "$out/rs.txt" 2> "$out/rs.err" || true
    if cmp -s "$out/c.txt" "$out/py.txt" && cmp -s "$out/c.txt" "$out/rs.txt" &&
       cmp -s "$out/c.err" "$out/py.err" && cmp -s "$out/c.err" "$out/rs.err"; then
        echo "same: $tag ($(wc -l < "$out/c.txt") lines)"
    else
        echo "DIFFERENT: $tag"
        diff -u "$out/c.txt" "$out/py.txt" --label c --label python || true
        diff -u "$out/c.txt" "$out/rs.txt" --label c --label rust || true
        diff -u "$out/c.err" "$out/py.err" --label c.stderr --label python.stderr || true
        diff -u "$out/c.err" "$out/rs.err" --label c.stderr --label rust.stderr || true
        status=1
    fi
}

compare "no model"
compare "missing model" "$out/missing-model"
for dir in "$@"; do
    case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
    compare "$dir" "$dir"
done
exit $status
