#!/usr/bin/env bash
# Smoke tests of the installed `flamingo` command on the fixture models:
# every subcommand runs, --json output parses, errors are one line on
# stderr with exit status 1. Usage: Tests/cli/run.sh PATH/TO/flamingo
set -uo pipefail
cli=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
fx=$root/Tests/Fixtures
img=$fx/images/exif1_40x24.jpg
passed=0; failed=0
check() {  # check NAME COMMAND...: the command must succeed
  local name=$1; shift
  if out=$("$@" 2>&1); then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL $name: $out"; fi
}
fails_cleanly() {  # the command must exit 1 with exactly one stderr line starting "flamingo: error:"
  local err rc
  err=$("$@" 2>&1 >/dev/null); rc=$?
  [[ $rc == 1 && $(printf '%s\n' "$err" | wc -l) == 1 && $err == "flamingo: error:"* ]] || { echo "rc=$rc err=$err"; return 1; }
}

check "version" "$cli" --version
check "devices" "$cli" devices
check "devices --json" bash -c "\"$cli\" devices --json | python3 -c 'import json,sys; assert json.load(sys.stdin)[0][\"backend\"] == \"cpu\"'"
for m in mpt_tiny gpt_neox_tiny llama_tiny; do
  check "info $m" bash -c "\"$cli\" info -m $fx/$m --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"lm_family\"] in (\"mpt\",\"gpt_neox\",\"llama\")'"
  check "caption $m" "$cli" caption -m "$fx/$m" --max-new-tokens 4 "$img"
  check "caption few-shot $m" "$cli" caption -m "$fx/$m" --max-new-tokens 4 --shot "$fx/images/exif2_40x24.jpg=A red square." "$img"
  check "vqa $m" "$cli" vqa -m "$fx/$m" --max-new-tokens 3 --question "What color?" "$img"
  check "generate $m" bash -c "\"$cli\" generate -m $fx/$m --prompt '<image>A' --image $img --beams 1 --max-new-tokens 4 --json | python3 -c 'import json,sys; assert len(json.load(sys.stdin)[\"tokens\"]) <= 4'"
  check "generate defaults to greedy $m" bash -c "diff <(\"$cli\" generate -m $fx/$m --prompt '<image>A' --image $img --json) <(\"$cli\" generate -m $fx/$m --prompt '<image>A' --image $img --beams 1 --json)"
  check "caption defaults to 3 beams, length penalty 0 $m" bash -c "diff <(\"$cli\" caption -m $fx/$m $img) <(\"$cli\" caption -m $fx/$m --beams 3 --length-penalty 0 $img)"
  check "sample $m" "$cli" generate -m "$fx/$m" --prompt "<image>A" --image "$img" --sample --seed 3 --top-k 5 --max-new-tokens 4
  check "score $m" "$cli" score -m "$fx/$m" --prompt "<image>Output:" --image "$img" --candidate "a red square" --candidate "two cats"
done
check "bench" "$cli" bench -m "$fx/mpt_tiny" --decode 2
ev=$fx/eval/tiny
check "eval captioning" bash -c "\"$cli\" eval -m $fx/mpt_tiny --task captioning --train $ev/captions_train.json --test $ev/captions_test.json --shots 0,2 --max-new-tokens 4 --predictions --json - | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"metric\"] == \"CIDEr\" and [r[\"shots\"] for r in d[\"results\"]] == [0, 2] and len(d[\"results\"][1][\"predictions\"]) == 3'"
check "eval vqa" "$cli" eval -m "$fx/mpt_tiny" --task vqa --train "$ev/vqa_train_questions.json" --train-annotations "$ev/vqa_train_annotations.json" --test "$ev/vqa_test_questions.json" --test-annotations "$ev/vqa_test_annotations.json" --shots 1 --demos fixed --limit 2
check "eval classification" "$cli" eval -m "$fx/mpt_tiny" --task classification --train "$ev/classification_train.json" --test "$ev/classification_test.json" --shots 0,2
check "eval bad task" fails_cleanly "$cli" eval -m "$fx/mpt_tiny" --task ranking --train "$ev/captions_train.json" --test "$ev/captions_test.json"
check "eval too many shots" fails_cleanly "$cli" eval -m "$fx/mpt_tiny" --task captioning --train "$ev/captions_train.json" --test "$ev/captions_test.json" --shots 8
qdir=$(mktemp -d "${TMPDIR:-/tmp}/flamingo-cli-q.XXXXXX")
check "quantize q4" "$cli" quantize "$fx/llama_tiny" "$qdir/q4" --type q4 --group-size 32 --keep 'lang_encoder.lm_head=q8'
check "info of a q4 model" bash -c "\"$cli\" info -m $qdir/q4 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert set(d[\"storage\"]) >= {\"q4\", \"q8\"}, d'"
check "caption q4" "$cli" caption -m "$qdir/q4" --max-new-tokens 4 "$img"
check "quantize into a non-empty directory" fails_cleanly "$cli" quantize "$fx/llama_tiny" "$qdir/q4" --type q8
check "quantize --overwrite" "$cli" quantize "$fx/llama_tiny" "$qdir/q4" --type bf16 --overwrite
check "quantize bad type" fails_cleanly "$cli" quantize "$fx/llama_tiny" "$qdir/x" --type q3
check "quantize bad keep" fails_cleanly "$cli" quantize "$fx/llama_tiny" "$qdir/y" --type q4 --keep 'vision_encoder.*'
check "synth" bash -c "\"$cli\" synth $fx/mpt_tiny/config.json $qdir/synth --type q8 >/dev/null && \"$cli\" bench -m $qdir/synth --images 1 --prompt-tokens 4 --decode 2 >/dev/null"
rm -rf "$qdir"
check "missing model" fails_cleanly "$cli" info -m /nonexistent
check "marker mismatch" fails_cleanly "$cli" generate -m "$fx/mpt_tiny" --prompt "<image>x"
check "bad image" fails_cleanly "$cli" caption -m "$fx/mpt_tiny" "$fx/mpt_tiny/config.json"
check "bad backend" fails_cleanly "$cli" info -m "$fx/mpt_tiny" --backend cuda
check "cpu backend with a device" fails_cleanly "$cli" info -m "$fx/mpt_tiny" --device 1
if "$cli" devices | grep -q opencl; then
  # the OpenCL backend gives the CPU's greedy caption
  same_caption() {
    local a b
    a=$("$cli" caption -m "$fx/$1" --beams 1 --max-new-tokens 6 "$img") &&
      b=$("$cli" caption -m "$fx/$1" --beams 1 --max-new-tokens 6 --backend opencl "$img") &&
      [[ "$a" == "$b" ]] || { echo "cpu '$a' vs opencl '$b'"; return 1; }
  }
  for m in mpt_tiny gpt_neox_tiny llama_tiny; do check "opencl caption $m" same_caption "$m"; done
  check "opencl bad device" fails_cleanly "$cli" info -m "$fx/mpt_tiny" --backend opencl --device no-such-device
fi
echo "cli: $passed passed, $failed failed"
((failed == 0))
