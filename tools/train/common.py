"""Shared settings and helpers of the flamingo-mini training pipeline (tools/train/).

Everything here is deterministic; every stage takes its sizes from this file so that the
converter flags (export.py) and the evaluator (evaluate_torch.py) agree with training.
"""

from __future__ import annotations

import os

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

import json
import random
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")

import numpy as np
import torch

THREADS = int(os.environ.get("FLAMINGO_TRAIN_THREADS", "2"))
torch.set_num_threads(THREADS)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
WORK = Path(os.environ.get("FLAMINGO_TRAIN_WORK", HERE / "work"))
MODEL_DIR = Path(os.environ.get("FLAMINGO_MINI_OUT", REPO / "models" / "flamingo-mini"))
EVAL_DIR = MODEL_DIR / "eval"

SEED = 1234

# ---- the synthetic world ---------------------------------------------------------------------
IMAGE_SIZE = 64
COLOURS = {
    "red": (215, 35, 35),
    "green": (35, 155, 55),
    "blue": (35, 80, 215),
    "yellow": (235, 200, 20),
    "purple": (135, 55, 175),
    "orange": (245, 130, 25),
}
COLOUR_NAMES = list(COLOURS)
SHAPES = ["circle", "square", "triangle"]
SIZES = ["small", "large"]
# pool of invented words for the in-context naming task (meaning only defined by the shots)
WORDS = ["blicket", "dax", "wug", "toma", "fep", "zorp", "kiki", "glorp", "mip", "tufa", "lorp", "nerb"]
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}

# ---- model geometry --------------------------------------------------------------------------
VISION = dict(image_size=IMAGE_SIZE, patch_size=8, width=128, layers=4, head_width=32, mlp_ratio=4.0, output_dim=128)
LM = dict(hidden_size=128, intermediate_size=384, layers=4, heads=4, kv_heads=4, max_position_embeddings=2048,
          rms_norm_eps=1e-5, rope_theta=10000.0)
RESAMPLER = dict(depth=2, heads=4, dim_head=32, num_latents=16, ff_mult=2)
XATTN = dict(heads=4, dim_head=32, ff_mult=2)
CROSS_ATTN_EVERY_N_LAYERS = 1
TOKENIZER_VOCAB = 500  # byte-level BPE incl. its 2 specials; OpenFlamingo's 3 tokens come on top

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def seed_all(seed: int):
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def write_json(path: Path, obj, indent=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(obj, indent=indent, ensure_ascii=False, separators=None if indent else (",", ":"))
    path.write_text(text + "\n", encoding="utf-8")


class Timer:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.t = time.time()
        print(f"== {self.name}", flush=True)
        return self

    def __exit__(self, *exc):
        self.elapsed = time.time() - self.t
        print(f"== {self.name}: {self.elapsed:.1f} s", flush=True)
        log = WORK / "timings.json"
        d = json.loads(log.read_text()) if log.exists() else {}
        d[self.name] = round(self.elapsed, 1)
        write_json(log, d, indent=1)


def pixels_from_uint8(arr: np.ndarray) -> torch.Tensor:
    """[N, 64, 64, 3] uint8 (already image_size, so open_clip's bicubic resize and centre crop
    are the identity) -> normalised float [N, 3, 64, 64], exactly open_clip's ToTensor+Normalize."""
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (t - mean) / std


def clip_transform():
    """open_clip's eval transform for image_size 64 (what create_model_and_transforms returns)."""
    from open_clip.transform import image_transform

    return image_transform(IMAGE_SIZE, is_train=False, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)
