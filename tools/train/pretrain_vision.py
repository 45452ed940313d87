"""Stage 2: pretrain the vision tower, a tiny open_clip VisionTransformer (common.VISION:
64x64 input, patch 8, width 128, 4 layers, exact GELU), as a scene classifier.

Dense targets on the patch tokens (what OpenFlamingo feeds the Perceiver Resampler; open_clip
<= 2.22: the last block's outputs without ln_post): for each 8x8 patch the colour, shape and
size of the object covering most of it (or background; an object counts when it covers at
least 8 of the 64 pixels), three linear read-outs.  Global targets on open_clip's pooled output
(ln_post(class token) @ proj): the number (0-3) of objects of each (colour, shape).

Also renders the training image bank (data.Bank; JPEG round-tripped like the evaluation
images) and saves its pixels for stage 3.  Writes WORK/vision.pt (an open_clip-style state
dict with `visual.*` keys), WORK/vision_arch.json (the --vision-arch model config) and
WORK/bank.npz.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import COLOUR_NAMES, SEED, SHAPES, SIZES, VISION, WORK, Timer, pixels_from_uint8, seed_all  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from open_clip.transformer import VisionTransformer  # noqa: E402

import data  # noqa: E402

BANK_ANY = int(os.environ.get("BANK_ANY", "6000"))
BANK_MONO = int(os.environ.get("BANK_MONO", "500"))
STEPS = int(os.environ.get("VISION_STEPS", "400"))
BATCH = 128
LR = 2e-3
WARMUP = 15
N_COUNT = len(COLOUR_NAMES) * len(SHAPES)
PATCH_CLASSES = (len(COLOUR_NAMES) + 1, len(SHAPES) + 1, len(SIZES) + 1)


def make_visual() -> VisionTransformer:
    return VisionTransformer(
        image_size=VISION["image_size"], patch_size=VISION["patch_size"], width=VISION["width"], layers=VISION["layers"],
        heads=VISION["width"] // VISION["head_width"], mlp_ratio=VISION["mlp_ratio"], output_dim=VISION["output_dim"],
        act_layer=nn.GELU, output_tokens=True,
    )


def arch_json():
    return {"embed_dim": VISION["output_dim"], "quick_gelu": False,
            "vision_cfg": {"image_size": VISION["image_size"], "layers": VISION["layers"], "width": VISION["width"],
                           "head_width": VISION["head_width"], "mlp_ratio": VISION["mlp_ratio"],
                           "patch_size": VISION["patch_size"]}}


def patch_targets(scenes):
    """[N, 64 patches, 3] (colour 0..6, shape 0..3, size 0..2; 0 = background)."""
    g = VISION["image_size"] // VISION["patch_size"]
    p = VISION["patch_size"]
    out = np.zeros((len(scenes), g * g, 3), dtype=np.int64)
    for n, s in enumerate(scenes):
        lab = np.asarray(data.label_map(s))  # 0 = background, k + 1 = object k
        blocks = lab.reshape(g, p, g, p).transpose(0, 2, 1, 3).reshape(g * g, p * p)
        cover = np.stack([(blocks == k + 1).sum(1) for k in range(len(s.objects))])  # [objects, patches]
        win = cover.argmax(0)
        for q in np.nonzero(cover.max(0) >= 8)[0]:  # the object covering most of the patch
            o = s.objects[win[q]]
            out[n, q] = (COLOUR_NAMES.index(o.colour) + 1, SHAPES.index(o.shape) + 1, SIZES.index(o.size) + 1)
    return torch.from_numpy(out)


def count_targets(scenes):
    keys = [(c, s) for c in COLOUR_NAMES for s in SHAPES]
    pos = {k: i for i, k in enumerate(keys)}
    t = np.zeros((len(scenes), len(keys)), dtype=np.int64)
    for n, s in enumerate(scenes):
        for o in s.objects:
            t[n, pos[(o.colour, o.shape)]] += 1
    return torch.from_numpy(np.minimum(t, 3))


def main():
    seed_all(SEED + 10)
    with Timer("vision: render bank"):
        bank = data.Bank(SEED + 11, BANK_ANY, BANK_MONO)
        pix = bank.pixels()
        np.savez(WORK / "bank.npz", pixels=pix)
    print(f"bank: {len(bank.scenes)} images")
    yp, yc = patch_targets(bank.scenes), count_targets(bank.scenes)
    x_all = pixels_from_uint8(pix)
    n_val = 500
    tr, va = slice(n_val, None), slice(0, n_val)

    visual = make_visual()
    head_tok = nn.Linear(VISION["width"], sum(PATCH_CLASSES))
    head_cls = nn.Linear(VISION["output_dim"], N_COUNT * 4)
    params = list(visual.parameters()) + list(head_tok.parameters()) + list(head_cls.parameters())
    print(f"vision parameters: {sum(p.numel() for p in visual.parameters()) / 1e6:.2f} M")
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / WARMUP) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / STEPS))))
    g = torch.Generator().manual_seed(SEED + 12)
    ce = nn.functional.cross_entropy

    def loss_fn(xb, ypb, ycb):
        pooled, tokens = visual(xb)
        lt = head_tok(tokens).split(PATCH_CLASSES, dim=-1)
        lc = head_cls(pooled).view(-1, N_COUNT, 4)
        loss = sum(ce(l.reshape(-1, l.shape[-1]), ypb[..., i].reshape(-1)) for i, l in enumerate(lt))
        loss = loss + ce(lc.reshape(-1, 4), ycb.reshape(-1))
        return loss, lt, lc

    with Timer("vision: pretraining"):
        t0 = time.time()
        visual.train()
        n_tr = len(x_all) - n_val
        for step in range(STEPS):
            idx = n_val + torch.randint(0, n_tr, (BATCH,), generator=g)
            loss, _, _ = loss_fn(x_all[idx], yp[idx], yc[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if step % 20 == 0 or step == STEPS - 1:
                print(f"vision step {step} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
        visual.eval()
    with torch.no_grad():
        _, lt, lc = loss_fn(x_all[va], yp[va], yc[va])
        fg = yp[va][..., 0] > 0
        patch_acc = [((l.argmax(-1) == yp[va][..., i]) & fg).sum().item() / fg.sum().item() for i, l in enumerate(lt)]
        count_acc = (lc.argmax(-1) == yc[va]).all(-1).float().mean().item()
    print(f"vision: held-out object-patch accuracy colour/shape/size {[round(a, 3) for a in patch_acc]}, "
          f"exact (colour, shape) counts {count_acc:.3f}")
    sd = {"visual." + k: v.detach().clone() for k, v in visual.state_dict().items()}
    torch.save(sd, WORK / "vision.pt")
    common.write_json(WORK / "vision_arch.json", arch_json(), indent=2)
    common.write_json(WORK / "vision_stats.json", {"steps": STEPS, "batch": BATCH, "final_loss": round(loss.item(), 4),
                                                   "patch_accuracy_colour_shape_size": patch_acc, "count_accuracy": count_acc,
                                                   "bank_images": len(bank.scenes)})


if __name__ == "__main__":
    main()
