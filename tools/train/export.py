"""Stage 4: convert the training outputs into the engine's model directory with the repository's
converter, exactly the path users take for a released OpenFlamingo model:

  cd bindings/python && python -m flamingo.convert openflamingo \\
      --vision tools/train/work/vision.pt --vision-arch tools/train/work/vision_arch.json \\
      --lm tools/train/work/lm --checkpoint tools/train/work/checkpoint.pt \\
      --cross-attn-every-n-layers 1 \\
      --resampler-geometry depth=2,heads=4,dim_head=32,num_latents=16,ff_mult=2 \\
      --xattn-geometry heads=4,dim_head=32,ff_mult=2 --dtype f32 \\
      --out models/flamingo-mini --force

(--force replaces only config.json, *.safetensors, tokenizer.json and conversion.json; eval/,
examples/ and README.md stay.)  Then writes models/flamingo-mini/training.json with the
stage statistics and wall times.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import CROSS_ATTN_EVERY_N_LAYERS, MODEL_DIR, REPO, RESAMPLER, WORK, XATTN, Timer  # noqa: E402


CWD = REPO / "bindings" / "python"


def _rel(p: Path) -> str:
    return os.path.relpath(p, CWD)  # relative paths keep conversion.json free of machine paths


def convert_command():
    return [
        sys.executable, "-m", "flamingo.convert", "openflamingo",
        "--vision", _rel(WORK / "vision.pt"), "--vision-arch", _rel(WORK / "vision_arch.json"),
        "--lm", _rel(WORK / "lm"), "--checkpoint", _rel(WORK / "checkpoint.pt"),
        "--cross-attn-every-n-layers", str(CROSS_ATTN_EVERY_N_LAYERS),
        "--resampler-geometry", ",".join(f"{k}={RESAMPLER[k]}" for k in ("depth", "heads", "dim_head", "num_latents", "ff_mult")),
        "--xattn-geometry", ",".join(f"{k}={XATTN[k]}" for k in ("heads", "dim_head", "ff_mult")),
        "--dtype", "f32", "--out", _rel(MODEL_DIR), "--force",
    ]


def main():
    with Timer("export: convert"):
        cmd = convert_command()
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=CWD, check=True)
    size = sum((MODEL_DIR / f).stat().st_size for f in ("config.json", "model.safetensors", "tokenizer.json"))
    stats = {"model_files_bytes": size, "timings_s": json.loads((WORK / "timings.json").read_text())}
    for name in ("lm", "vision", "flamingo"):
        p = WORK / f"{name}_stats.json"
        if p.exists():
            stats[name] = json.loads(p.read_text())
    stats["timings_s"]["total"] = round(sum(v for k, v in stats["timings_s"].items() if k != "total"), 1)
    common.write_json(MODEL_DIR / "training.json", stats, indent=1)
    print(f"model directory {MODEL_DIR}: {size / 1e6:.2f} MB of model files; total wall time "
          f"{stats['timings_s']['total'] / 60:.1f} min")


if __name__ == "__main__":
    main()
