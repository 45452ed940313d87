#!/usr/bin/env bash
# C-ABI tests for libflamingo.
#
#   Tests/capi/run.sh LIBRARY [MODEL_DIR ...]
#
# LIBRARY is the path of libflamingo.so (e.g. build/libflamingo.so.1).
# Compiles include/flamingo.h as strict C99 and C++11, then builds and runs
# test_dlopen, test_session and test_text once without a model and once per
# MODEL_DIR (test_video instead of test_session/test_text for a video model
# such as Tests/Fixtures/flamingo_paper_tiny) (fixture model directories such as Tests/Fixtures/mpt_tiny),
# and test_threads and test_leaks once over all the image models (eight threads per
# model and backend, concurrent loads, log callback swaps; the heap does not grow over
# load/session/generate/free rounds). For
# test_session and test_text, extract_reference.py (python3, standard
# library) first turns MODEL_DIR/reference.safetensors (and reference.json,
# and the image goldens of Tests/Fixtures/images) into raw files in a
# temporary directory; test_text also reads the images of
# Tests/Fixtures/images (FLAMINGO_IMAGES_DIR overrides it). Environment:
#   CC, CXX                     compilers (default cc, c++)
#   CFLAGS, CXXFLAGS            extra flags (e.g. sanitizers, tools/sanitize.sh)
#   FLAMINGO_REQUIRE_FIXTURES=1 fail when no MODEL_DIR is given or one is missing
#   FLAMINGO_STRICT_EXPORTS=1   fail when the library exports symbols other
#                               than flamingo_*, or lacks the SONAME libflamingo.so.1
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 LIBRARY [MODEL_DIR ...]" >&2
    exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
lib="$1"; shift
[ -f "$lib" ] || { echo "run.sh: no library at $lib" >&2; exit 2; }
case "$lib" in /*) ;; *) lib="$PWD/$lib" ;; esac
CC="${CC:-cc}"
CXX="${CXX:-c++}"
out="$(mktemp -d "${TMPDIR:-/tmp}/flamingo-capi-build.XXXXXX")"
trap 'rm -rf "$out"' EXIT

failed=0
image_models=()
step() { echo "== $*"; }

step "header as C99"
"$CC" ${CFLAGS:-} -std=c99 -Wall -Wextra -Werror -pedantic -I"$root/include" -c "$here/header_c99.c" -o "$out/header_c99.o" || failed=1
"$CC" ${CFLAGS:-} -std=c99 -Wall -Wextra -Werror -pedantic -Wstrict-prototypes -Wmissing-prototypes -Wshadow \
    -I"$root/include" -c "$here/header_c99.c" -o "$out/header_c99_strict.o" || failed=1
step "header as C++11"
"$CXX" ${CXXFLAGS:-} -std=c++11 -Wall -Wextra -Werror -I"$root/include" -c "$here/header_cxx.cpp" -o "$out/header_cxx.o" || failed=1
"$CXX" ${CXXFLAGS:-} -std=c++11 -Wall -Wextra -Werror -pedantic -I"$root/include" -c "$here/header_cxx.cpp" -o "$out/header_cxx_pedantic.o" || failed=1

step "exported symbols"
if command -v nm >/dev/null; then
    extra="$(nm -D --defined-only "$lib" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^flamingo_/ {print $3}' | sort -u)"
    header_fns="$(grep -oE '\bflamingo_[a-z_]+\(' "$root/include/flamingo.h" | tr -d '(' | sort -u)"
    exported_fns="$(nm -D --defined-only "$lib" | awk '$3 ~ /^flamingo_/ {print $3}' | sed 's/@.*//' | sort -u)"
    unknown="$(comm -13 <(echo "$header_fns") <(echo "$exported_fns"))"
    soname="$(readelf -d "$lib" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')"
    strict_fail=0
    if [ -n "$extra" ]; then
        echo "note: $(echo "$extra" | wc -l) exported symbols outside flamingo_* (first: $(echo "$extra" | head -3 | tr '\n' ' '))"
        strict_fail=1
    fi
    if [ -n "$unknown" ]; then
        echo "note: flamingo_* symbols exported but not in flamingo.h: $(echo "$unknown" | tr '\n' ' ')"
        strict_fail=1
    fi
    if [ "$soname" != "libflamingo.so.1" ]; then
        echo "note: SONAME is '${soname}', want libflamingo.so.1"
        strict_fail=1
    fi
    [ $strict_fail = 0 ] && echo "ok: only header functions exported, SONAME $soname"
    if [ $strict_fail = 1 ] && [ "${FLAMINGO_STRICT_EXPORTS:-0}" = 1 ]; then failed=1; fi
fi

build_test() {  # build_test NAME STD: Tests/capi/NAME.c -> $out/NAME
    step "build $1"
    "$CC" ${CFLAGS:-} -std="$2" -O1 -g -Wall -Wextra -Werror -I"$root/include" "$here/$1.c" -o "$out/$1" \
        -ldl -lpthread -lm || { echo "capi: 0 passed, 1 failed"; exit 1; }
}
build_test test_dlopen c99
build_test test_session c99
build_test test_video c99
build_test test_threads c11
build_test test_leaks c11
build_test test_text c99
images="${FLAMINGO_IMAGES_DIR:-$root/Tests/Fixtures/images}"

step "test_dlopen $lib"
"$out/test_dlopen" "$lib" || failed=1
step "test_session $lib"
"$out/test_session" "$lib" || failed=1
step "test_text $lib"
"$out/test_text" "$lib" || failed=1

if [ $# -eq 0 ] && [ "${FLAMINGO_REQUIRE_FIXTURES:-0}" = 1 ]; then
    echo "run.sh: FLAMINGO_REQUIRE_FIXTURES=1 but no MODEL_DIR given" >&2
    failed=1
fi
for dir in "$@"; do
    if [ ! -f "$dir/config.json" ]; then
        if [ "${FLAMINGO_REQUIRE_FIXTURES:-0}" = 1 ]; then
            echo "run.sh: fixture $dir is missing" >&2; failed=1
        else
            echo "skip: fixture $dir is missing"
        fi
        continue
    fi
    step "test_dlopen $lib $dir"
    "$out/test_dlopen" "$lib" "$dir" || failed=1
    if [ ! -f "$dir/reference.safetensors" ]; then
        if [ "${FLAMINGO_REQUIRE_FIXTURES:-0}" = 1 ]; then
            echo "run.sh: $dir/reference.safetensors is missing" >&2; failed=1
        else
            echo "skip: test_session $dir (no reference.safetensors)"
        fi
        continue
    fi
    if [ -f "$dir/reference.json" ] && grep -q '"frames_per_media"' "$dir/reference.json"; then
        # a video model (make_paper_fixture.py): its own reference layout
        nref=$((${nref:-0} + 1))
        step "test_video $lib $dir"
        if python3 "$here/dump_tensors.py" "$dir/reference.safetensors" "$out/ref-$nref"; then
            "$out/test_video" "$lib" "$dir" "$out/ref-$nref" || failed=1
        else
            echo "run.sh: could not extract the reference tensors of $dir" >&2; failed=1
        fi
        continue
    fi
    image_models+=("$dir")
    nref=$((${nref:-0} + 1))
    ref="$out/ref-$nref"
    step "test_session $lib $dir"
    if python3 "$here/extract_reference.py" "$dir/reference.safetensors" "$ref" "$images"; then
        "$out/test_session" "$lib" "$dir" "$ref" || failed=1
        step "test_text $lib $dir"
        if [ -f "$ref/prompt.txt" ] && [ -d "$images/bad" ]; then
            "$out/test_text" "$lib" "$dir" "$ref" "$images" || failed=1
        elif [ "${FLAMINGO_REQUIRE_FIXTURES:-0}" = 1 ]; then
            echo "run.sh: $dir/reference.json or $images is missing" >&2; failed=1
        else
            echo "skip: test_text $dir (no reference.json or $images)"
        fi
    else
        echo "run.sh: could not extract the reference tensors of $dir" >&2; failed=1
    fi
done

if [ ${#image_models[@]} -gt 0 ]; then
    step "test_threads $lib ${image_models[*]}"
    "$out/test_threads" "$lib" "$images/exif1_40x24.jpg" "${image_models[@]}" || failed=1
    step "test_leaks $lib ${image_models[*]}"
    "$out/test_leaks" "$lib" "$images/exif1_40x24.jpg" "${image_models[@]}" || failed=1
fi

if [ $failed = 0 ]; then echo "capi: all passed"; else echo "capi: FAILED"; fi
exit $failed
