#!/usr/bin/env bash
# The sanitizer runs, each with its own build folder (.build-asan, .build-tsan):
#   tools/sanitize.sh [capi-asan] [threads-tsan] [swift-asan]      (default: all three)
# capi-asan     libflamingo built with AddressSanitizer (+ LeakSanitizer) and UBSan for the C
#               code; the C ABI test programs (Tests/capi, themselves built with ASan+UBSan)
#               against it on every fixture.
# threads-tsan  libflamingo built with ThreadSanitizer; Tests/capi/test_threads.c (built with
#               TSan) against it: eight threads per model on the CPU and every OpenCL device,
#               concurrent loads and frees, log callback swaps.
# swift-asan    the whole Swift test suite under AddressSanitizer (UBSan for the C code).
# Any sanitizer report fails the run (halt_on_error). Needs clang (the Swift toolchain's).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
steps=("$@")
[[ ${#steps[@]} -gt 0 ]] || steps=(capi-asan threads-tsan swift-asan)
fixtures=("$root"/Tests/Fixtures/{mpt,gpt_neox,llama}_tiny "$root"/Tests/Fixtures/flamingo_paper_tiny)
image=$root/Tests/Fixtures/images/exif1_40x24.jpg
export FLAMINGO_REQUIRE_FIXTURES=1
failed=0
asan=(--sanitize=address -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined)

run() {  # run NAME COMMAND...
  echo "=== $1"; shift
  if "$@"; then echo "--- ok"; else echo "--- FAILED"; failed=1; fi
}

build_lib() {  # build_lib BUILD_PATH SWIFTPM_FLAGS...: prints the library's path
  local path=$1; shift
  swift build --build-path "$path" --product flamingo "$@" 2>&1 | grep -E "error|Compiling.*error" >&2
  echo "$(swift build --build-path "$path" "$@" --show-bin-path)/libflamingo.so"
}

for step in "${steps[@]}"; do
  case $step in
    capi-asan)
      lib=$(build_lib .build-asan "${asan[@]}")
      # The library's Swift runtime is instrumented through the executable's ASan runtime,
      # which must come first: the C tests are built with ASan and link nothing else.
      # FLAMINGO_TEST_NODELETE: the tests dlclose the library; LeakSanitizer looks at exit and
      # would report the Swift runtime's one-time allocations of an unmapped library as leaks.
      run "C ABI tests under ASan + LSan + UBSan" env FLAMINGO_TEST_NODELETE=1 CC=clang CXX=clang++ CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
        CXXFLAGS="-fsanitize=address,undefined" ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 Tests/capi/run.sh "$lib" "${fixtures[@]}"
      ;;
    threads-tsan)
      lib=$(build_lib .build-tsan --sanitize=thread)
      out=$(mktemp -d)
      # The toolchain's TSan runtime intercepts libdispatch, so the program links it.
      swiftlib=$(dirname "$(command -v swift)")/../lib/swift/linux
      clang -fsanitize=thread -rdynamic -std=c11 -O1 -g -I include Tests/capi/test_threads.c -o "$out/test_threads" -ldl -lpthread -lm \
        -L"$swiftlib" -Wl,-rpath,"$swiftlib" -ldispatch -lBlocksRuntime &&
        run "threads under TSan" env TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
          "$out/test_threads" "$lib" "$image" "${fixtures[@]:0:3}"
      rm -rf "$out"
      ;;
    swift-asan)
      run "Swift tests under ASan (UBSan for the C code)" swift test --build-path .build-asan "${asan[@]}" --disable-swift-testing
      ;;
    *) echo "unknown step $step"; failed=1 ;;
  esac
done
exit $failed
