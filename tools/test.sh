#!/usr/bin/env bash
# Runs every test suite: Swift unit tests, the installed library's symbol and
# dependency checks, the C ABI tests, the C example (pkg-config and CMake
# find_package), the Python binding, the Rust crate, a bounded fuzz run of
# every target and the sanitizer runs (tools/sanitize.sh). Prints one summary
# line; exits non-zero if any suite failed.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
prefix=$root/build/prefix
lib=$prefix/lib/libflamingo.so.1
fixture=$root/Tests/Fixtures/mpt_tiny
export FLAMINGO_REQUIRE_FIXTURES=1
passed=0; failed=0; failures=()

suite() {  # suite NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); failures+=("$name"); fi
}

exports_only_c_abi() {
  local bad
  bad=$(nm -D --defined-only "$lib" | awk '{print $NF}' | grep -v '^flamingo_' || true)
  [[ -z $bad ]] || { echo "unexpected exported symbols:"; echo "$bad"; return 1; }
  if ldd "$lib" | grep -i swift; then echo "libflamingo links a Swift runtime library"; return 1; fi
  readelf -d "$lib" | grep -q 'SONAME.*libflamingo.so.1' || { echo "SONAME is not libflamingo.so.1"; return 1; }
  echo "exports: $(nm -D --defined-only "$lib" | wc -l) flamingo_* symbols; no Swift libraries; SONAME ok"
}

fixtures=("$root"/Tests/Fixtures/{mpt,gpt_neox,llama}_tiny)
video_fixture="$root/Tests/Fixtures/flamingo_paper_tiny"   # NFNet + video resampler (make_paper_fixture.py)

c_example_pkg_config() {
  PKG_CONFIG_PATH=$prefix/lib/pkgconfig make -s -C bindings/c example && bindings/c/example "$fixture"
}

c_example_find_package() {
  cmake -S Tests/cmake-consumer -B build/cmake-consumer -DCMAKE_PREFIX_PATH="$prefix" >/dev/null &&
    cmake --build build/cmake-consumer >/dev/null && build/cmake-consumer/consumer
}

python_binding() {
  python3 -m pip install -q --disable-pip-version-check --force-reinstall --no-deps ./bindings/python &&
    FLAMINGO_LIBRARY=$lib python3 -m pytest -q bindings/python/tests
}

rust_crate() {
  (cd bindings/rust && FLAMINGO_LIB_DIR=$prefix/lib cargo test --offline -q 2>&1)
}

suite "swift test" swift test --disable-swift-testing
suite "cmake build + install" tools/build.sh
suite "exports and dependencies" exports_only_c_abi
suite "docs/api.md matches the header" python3 tools/check_api_doc.py
suite "C ABI (header, dlopen)" env FLAMINGO_STRICT_EXPORTS=1 Tests/capi/run.sh "$lib" "${fixtures[@]}" "$video_fixture"
suite "C example (pkg-config)" c_example_pkg_config
suite "flamingo CLI" Tests/cli/run.sh "$prefix/bin/flamingo"
suite "miniature model: engine = PyTorch (flamingo eval)" python3 Tests/mini/agreement.py "$prefix/bin/flamingo"
suite "miniature model at q8: within 1 point / 1 % of f32" python3 Tests/mini/quantized.py "$prefix/bin/flamingo"
suite "main job (tools/demo.sh)" bash tools/demo.sh
suite "C consumer (find_package)" c_example_find_package
suite "Python binding" python_binding
suite "Rust crate" rust_crate
suite "flamingo serve (openai client, curl)" env FLAMINGO_CLI="$prefix/bin/flamingo" python3 -m pytest -q Tests/server
suite "fuzz smoke: every target 10 s (ASan, UBSan; tools/fuzz)" bash tools/fuzz/run.sh --time 10
suite "C ABI under ASan + LSan + UBSan, threads under TSan" bash tools/sanitize.sh capi-asan threads-tsan
suite "same info from C, Python, Rust" env FLAMINGO_LIB_DIR="$prefix/lib" bindings/c/compare.sh "${fixtures[@]}"

echo
((failed)) && echo "failed suites: ${failures[*]}"
echo "suites: $passed passed, $failed failed"
exit $((failed > 0))
