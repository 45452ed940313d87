"""Reference for the Perceiver Resampler with frame and media-time embeddings (video input).

    /work/refenv/bin/python tools/reference/make_video_reference.py

open_flamingo 2.0.1's PerceiverResampler built with max_num_media / max_num_frames (the released
models use neither; the Flamingo paper's video path does), random weights, fixed seed. Writes
Tests/Fixtures/video_resampler/: model.safetensors (the resampler's weights, named perceiver.*),
reference.safetensors (`input.features` [T, F, v, D] for one sample, `output` [T, latents, D]),
config.json (the resampler's hyper-parameters in docs/model-format.md's "resampler" keys).
Deterministic: single-threaded, seeded.
"""
import json
import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
import torch
from safetensors.torch import save_file

from open_flamingo.src.helpers import PerceiverResampler

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
OUT = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "video_resampler"
CFG = dict(dim=32, depth=2, heads=2, dim_head=16, num_latents=8, ff_mult=4, max_num_media=4, max_num_frames=8)
T, F, V = 3, 8, 16  # media items, frames per item, tokens per frame


def main():
    g = torch.Generator().manual_seed(4242)
    model = PerceiverResampler(**CFG).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim > 1 else 0.2))
        x = torch.randn(1, T, F, V, CFG["dim"], generator=g)
        out = model(x)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({"perceiver." + k: v.contiguous() for k, v in model.state_dict().items()}, str(OUT / "model.safetensors"))
    save_file({"input.features": x[0].contiguous(), "output": out[0].contiguous()}, str(OUT / "reference.safetensors"))
    (OUT / "config.json").write_text(json.dumps({"resampler": CFG, "frames": F, "tokens_per_frame": V, "media": T},
                                                indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
