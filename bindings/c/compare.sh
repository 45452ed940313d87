#!/usr/bin/env bash
# Runs the three "info" programs — bindings/c/example.c, `python -m flamingo
# info` and the Rust example `info` — on each MODEL_DIR (and once without a
# model) and fails unless their stdout is byte-for-byte identical.
#
# Then runs the three "caption" programs — bindings/c/caption.c,
# `python -m flamingo caption` and the Rust example `caption` — on each
# MODEL_DIR with Tests/Fixtures/images/exif1_40x24.jpg, zero-shot and one-shot
# (Tests/Fixtures/images/rgb_48x48.png as the shot), and once with a missing
# image, and fails unless their stdout and exit status are identical (and,
# on error, the "error: <status>:" start of stderr).
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
# shellcheck disable=SC2086
${CC:-cc} -std=c99 -O1 -Wall -Wextra $cflags "$here/caption.c" -o "$out/caption_c" $libs $rpath
(cd "$root/bindings/rust" && FLAMINGO_LIB_DIR="$libdir" cargo build -q --offline --example info --example caption)
rust="$root/bindings/rust/target/debug/examples/info"
rust_caption="$root/bindings/rust/target/debug/examples/caption"

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

compare_caption() {
    local tag="$1"; shift
    local rc_c=0 rc_py=0 rc_rs=0
    "$out/caption_c" "$@" > "$out/c.txt" 2> "$out/c.err" || rc_c=$?
    (cd "$root/bindings/python" && FLAMINGO_LIBRARY="${pylib:-${FLAMINGO_LIBRARY:-}}" python3 -m flamingo caption "$@") \
        > "$out/py.txt" 2> "$out/py.err" || rc_py=$?
    "$rust_caption" "$@" > "$out/rs.txt" 2> "$out/rs.err" || rc_rs=$?
    # On error only the status is compared: the message names the failing call.
    for f in c py rs; do cut -d: -f1-2 "$out/$f.err" > "$out/$f.err2"; done
    if cmp -s "$out/c.txt" "$out/py.txt" && cmp -s "$out/c.txt" "$out/rs.txt" &&
       [ "$rc_c" = "$rc_py" ] && [ "$rc_c" = "$rc_rs" ] &&
       cmp -s "$out/c.err2" "$out/py.err2" && cmp -s "$out/c.err2" "$out/rs.err2"; then
        echo "same: caption $tag (exit $rc_c, $(wc -c < "$out/c.txt") bytes)"
    else
        echo "DIFFERENT: caption $tag (exit status c $rc_c, python $rc_py, rust $rc_rs)"
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

images="$root/Tests/Fixtures/images"
query="$images/exif1_40x24.jpg"
shot="$images/rgb_48x48.png=A red square on a white background."
for dir in "$@"; do
    case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
    compare_caption "$dir zero-shot" "$dir" "$query"
    compare_caption "$dir one-shot" "$dir" "$query" "$shot"
done
if [ $# -gt 0 ]; then
    dir="$1"; case "$dir" in /*) ;; *) dir="$PWD/$dir" ;; esac
    compare_caption "missing image" "$dir" "$out/missing.jpg"
fi
exit $status
