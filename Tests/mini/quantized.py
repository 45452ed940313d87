#!/usr/bin/env python3
"""The miniature model quantized: `flamingo eval` of flamingo-mini at q8 against the f32 scores.

    Tests/mini/quantized.py PATH/TO/flamingo [--type q8] [--shots 0,4,32]

Quantizes models/flamingo-mini with `flamingo quantize` into a temporary directory and runs every
held-out task with the settings of scores_torch.json (whose scores the f32 engine reproduces
exactly, Tests/mini/agreement.py). The q8 acceptance bounds (docs/quantization.md): every accuracy
row (VQA, in-context naming, classification) within 1 point of f32, CIDEr within 1 % relative.
Standard library only; exit status 0 when every row is within its bound.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "quant"))
from eval_formats import MINI, run_eval  # noqa: E402
from agreement import TASKS  # noqa: E402


def main() -> int:
    argv = sys.argv[1:]
    cli = argv.pop(0)
    kind, shots = "q8", [0, 4, 32]
    while argv:
        flag, value = argv.pop(0), argv.pop(0)
        if flag == "--type":
            kind = value
        elif flag == "--shots":
            shots = [int(s) for s in value.split(",")]
    ref = json.loads((MINI / "scores_torch.json").read_text())
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / kind
        subprocess.run([cli, "quantize", str(MINI), str(model), "--type", kind], check=True, capture_output=True)
        for task in TASKS:
            got = run_eval(cli, model, task, shots, ref["settings"])
            for k in shots:
                want = ref["tasks"][task]["shots"][str(k)]["score"]
                if task == "captioning":
                    ok, bound = abs(got[k] - want) <= 0.01 * want, "1 %"
                else:
                    ok, bound = abs(got[k] - want) <= 1.0 + 0.005, "1 point"  # the reference rounds to 2 decimals
                failed += not ok
                print(f"{'ok  ' if ok else 'FAIL'} {task:15s} {k:2d}-shot: {kind} {got[k]:7.2f}  f32 {want:7.2f}  (bound {bound})")
    print(f"{kind} against f32: {'all within bounds' if not failed else f'{failed} outside'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
