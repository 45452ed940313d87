#!/usr/bin/env bash
# Builds the libFuzzer targets (AddressSanitizer + LeakSanitizer, UndefinedBehaviorSanitizer
# for the C kernels) and runs each on a copy of its seed corpus.
#   tools/fuzz/run.sh [--time SECONDS | --runs N] [TARGET ...]
# Defaults: 10 seconds per target, every target. Working corpora and crash artifacts go to
# build/fuzz/; one summary line per target; exits 1 if any target found a crash, leak,
# timeout or out-of-memory (its artifact is named in the output). FUZZ_FLAGS adds libFuzzer flags.
set -uo pipefail
cd "$(dirname "$0")"
limit=(-max_total_time=10)
while [[ $# -gt 0 && $1 == --* ]]; do
  case $1 in
    --time) limit=(-max_total_time="$2"); shift 2 ;;
    --runs) limit=(-runs="$2"); shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
targets=("$@")
# --sanitize links the harnesses with libFuzzer's main; the same flags again through -Xswiftc
# and -Xcc because --sanitize alone leaves dependencies (the engine itself) uninstrumented.
# UBSan for the C code (kernels, image decoding); Swift traps overflow and bad indices itself.
flags=(-c release --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address
       -Xcc -fsanitize=fuzzer-no-link,address,undefined -Xcc -fno-sanitize-recover=undefined)
[[ ${#targets[@]} -gt 0 ]] || targets=(safetensors config model quantized tokenizer image prompt detokenizer unpickler)

swift build "${flags[@]}" 2>&1 |
  grep -v "Cannot export local symbol" | grep -E "error|Compiling|Build" | grep -v "^\[" || true
bin=$(swift build "${flags[@]}" --show-bin-path)
out=../../build/fuzz
mkdir -p "$out/artifacts"
failed=0
declare -A runs_flag=([unpickler]=-atheris_runs=)  # atheris counts runs with its own flag
for t in "${targets[@]}"; do
  if [[ $t == unpickler ]]; then  # the converter's restricted unpickler, in Python (atheris)
    cmd=(env PYTHONPATH=../../bindings/python python3 python/fuzz_unpickler.py -dict=python/unpickler.dict)
    seeds=python/corpus/unpickler
  else
    [[ -x $bin/fuzz_$t ]] || { echo "no target $t"; failed=1; continue; }
    cmd=("$bin/fuzz_$t" -print_final_stats=1)
    seeds=corpus/$t
  fi
  mkdir -p "$out/corpus/$t"
  log=$out/$t.log
  start=$SECONDS
  # -max_len: large enough for the biggest seed; -rss_limit_mb: an input may not make the
  # engine allocate gigabytes; -timeout: nor take 10 s.
  "${cmd[@]}" "$out/corpus/$t" "$seeds" "${limit[@]/#-runs=/${runs_flag[$t]:--runs=}}" -max_len=131072 -rss_limit_mb=2048 \
    -timeout=10 -artifact_prefix="$out/artifacts/$t-" ${FUZZ_FLAGS:-} >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
  [[ -n $runs ]] || runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | awk '{print $2}')
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | awk '{print $2}')
  secs=$((SECONDS - start))
  if [[ $rc == 0 ]]; then status=ok; else status="FAILED (rc $rc, log $log)"; failed=1; fi
  printf '%-12s %10s runs %6s s %8s exec/s  cov %5s  ft %6s  %s\n' "$t" "${runs:-?}" "$secs" \
    "$(( ${runs:-0} / (secs > 0 ? secs : 1) ))" "${cov:-?}" "${ft:-?}" "$status"
  [[ $rc == 0 ]] || grep -E "ERROR|SUMMARY|fuzz:|artifact|Test unit written" "$log" | head -8
done
exit $failed
