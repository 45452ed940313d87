"""Checks the converted flamingo-mini in the engine (libflamingo through the Python binding)
against the PyTorch model (open_flamingo Flamingo, fp32, weights read from the same model
directory):

1. logits of every position of a 2-image few-shot prompt: max|delta| / max|ref|;
2. the greedy and 3-beam generations of that prompt;
3. OpenFlamingo-style predictions (evaluate_torch.py prompts, demonstrations and
   post-processing) for the first N test examples of each task at a few shot counts.

Usage (from the repository root, after `bash tools/build.sh`):
  FLAMINGO_LIBRARY=build/libflamingo.so.1 /work/refenv/bin/python tools/train/check_engine.py [--n 8]
  /work/refenv/bin/python tools/train/check_engine.py --write-reference
The second form needs no engine: it writes models/flamingo-mini/reference.json (the PyTorch
logits of every position of the prompt below, its greedy / 3-beam continuations) so that a
test without PyTorch can check the engine (max|delta| / max|ref| <= 1e-4, same argmax).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import MODEL_DIR, REPO  # noqa: E402

sys.path.insert(0, str(REPO / "bindings" / "python"))
if not os.environ.get("FLAMINGO_LIBRARY"):
    for rel in ("build/libflamingo.so.1", "build/libflamingo.so", ".build/release/libflamingo.so"):
        if (REPO / rel).exists():
            os.environ["FLAMINGO_LIBRARY"] = str(REPO / rel)
            break

import numpy as np  # noqa: E402
import torch  # noqa: E402

import evaluate_torch as ET  # noqa: E402
import model as model_mod  # noqa: E402

PROMPT = ("<image>Output:a large red circle<|endofchunk|>\n"
          "<image>Question:what color is the triangle? Short answer:")


def write_reference(model_dir, pt, tok, ev, images):
    ids = tok(PROMPT)["input_ids"]
    mask = torch.ones(1, len(ids), dtype=torch.long)
    with torch.no_grad():
        logits = pt(vision_x=ev.vision_x(images), lang_x=torch.tensor([ids]), attention_mask=mask).logits[0]
        gens = {}
        for beams in (1, 3):
            out = pt.generate(vision_x=ev.vision_x(images), lang_x=torch.tensor([ids]), attention_mask=mask,
                              max_new_tokens=8, num_beams=beams, length_penalty=0.0, do_sample=False)
            new = out[0, len(ids):].tolist()
            gens[f"beams{beams}"] = {"ids": new, "text": tok.decode(new, skip_special_tokens=True)}
    ref = {
        "note": "PyTorch (open_flamingo 2.0.1 Flamingo, fp32, weights from this directory) reference for the engine; "
                "written by tools/train/check_engine.py --write-reference",
        "prompt": PROMPT, "images": [f"examples/{p.name}" for p in images], "ids": ids,
        "logits": [[float(f"{v:.7g}") for v in row] for row in logits.tolist()],
        "argmax": logits.argmax(-1).tolist(), "max_abs": float(logits.abs().max()), "tolerance_rel": 1e-4,
        "generate": {"max_new_tokens": 8, "length_penalty": 0.0, "eos": "<|endofchunk|>", **gens},
    }
    common.write_json(model_dir / "reference.json", ref)
    print(f"wrote {model_dir / 'reference.json'}: {len(ids)} positions; greedy {gens['beams1']['text']!r}, "
          f"3 beams {gens['beams3']['text']!r}")


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=MODEL_DIR)
    ap.add_argument("--n", type=int, default=8, help="test examples per task and shot count")
    ap.add_argument("--shots", default="0,4,8")
    ap.add_argument("--write-reference", action="store_true", help="write MODEL/reference.json (no engine needed)")
    args = ap.parse_args(argv)
    pt, tok = model_mod.from_model_dir(args.model)
    ev = ET.Evaluator(pt, tok)
    ex = args.model / "examples"
    images = [ex / "red_circle.jpg", ex / "three_shapes.jpg"]
    if args.write_reference:
        write_reference(args.model, pt, tok, ev, images)
        return
    import flamingo

    report = {"library": os.environ.get("FLAMINGO_LIBRARY"), "model": str(args.model)}
    eng = flamingo.Model(str(args.model), threads=common.THREADS)

    # 1. logits
    ids_e = eng.tokenize(PROMPT)
    ids_t = tok(PROMPT)["input_ids"]
    assert ids_e == ids_t, (ids_e, ids_t)
    le = eng.logits(ids_e, [str(p) for p in images])
    with torch.no_grad():
        lt = pt(vision_x=ev.vision_x(images), lang_x=torch.tensor([ids_t]),
                attention_mask=torch.ones(1, len(ids_t), dtype=torch.long)).logits[0].numpy()
    # the engine's preprocessing vs PIL + open_clip's transform
    pix_e = np.frombuffer(eng.preprocess_image(str(images[1])), dtype=np.float32)
    pix_t = ET.common.clip_transform()(ET.Image.open(images[1]).convert("RGB")).numpy().reshape(-1)
    rel = float(np.abs(le - lt).max() / np.abs(lt).max())
    report["logits"] = {"prompt": PROMPT, "images": [p.name for p in images], "tokens": len(ids_t),
                        "max_abs_delta": float(np.abs(le - lt).max()), "max_abs_ref": float(np.abs(lt).max()),
                        "max_rel": rel, "argmax_equal": bool((le.argmax(-1) == lt.argmax(-1)).all()),
                        "preprocess_max_abs_delta": float(np.abs(pix_e - pix_t).max())}
    print(f"logits: {len(ids_t)} positions x {lt.shape[1]}: max|d| {report['logits']['max_abs_delta']:.3g}, "
          f"max|ref| {report['logits']['max_abs_ref']:.3g}, ratio {rel:.3g}; "
          f"preprocessing max|d| {report['logits']['preprocess_max_abs_delta']:.3g}")

    # 2. generation of the same prompt
    gen = {}
    for beams in (1, 3):
        e = eng.generate(PROMPT, [str(p) for p in images], 8, num_beams=beams, length_penalty=0.0)
        with torch.no_grad():
            out = pt.generate(vision_x=ev.vision_x(images), lang_x=torch.tensor([ids_t]),
                              attention_mask=torch.ones(1, len(ids_t), dtype=torch.long), max_new_tokens=8,
                              num_beams=beams, length_penalty=0.0, do_sample=False)
        t = tok.decode(out[0, len(ids_t):], skip_special_tokens=True)
        gen[f"beams{beams}"] = {"engine": e, "torch": t, "equal": e == t}
        print(f"generate beams={beams}: engine {e!r} torch {t!r}")
    report["generate"] = gen

    # 3. evaluation prompts
    ed = args.model / "eval"
    shots = [int(s) for s in args.shots.split(",")]
    sets = {
        "captioning": (ET.load_captions(ed / "captions_train.json"), ET.load_captions(ed / "captions_test.json")),
        "vqa": (ET.load_vqa(ed / "vqa_train_questions.json", ed / "vqa_train_annotations.json"),
                ET.load_vqa(ed / "vqa_test_questions.json", ed / "vqa_test_annotations.json")),
        "words": (ET.load_vqa(ed / "words_train_questions.json", ed / "words_train_annotations.json"),
                  ET.load_vqa(ed / "words_test_questions.json", ed / "words_test_annotations.json")),
    }
    agree = {}
    for task, (train, test) in sets.items():
        pool_index = {x["id"]: i for i, x in enumerate(train)}
        for k in shots:
            eff = k or 2
            same = 0
            for q, x in enumerate(test[:args.n]):
                demos = ([train[pool_index[i]] for i in x["demonstrations"][:eff]] if task == "words"
                         else [train[i] for i in ET.random_demo_indices(len(train), eff, ET.SEED, q)])
                paths = ([] if k == 0 else [d["image"] for d in demos]) + [x["image"]]
                if task == "captioning":
                    e = eng.caption(str(x["image"]), shots=[(str(d["image"]), d["target"].strip()) for d in demos]) \
                        if k else None
                    ctx = "".join(ET.caption_prompt(d["target"].strip()) + "\n" for d in demos)
                    prompt = (ctx.replace("<image>", "") if k == 0 else ctx) + ET.caption_prompt()
                    raw = eng.generate(prompt, [str(p) for p in paths], ET.MAX_NEW[task])
                    e2 = ET.postprocess_caption(raw).strip()
                    if e is not None:
                        assert e == e2, (e, e2)
                    t = ET.postprocess_caption(ev.generate(prompt, paths, ET.MAX_NEW[task])).strip()
                else:
                    ctx = "".join(ET.vqa_prompt(d["question"], d["target"]) + "\n" for d in demos)
                    prompt = (ctx.replace("<image>", "") if k == 0 else ctx) + ET.vqa_prompt(x["question"])
                    e2 = ET.postprocess_vqa(eng.generate(prompt, [str(p) for p in paths], ET.MAX_NEW[task])).strip()
                    t = ET.postprocess_vqa(ev.generate(prompt, paths, ET.MAX_NEW[task])).strip()
                same += int(e2 == t)
                if e2 != t:
                    print(f"  {task} {k}-shot #{q}: engine {e2!r} torch {t!r}")
            agree[f"{task}/{k}"] = f"{same}/{min(args.n, len(test))}"
            print(f"{task} {k}-shot: {same}/{min(args.n, len(test))} identical predictions")
    report["predictions_identical"] = agree
    common.write_json(Path(os.environ.get("CHECK_OUT", "/tmp/flamingo_mini_engine_check.json")), report, indent=1)


if __name__ == "__main__":
    main()
