"""GPU benchmark at OpenFlamingo-3B geometry: libflamingo's OpenCL backend next to PyTorch on the same GPU.

    python3 tools/bench/bench_gpu.py [--dir DIR] [--device nvidia] [--decode 32] [--geometry of3b|small]

Not a test; builds nothing (run it on the GPU host with a built libflamingo.so: FLAMINGO_LIBRARY or
build/libflamingo.so.1, and this repository's Python package on PYTHONPATH=bindings/python; numpy only).

1. Writes (once) a random-weight model directory at OpenFlamingo-3B geometry (CLIP ViT-L/14 at 224,
   resampler 6 × 64 latents, an MPT with MPT-1B's shapes, cross-attention before every layer) in f32
   and a bf16 copy, from the tensor inventory the converter knows (flamingo.convert.modelformat), with
   numpy: no torch needed for the engine side.
2. Engine: each dtype on the OpenCL device `--device` (FLAMINGO_DEVICE syntax: index or name
   substring): encode 3 images, prefill (encode + media + 64 tokens), decode ms/token (median), and a
   correctness check of the device against the CPU backend on the same prompt (max|Δ|/max|ref| of the
   prefill logits, 8 greedy tokens).
3. PyTorch, when torch with CUDA and open_flamingo/open_clip/transformers import: the same model from
   the real classes (tools/bench/bench_of3b.py) with the same f32 weights, eager, fp32 and bf16, on
   cuda. Otherwise the reference figures measured on an H100 (shared/notes/gpu-opencl-nvidia.md) are
   printed for comparison and marked as such.

The table gives ratios engine/PyTorch and the decode floor: LM + cross-attention weight bytes per
token over the device's copy bandwidth (measured in the PyTorch process when there is one, else
3.0 TB/s, the H100's measured device-to-device copy rate).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bindings" / "python"))
IMAGES, PROMPT = 3, 64
H100_REFERENCE = {"fp32": {"encode_ms": 9.4, "prefill_ms": 68.4, "decode_ms": 42.8},
                  "bf16": {"encode_ms": 8.5, "prefill_ms": 50.9, "decode_ms": 34.6}}


def geometry(name):
    if name == "small":  # a smoke-test size that runs on PoCL in seconds
        return dict(image=32, patch=8, vwidth=64, vlayers=2, vheads=4, dim=64, layers=2, heads=4, vocab=512,
                    latents=8, rdepth=1)
    return dict(image=224, patch=14, vwidth=1024, vlayers=24, vheads=16, dim=2048, layers=24, heads=16,
                vocab=50280, latents=64, rdepth=6)


def config(g):
    return {
        "format": "flamingo", "format_version": 1, "architecture": "openflamingo",
        "vision": {"kind": "clip_vit", "image_size": g["image"], "patch_size": g["patch"], "width": g["vwidth"],
                   "layers": g["vlayers"], "heads": g["vheads"], "mlp_dim": 4 * g["vwidth"], "activation": "quick_gelu"},
        "resampler": {"dim": g["vwidth"], "depth": g["rdepth"], "heads": 8, "dim_head": 64, "num_latents": g["latents"],
                      "ff_mult": 4},
        "cross_attention": {"every_n_layers": 1, "heads": 8, "dim_head": 64, "ff_mult": 4},
        "language_model": {"family": "mpt", "hidden_size": g["dim"], "layers": g["layers"], "heads": g["heads"],
                           "intermediate_size": 4 * g["dim"], "vocab_size": g["vocab"], "max_seq_len": 2048,
                           "tie_word_embeddings": True},
        "tokens": {"image": g["vocab"] - 2, "endofchunk": g["vocab"] - 3, "pad": g["vocab"] - 1, "eos": 0},
        "preprocess": {"image_size": g["image"], "mean": [0.48145466, 0.4578275, 0.40821073],
                       "std": [0.26862954, 0.26130258, 0.27577711]},
    }


def make_model_dirs(root: Path, g):
    """f32 and bf16 directories with the same random weights (bf16 = the f32 values rounded)."""
    import numpy as np
    from flamingo.convert import modelformat, safetensors_io
    from flamingo.convert.tensors import Tensor, float32_to_bf16
    cfg = config(g)
    shapes = modelformat.expected(cfg)
    rng = np.random.default_rng(0)
    arrays = {}
    for name in sorted(shapes):
        shape = shapes[name]
        if name.endswith(("attn_gate", "ff_gate")):
            a = np.full(shape, 0.5, np.float32)
        elif len(shape) == 1 and (".norm" in name or "ln_" in name or "norm_" in name) and name.endswith("weight"):
            a = np.ones(shape, np.float32)
        elif len(shape) == 1:
            a = (rng.standard_normal(shape) * 0.02).astype(np.float32)
        else:
            a = (rng.standard_normal(shape) / np.sqrt(shape[-1])).astype(np.float32)
        arrays[name] = a
    for dtype in ("f32", "bf16"):
        d = root / dtype
        d.mkdir(parents=True, exist_ok=True)
        items = []
        for name, a in arrays.items():
            if dtype == "bf16" and a.ndim >= 2:
                items.append((name, Tensor.from_array(float32_to_bf16(a).view(np.uint16), "BF16")))
            else:
                items.append((name, Tensor.from_array(a)))
        safetensors_io.write(d / "model.safetensors", items)
        (d / "config.json").write_text(json.dumps(dict(cfg, weights=["model.safetensors"]), indent=2))


def inputs(g):
    import random
    rng = random.Random(1)
    pixels = [rng.uniform(-1.8, 2.1) for _ in range(IMAGES * 3 * g["image"] * g["image"])]
    vocab = g["vocab"]
    text = [rng.randrange(1, vocab - 3) for _ in range(PROMPT)]
    for pos in (0, 21, 42):
        text[pos] = vocab - 2
    return pixels, text


def run_engine(model_dir: Path, g, backend: str, decode: int):
    import flamingo
    pixels, text = inputs(g)
    out = {}
    with flamingo.Model(model_dir, backend=backend) as m:
        t = []
        for _ in range(3):
            s = time.perf_counter(); visual = m.encode_images(pixels, IMAGES); t.append(time.perf_counter() - s)
        out["encode_ms"] = statistics.median(t[1:]) * 1e3
        t = []
        with m.session() as sess:
            for _ in range(3):
                sess.truncate(0)
                s = time.perf_counter()
                visual = m.encode_images(pixels, IMAGES)
                sess.set_media(visual, IMAGES)
                logits = sess.eval(text)
                t.append(time.perf_counter() - s)
            out["prefill_ms"] = statistics.median(t[1:]) * 1e3
            out["prefill_logits"] = list(logits)
            steps, tokens = [], []
            for _ in range(decode):
                nxt = max(range(len(logits)), key=logits.__getitem__)
                tokens.append(nxt)
                s = time.perf_counter(); logits = sess.eval([nxt]); steps.append(time.perf_counter() - s)
            out["decode_ms"] = statistics.median(steps[2:]) * 1e3
            out["greedy"] = tokens[:8]
    return out


def run_torch(model_dir: Path, decode: int, precision: str):
    import torch
    sys.path.insert(0, str(REPO / "tools" / "bench"))
    import bench_of3b as b
    from safetensors.torch import load_file
    model, _ = b.build_torch_model()
    weights = load_file(str(model_dir / "model.safetensors"))
    with torch.no_grad():
        for prefix, mod in (("vision_encoder.", model.vision_encoder), ("perceiver.", model.perceiver)):
            for k, t in mod.state_dict().items():
                if prefix + k in weights:
                    t.copy_(weights[prefix + k])
        for k, t in model.lang_encoder.state_dict().items():
            name = "lang_encoder." + k.replace(".decoder_layer.", ".")
            if name in weights:
                t.copy_(weights[name])
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model = model.to("cuda", dtype)
    pixels, text = b.inputs(b.lm_config()["vocab"])
    vision_x = torch.tensor(pixels).view(1, IMAGES, 1, 3, 224, 224).to("cuda", dtype)
    ids = torch.tensor([text], device="cuda")
    mask = torch.ones_like(ids)
    lm, out = model.lang_encoder, {}

    def timed(f, n=5):
        t = []
        for _ in range(n):
            torch.cuda.synchronize(); s = time.perf_counter(); r = f(); torch.cuda.synchronize()
            t.append(time.perf_counter() - s)
        return statistics.median(t[1:]), r

    with torch.no_grad():
        out["encode_ms"] = timed(lambda: model._encode_vision_x(vision_x=vision_x))[0] * 1e3

        def prefill():
            lm.clear_conditioned_layers()
            lm._use_cached_vision_x = True
            model._encode_vision_x(vision_x=vision_x)
            return lm(input_ids=ids, attention_mask=mask, use_cache=True)
        ms, res = timed(prefill)
        out["prefill_ms"] = ms * 1e3
        cache, logits, steps = res.cache, res.logits[:, -1, :], []
        for _ in range(decode):
            nxt = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            torch.cuda.synchronize(); s = time.perf_counter()
            res = lm(input_ids=nxt, attention_mask=mask, cache=cache, use_cache=True)
            torch.cuda.synchronize(); steps.append(time.perf_counter() - s)
            cache, logits = res.cache, res.logits[:, -1, :]
        out["decode_ms"] = statistics.median(steps[2:]) * 1e3
        big = torch.empty(1 << 28, device="cuda")
        torch.cuda.synchronize(); s = time.perf_counter(); big.clone(); torch.cuda.synchronize()
        out["copy_gbps"] = 2 * big.numel() * 4 / (time.perf_counter() - s) / 1e9
    return out


def rel_err(a, b):
    return max(abs(x - y) for x, y in zip(a, b)) / max(max(abs(y) for y in b), 1e-30)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=str(REPO / "build" / "bench" / "gpu"))
    ap.add_argument("--device", default=os.environ.get("FLAMINGO_DEVICE", "nvidia"))
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--geometry", choices=["of3b", "small"], default="of3b")
    ap.add_argument("--phase", default="all", help=argparse.SUPPRESS)
    a = ap.parse_args()
    g = geometry(a.geometry)
    root = Path(a.dir) / a.geometry
    os.environ["FLAMINGO_DEVICE"] = a.device
    if a.phase != "all":  # one measurement in its own process: "engine:<dtype>:<backend>" or "torch:<precision>"
        kind, *rest = a.phase.split(":")
        if kind == "engine":
            print(json.dumps(run_engine(root / rest[0], g, rest[1], a.decode)))
        else:
            print(json.dumps(run_torch(root / "f32", a.decode, rest[0])))
        return
    if not (root / "bf16" / "config.json").exists():
        print(f"writing random-weight models to {root} ...", file=sys.stderr)
        make_model_dirs(root, g)

    def phase(name):
        r = subprocess.run([sys.executable, __file__, "--dir", a.dir, "--device", a.device, "--decode", str(a.decode),
                            "--geometry", a.geometry, "--phase", name], capture_output=True, text=True)
        if r.returncode != 0:
            print(f"{name}: failed: {r.stderr.strip().splitlines()[-1:] or r.returncode}", file=sys.stderr)
            return None
        return json.loads(r.stdout.strip().splitlines()[-1])

    engine = {dt: phase(f"engine:{dt}:opencl") for dt in ("f32", "bf16")}
    cpu = phase("engine:f32:cpu")
    torch_ = {p: phase(f"torch:{p}") for p in ("fp32", "bf16")} if a.geometry == "of3b" else {}
    measured = all(torch_.get(p) for p in ("fp32", "bf16"))
    ref = torch_ if measured else H100_REFERENCE
    header = json.loads((root / "bf16" / "model.safetensors").open("rb").read(
        8 + int.from_bytes((root / "bf16" / "model.safetensors").open("rb").read(8), "little"))[8:])
    lm_bytes = sum(e["data_offsets"][1] - e["data_offsets"][0] for k, e in header.items() if k.startswith("lang_encoder."))
    bw = (torch_.get("fp32") or {}).get("copy_gbps", 3000.0)
    print(f"OpenFlamingo-3B geometry ({a.geometry}), device {a.device!r}; PyTorch: "
          + ("measured in this run (eager, cuda)" if measured else "NOT measured here: H100 reference figures from the notes"))
    if cpu and engine["f32"]:
        print(f"OpenCL f32 vs CPU backend: prefill logits max|d|/max|ref| {rel_err(engine['f32']['prefill_logits'], cpu['prefill_logits']):.2e}, "
              f"greedy {'identical' if engine['f32']['greedy'] == cpu['greedy'] else 'DIFFERENT'}")
    print(f"{'':<30}{'engine f32':>12}{'torch fp32':>12}{'ratio':>8}{'engine bf16':>13}{'torch bf16':>12}{'ratio':>8}")
    for key, label in [("encode_ms", f"encode {IMAGES} images (ms)"), ("prefill_ms", f"prefill {IMAGES} img + {PROMPT} tok"),
                       ("decode_ms", "decode (ms/token)")]:
        row = f"{label:<30}"
        for dt, p in (("f32", "fp32"), ("bf16", "bf16")):
            e, r = (engine[dt] or {}).get(key), (ref.get(p) or {}).get(key)
            row += f"{e if e is not None else float('nan'):>12.2f}{r if r is not None else float('nan'):>12.2f}"
            row += f"{(e / r) if e and r else float('nan'):>8.2f}" + (" " if dt == "f32" else "")
        print(row)
    print(f"decode floor (bf16 LM + cross-attention weights {lm_bytes / 2**30:.2f} GiB at {bw:.0f} GB/s): "
          f"{lm_bytes / (bw * 1e9) * 1e3:.2f} ms/token")


if __name__ == "__main__":
    main()
