#!/usr/bin/env bash
# The main job: the miniature Flamingo trained in this repository
# (models/flamingo-mini, tools/train/) on the example JPEGs shipped with it,
# through the installed library: model information from C, few-shot
# captions and visual question answering from the `flamingo` command (each
# next to the true answer; the held-out scores are in the model card), and
# the paper's point, in-context learning: names for colours that only the
# demonstrations define, scored by `flamingo eval` at 0 and 4 shots.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=$PWD/build/prefix
[[ -e $prefix/lib/libflamingo.so.1 ]] || bash tools/build.sh
cli=$prefix/bin/flamingo
model=models/flamingo-mini
ex=$model/examples
ev=$model/eval

PKG_CONFIG_PATH=$prefix/lib/pkgconfig make -s -C bindings/c example
bindings/c/example "$model"

# The first two images of the demonstration pool with their first captions, then the query image.
mapfile -t shots < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
first = {}
for a in d["annotations"]:
    first.setdefault(a["image_id"], a["caption"])
for im in d["images"][:2]:
    print("--shot"); print(sys.argv[2] + "/" + im["file_name"] + "=" + first[im["id"]])
' "$ev/captions_train.json" "$ev")
echo
echo "== captions (2-shot)"
for img in red_circle orange_triangle; do
  expected=$(sed -n "/^$img.jpg/,/^$/p" "$ex/README" | sed -n 's/^  captions: \([^|]*\).*/\1/p' | sed 's/ *$//')
  printf '%-20s %-60s (true: %s)\n' "$img.jpg" "$("$cli" caption -m "$model" "${shots[@]}" "$ex/$img.jpg")" "$expected"
done

# Two question/answer demonstrations from the VQA training pool.
mapfile -t qshots < <(python3 -c '
import json, sys
q = json.load(open(sys.argv[1])); a = json.load(open(sys.argv[2]))
files = {im["id"]: im["file_name"] for im in q["images"]}
answers = {x["question_id"]: x["answers"][0]["answer"] for x in a["annotations"]}
for x in q["questions"][:2]:
    print("--shot"); print(sys.argv[3] + "/" + files[x["image_id"]] + "=" + x["question"] + "=" + answers[x["question_id"]])
' "$ev/vqa_train_questions.json" "$ev/vqa_train_annotations.json" "$ev")
echo
echo "== questions (2-shot)"
ask() {  # IMAGE QUESTION EXPECTED
  printf '%-20s %-32s %-10s (true: %s)\n' "$1.jpg" "$2" "$("$cli" vqa -m "$model" "${qshots[@]}" --question "$2" "$ex/$1.jpg")" "$3"
}
ask red_circle "what color is the circle?" red
ask red_circle "what size is the red circle?" large
ask orange_triangle "what shape is the orange object?" triangle
ask blue_squares "how many objects are there?" 2
ask three_shapes "how many objects are there?" 3
ask three_shapes "how many circles are there?" 1
ask orange_triangle "what size is the orange triangle?" small

echo
echo "== in-context learning: invented words for colours, defined only by the shots (40 held-out questions)"
"$cli" eval -m "$model" --task vqa --demos fixed --shots 0,4 --limit 40 \
  --train "$ev/words_train_questions.json" --train-annotations "$ev/words_train_annotations.json" \
  --test "$ev/words_test_questions.json" --test-annotations "$ev/words_test_annotations.json"
