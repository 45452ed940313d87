#!/usr/bin/env python3
"""The miniature model: the engine's `flamingo eval` against the PyTorch training code's scores.

    Tests/mini/agreement.py PATH/TO/flamingo [MODEL_DIR]

MODEL_DIR (default models/flamingo-mini) holds scores_torch.json, written by
tools/train/evaluate_torch.py with the trained PyTorch model (open_flamingo's Flamingo.generate /
forward, fp32) on the held-out data in MODEL_DIR/eval. For every task and shot count recorded there,
this runs `flamingo eval` with the same settings (demonstration sampling, beams, lengths, limit) and
requires the same prediction for every example and the same score (|Δ| ≤ 1e-6; the engine's CIDEr-D
and the training code's are separate implementations, so equal captions must also score equally).
Standard library only. Prints one line per (task, shots); exit status 0 when all agree.
"""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# evaluate_torch.py task → `flamingo eval` arguments (files relative to MODEL_DIR/eval)
TASKS = {
    "captioning": ["--task", "captioning", "--train", "captions_train.json", "--test", "captions_test.json"],
    "vqa": ["--task", "vqa", "--train", "vqa_train_questions.json", "--train-annotations", "vqa_train_annotations.json",
            "--test", "vqa_test_questions.json", "--test-annotations", "vqa_test_annotations.json"],
    "words": ["--task", "vqa", "--demos", "fixed", "--train", "words_train_questions.json",
              "--train-annotations", "words_train_annotations.json", "--test", "words_test_questions.json",
              "--test-annotations", "words_test_annotations.json"],
    "classification": ["--task", "classification", "--train", "classification_train.json",
                       "--test", "classification_test.json"],
}
FILE_ARGS = {"--train", "--test", "--train-annotations", "--test-annotations"}


def main() -> int:
    cli = sys.argv[1]
    model = Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "models" / "flamingo-mini"
    ref = json.loads((model / "scores_torch.json").read_text())
    s = ref["settings"]
    failed = 0
    for task, r in ref["tasks"].items():
        args = list(TASKS[task])
        for i, a in enumerate(args[:-1]):
            if a in FILE_ARGS:
                args[i + 1] = str(model / "eval" / args[i + 1])
        shots = [int(k) for k in r["shots"]]
        args += ["--shots", ",".join(map(str, shots)), "--seed", str(s["seed"]), "--predictions", "--json", "-"]
        if task != "classification":
            args += ["--beams", str(s["num_beams"]), "--length-penalty", str(s["length_penalty"]),
                     "--max-new-tokens", str(s["max_new_tokens"][task])]
        if s.get("limit"):
            args += ["--limit", str(s["limit"])]
        out = subprocess.run([cli, "eval", "-m", str(model), *args], capture_output=True, text=True)
        if out.returncode != 0:
            print(f"FAIL {task}: flamingo eval exited {out.returncode}: {out.stderr.strip()}")
            failed += 1
            continue
        engine = {res["shots"]: res for res in json.loads(out.stdout)["results"]}
        for k in shots:
            want, got = r["shots"][str(k)], engine[k]
            preds = want["predictions"]
            if task == "classification":
                preds = {i: r["classes"][p] for i, p in preds.items()}
            differ = sorted(i for i in preds if got["predictions"].get(i) != preds[i])
            score_ok = abs(got["score"] - want["score"]) <= 1e-6 + 0.005  # the reference rounds to 2 decimals
            ok = not differ and score_ok and len(got["predictions"]) == len(preds)
            failed += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {task:15s} {k:2d}-shot: engine {got['score']:7.2f}  PyTorch {want['score']:7.2f}"
                  f"  ({len(preds)} examples" + (f"; {len(differ)} predictions differ, e.g. {differ[0]}: engine "
                                                f"{got['predictions'].get(differ[0])!r} PyTorch {preds[differ[0]]!r}"
                                                if differ else "") + ")")
    print(f"agreement: {'all agree' if not failed else f'{failed} disagree'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
