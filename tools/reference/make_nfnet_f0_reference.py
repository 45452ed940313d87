#!/usr/bin/env python3
"""NFNet-F0 reference for NFNetTests.testF0MatchesTimm (not committed: ~140 MB).

    /work/refenv/bin/python tools/reference/make_nfnet_f0_reference.py [--out build/nfnet_f0] [--size 80]

Instantiates the REAL timm `dm_nfnet_f0` (timm 1.0.31, num_classes=0) with seeded random weights
(timm's own init, then non-trivial gains, biases and skipinit gains so that every term matters),
rounds every parameter to float16 and writes

  <out>/config.json          {"vision": {"kind": "nfnet", "variant": "f0", "image_size": S}} + notes
  <out>/model.safetensors    the state dict (timm names), F16
  <out>/reference.safetensors  input.pixels [2, 3, S, S], stem, stages.{0..3}, features (NCHW, f32)

The reference forward runs in fp32 on the f16-rounded weights (the engine widens them to the same
f32 values). The default 80x80 input gives feature maps 20 -> 20, 10, 5, 3: odd sizes, so stride-2
convs use asymmetric TF-SAME padding and the ceil-mode average pool a partial window.
build/ is gitignored; the Swift test skips when the directory is missing.
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import timm  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build(seed: int):
    torch.manual_seed(seed)
    model = timm.create_model("dm_nfnet_f0", pretrained=False, num_classes=0).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("skipinit_gain"):
                p.copy_(0.5 + 0.2 * torch.randn((), generator=g))
            elif name.endswith(".gain"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            p.copy_(p.half().float())  # the engine reads the F16 file: same values on both sides
    return model, g


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(REPO / "build" / "nfnet_f0"))
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--seed", type=int, default=1106)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    model, g = build(args.seed)
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(out / "model.safetensors"))

    s = args.size
    raw = torch.rand((2, 3, s, s), generator=g)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = ((raw - mean) / std).float()

    taps = {}
    hooks = [model.stem.register_forward_hook(lambda m, i, o: taps.__setitem__("stem", o.detach().clone()))]
    for si, st in enumerate(model.stages):
        hooks.append(st.register_forward_hook(lambda m, i, o, si=si: taps.__setitem__(f"stages.{si}", o.detach().clone())))
    with torch.no_grad():
        feats = model.forward_features(pixels)
        for h in hooks:
            h.remove()
        feats64 = model.double().forward_features(pixels.double())
    dev = (feats.double() - feats64).abs().max().item() / feats64.abs().max().item()
    tensors = {"input.pixels": pixels, "features": feats.float().contiguous()}
    tensors.update({k: v.float().contiguous() for k, v in taps.items()})
    save_file(tensors, str(out / "reference.safetensors"))

    config = {
        "vision": {"kind": "nfnet", "variant": "f0", "image_size": s},
        "note": "timm dm_nfnet_f0 (num_classes=0), seeded random weights rounded to F16; not a loadable flamingo model",
        "generator": "tools/reference/make_nfnet_f0_reference.py",
        "timm_version": timm.__version__,
        "torch_version": torch.__version__,
        "seed": args.seed,
        "fp32_vs_fp64_features_max_rel": dev,
        "tensors": {k: list(v.shape) for k, v in sorted(tensors.items())},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    print(f"wrote {out}: {len(sd)} tensors, features {list(feats.shape)}, fp32 vs fp64 max|d|/max|ref| {dev:.3e}")


if __name__ == "__main__":
    sys.exit(main())
