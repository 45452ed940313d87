"""The Flamingo paper's vision encoder: a timm NFNet state dict (dm_nfnet_f0 … f6 or any
NormFreeNet with the dm_nfnet recipe) as `vision_encoder.*` with config.json's
`"vision": {"kind": "nfnet", …}` (docs/nfnet.md). The names are timm's; the classifier
`head.fc.*` is dropped. Exact shapes are checked by the engine at load time (it knows the
geometry); here the block structure is checked against the config."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .errors import ConversionError, listing
from .tensors import Tensor

# timm dm_nfnet_f{n}: blocks per stage, and the default (test) input size
DEPTHS = {f"f{i}": (i + 1, 2 * (i + 1), 6 * (i + 1), 3 * (i + 1)) for i in range(7)}
IMAGE_SIZES = {"f0": 256, "f1": 320, "f2": 352, "f3": 416, "f4": 512, "f5": 544, "f6": 576}
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

_NAME = re.compile(
    r"^(stem\.conv\d?\.(weight|bias|gain)"
    r"|stages\.\d+\.\d+\.(downsample\.conv|conv1|conv2|conv2b|conv3)\.(weight|bias|gain)"
    r"|stages\.\d+\.\d+\.attn_last\.fc[12]\.(weight|bias)"
    r"|stages\.\d+\.\d+\.skipinit_gain"
    r"|final_conv\.(weight|bias|gain))$")


def parse_arch(name_or_path: str, image_size: Optional[int]) -> Optional[dict]:
    """config.json's "vision" object for an NFNet --vision-arch (`dm_nfnet_f6`, `nfnet_f6`,
    `f6`, or a JSON file holding such an object with "kind": "nfnet"); None for other archs."""
    m = re.fullmatch(r"(?:dm_)?(?:nfnet_)?(f[0-6])", name_or_path)
    if m:
        v = m.group(1)
        cfg = {"kind": "nfnet", "variant": v, "image_size": image_size or IMAGE_SIZES[v]}
    else:
        p = Path(name_or_path)
        if not (name_or_path.endswith(".json") and p.is_file()):
            return None
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None  # the CLIP path reports the problem
        if not isinstance(d, dict) or d.get("kind") != "nfnet":
            return None
        cfg = dict(d)
        if image_size:
            cfg["image_size"] = image_size
        if "image_size" not in cfg:
            v = cfg.get("variant", "").replace("dm_nfnet_", "")
            if v not in IMAGE_SIZES:
                raise ConversionError(f"--vision-arch {name_or_path}: give image_size (or --vision-image-size)")
            cfg["image_size"] = IMAGE_SIZES[v]
    return cfg


def _depths(cfg: dict) -> List[int]:
    if "depths" in cfg:
        return list(cfg["depths"])
    return list(DEPTHS[cfg["variant"].replace("dm_nfnet_", "")])


def read_nfnet(tensors: Dict[str, Tensor], path: Path, cfg: dict) -> Tuple[Dict[str, Tensor], int, List[str]]:
    """(vision_encoder.* tensors, feature width, notes) from a timm NormFreeNet state dict."""
    notes: List[str] = []
    if tensors and all(n.startswith("module.") for n in tensors):
        tensors = {n[len("module."):]: t for n, t in tensors.items()}
    head = [n for n in tensors if n.startswith("head.")]
    if head:
        notes.append(f"vision: NFNet classifier {listing(head)} dropped (Flamingo uses the feature map)")
    body = {n: t for n, t in tensors.items() if not n.startswith("head.")}
    bad = [n for n in body if not _NAME.match(n)]
    if bad or not any(n.startswith("stem.") for n in body):
        raise ConversionError(f"--vision {path}: not a timm NFNet state dict (unexpected tensors {listing(bad or list(body)[:8])})")
    blocks: Dict[int, set] = {}
    for n in body:
        m = re.match(r"stages\.(\d+)\.(\d+)\.", n)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    found = [len(blocks.get(s, ())) for s in range(max(blocks) + 1)] if blocks else []
    want = _depths(cfg)
    if found != want:
        raise ConversionError(f"--vision {path}: blocks per stage {found}, but --vision-arch implies {want}")
    for n, t in body.items():
        if not t.is_float:
            raise ConversionError(f"--vision {path}: {n} has dtype {t.dtype}, expected floating point")
    features = cfg.get("features", "final")
    if features == "final" and "final_conv.weight" in body:
        width = body["final_conv.weight"].shape[0]
    else:
        last = max(k for k in blocks)
        width = body[f"stages.{last}.{len(blocks[last]) - 1}.conv3.weight"].shape[0]
    return {"vision_encoder." + n: t for n, t in body.items()}, int(width), notes
