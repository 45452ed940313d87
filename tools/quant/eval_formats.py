#!/usr/bin/env python3
"""Accuracy of flamingo-mini in each storage format (docs/quantization.md).

    tools/quant/eval_formats.py PATH/TO/flamingo [--shots 0,4,32] [--out table.json] LABEL=MODEL_DIR ...

For every model directory (e.g. f32=models/flamingo-mini q8=/tmp/mini-q8, made by
`flamingo quantize`), runs `flamingo eval` on each held-out task of models/flamingo-mini/eval with
the settings of scores_torch.json (the PyTorch reference's), and the next-token negative
log-likelihood of the held-out captions (`<image>Output:CAPTION<|endofchunk|>`, summed over the
caption's tokens, as llama.cpp's perplexity reports quantization quality). Prints a Markdown table.
Standard library only.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MINI = ROOT / "models" / "flamingo-mini"
sys.path.insert(0, str(ROOT / "Tests" / "mini"))
from agreement import TASKS, FILE_ARGS  # noqa: E402  (one definition of the eval invocations)


def run_eval(cli, model, task, shots, settings):
    args = list(TASKS[task])
    for i, a in enumerate(args[:-1]):
        if a in FILE_ARGS:
            args[i + 1] = str(MINI / "eval" / args[i + 1])
    args += ["--shots", ",".join(map(str, shots)), "--seed", str(settings["seed"]), "--json", "-"]
    if task != "classification":
        args += ["--beams", str(settings["num_beams"]), "--length-penalty", str(settings["length_penalty"]),
                 "--max-new-tokens", str(settings["max_new_tokens"][task])]
    out = subprocess.run([cli, "eval", "-m", str(model), *args], capture_output=True, text=True, check=True)
    return {r["shots"]: r["score"] for r in json.loads(out.stdout)["results"]}


def caption_nll(cli, model):
    data = json.loads((MINI / "eval" / "captions_test.json").read_text())
    files = {im["id"]: im["file_name"] for im in data["images"]}
    seen, total, tokens = set(), 0.0, 0
    for a in data["annotations"]:
        if a["image_id"] in seen:
            continue
        seen.add(a["image_id"])
        out = subprocess.run([cli, "score", "-m", str(model), "--json", "--prompt", "<image>Output:",
                              "--image", str(MINI / "eval" / files[a["image_id"]]),
                              "--candidate", a["caption"] + "<|endofchunk|>"], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)[0]
        total -= r["log_likelihood"]
        tokens += r["tokens"]
    return total / tokens


def main():
    argv = sys.argv[1:]
    cli = argv.pop(0)
    shots, out_path = [0, 4, 32], None
    while argv and argv[0].startswith("--"):
        flag, value = argv.pop(0), argv.pop(0)
        if flag == "--shots":
            shots = [int(s) for s in value.split(",")]
        elif flag == "--out":
            out_path = value
    models = [a.split("=", 1) for a in argv]
    settings = json.loads((MINI / "scores_torch.json").read_text())["settings"]
    rows = {}
    for label, model in models:
        row = {}
        for task in TASKS:
            for k, score in run_eval(cli, model, task, shots, settings).items():
                row[f"{task} {k}"] = score
        nll = caption_nll(cli, model)
        row["caption NLL/token"] = nll
        row["caption perplexity"] = math.exp(nll)
        rows[label] = row
        print(f"{label}: done", file=sys.stderr)
    labels = [m[0] for m in models]
    print("| metric | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for metric in rows[labels[0]]:
        fmt = "{:.4f}" if "NLL" in metric or "perplexity" in metric else "{:.2f}"
        print(f"| {metric} | " + " | ".join(fmt.format(rows[l][metric]) for l in labels) + " |")
    if out_path:
        Path(out_path).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
