"""The CLIP vision tower: open_clip architecture configs and the `visual.*` weights."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from . import safetensors_io, torchpickle
from .errors import ConversionError, listing
from .tensors import Tensor

# open_clip 2.20.0 src/open_clip/model_configs/<name>.json, vision_cfg (+ top-level
# quick_gelu), for the plain ViT configs; used when open_clip is not installed.
BUILTIN_ARCHS: Dict[str, dict] = {
    "ViT-S-32": {"image_size": 224, "layers": 12, "width": 384, "patch_size": 32},
    "ViT-S-16": {"image_size": 224, "layers": 12, "width": 384, "patch_size": 16},
    "ViT-M-32": {"image_size": 224, "layers": 12, "width": 512, "patch_size": 32},
    "ViT-M-16": {"image_size": 224, "layers": 12, "width": 512, "patch_size": 16},
    "ViT-B-32": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32},
    "ViT-B-32-quickgelu": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32, "quick_gelu": True},
    "ViT-B-32-plus-256": {"image_size": 256, "layers": 12, "width": 896, "patch_size": 32},
    "ViT-B-16": {"image_size": 224, "layers": 12, "width": 768, "patch_size": 16},
    "ViT-B-16-plus": {"image_size": 224, "layers": 12, "width": 896, "patch_size": 16},
    "ViT-B-16-plus-240": {"image_size": 240, "layers": 12, "width": 896, "patch_size": 16},
    "ViT-L-14": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14},
    "ViT-L-14-280": {"image_size": 280, "layers": 24, "width": 1024, "patch_size": 14},
    "ViT-L-14-336": {"image_size": 336, "layers": 24, "width": 1024, "patch_size": 14},
    "ViT-L-16": {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 16},
    "ViT-L-16-320": {"image_size": 320, "layers": 24, "width": 1024, "patch_size": 16},
    "ViT-H-14": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
    "ViT-H-16": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 16},
    "ViT-g-14": {"image_size": 224, "layers": 40, "width": 1408, "head_width": 88, "mlp_ratio": 4.3637, "patch_size": 14},
    "ViT-bigG-14": {"image_size": 224, "layers": 48, "width": 1664, "head_width": 104, "mlp_ratio": 4.9231, "patch_size": 14},
    "ViT-e-14": {"image_size": 224, "layers": 56, "width": 1792, "head_width": 112, "mlp_ratio": 8.5715, "patch_size": 14},
}

# CLIPVisionCfg fields (open_clip 2.20 .. 2.2x) and what a converted model can do with them
_HARMLESS = {"patch_dropout", "output_tokens", "n_queries", "attn_pooler_heads", "timm_model_pretrained", "timm_pool",
             "timm_proj", "timm_proj_bias", "timm_drop", "timm_drop_path", "attn_pooler_queries", "pool_type",
             "final_ln_after_pool", "output_dim", "embed_cls"}
_KNOWN = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "norm_kwargs", "act_kwargs",
          "ls_init_value", "input_patchnorm", "global_average_pool", "attentional_pool", "timm_model_name",
          "no_ln_pre", "pos_embed_type"} | _HARMLESS


def _open_clip_config_dir() -> Optional[Path]:
    """open_clip's model_configs directory, found without importing open_clip (which needs torch)."""
    try:
        spec = importlib.util.find_spec("open_clip")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "model_configs"
        if d.is_dir():
            return d
    return None


def known_arch_names() -> List[str]:
    names = set(BUILTIN_ARCHS)
    d = _open_clip_config_dir()
    if d is not None:
        names |= {p.stem for p in d.glob("*.json")}
    return sorted(names)


def load_arch(name_or_path: str) -> Tuple[dict, str]:
    """(vision settings, description of the source) for an open_clip config name or a
    path to an open_clip model-config JSON (with "vision_cfg") or a bare vision_cfg JSON."""
    p = Path(name_or_path)
    quick = None
    if name_or_path.endswith(".json") or p.is_file():
        if not p.is_file():
            raise ConversionError(f"--vision-arch {name_or_path}: no such file")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConversionError(f"--vision-arch {name_or_path}: not a JSON file ({e})") from None
        source = str(p)
    else:
        d = None
        cdir = _open_clip_config_dir()
        if cdir is not None and (cdir / f"{name_or_path}.json").is_file():
            d = json.loads((cdir / f"{name_or_path}.json").read_text(encoding="utf-8"))
            source = f"open_clip model_configs/{name_or_path}.json"
        elif name_or_path in BUILTIN_ARCHS:
            cfg = dict(BUILTIN_ARCHS[name_or_path])
            quick = cfg.pop("quick_gelu", None)
            d = {"vision_cfg": cfg, "quick_gelu": quick}
            source = f"built-in table (open_clip 2.20 model_configs/{name_or_path}.json)"
        else:
            raise ConversionError(
                f"--vision-arch {name_or_path!r}: unknown open_clip model config; known: {', '.join(known_arch_names())} "
                f"(or pass the path of a model-config JSON)"
            )
    if not isinstance(d, dict):
        raise ConversionError(f"--vision-arch {name_or_path}: expected a JSON object")
    if "vision_cfg" in d:
        vcfg, quick = d["vision_cfg"], d.get("quick_gelu", quick)
    else:
        vcfg = d
        quick = vcfg.get("quick_gelu")
        vcfg = {k: v for k, v in vcfg.items() if k != "quick_gelu"}
    return _vision_settings(vcfg, quick, name_or_path), source


def _vision_settings(v: dict, quick_gelu, what: str) -> dict:
    if not isinstance(v, dict):
        raise ConversionError(f"--vision-arch {what}: vision_cfg is not an object")
    unknown = set(v) - _KNOWN
    if unknown:
        raise ConversionError(f"--vision-arch {what}: unknown vision_cfg keys {listing(unknown)}")
    if v.get("timm_model_name"):
        raise ConversionError(f"--vision-arch {what}: timm vision towers ({v['timm_model_name']}) are not supported (CLIP ViT only)")
    layers = v.get("layers", 12)
    if not isinstance(layers, int):
        raise ConversionError(f"--vision-arch {what}: a ResNet tower (layers {layers}) is not supported (CLIP ViT only)")
    unsupported = [k for k in ("ls_init_value", "input_patchnorm", "global_average_pool", "attentional_pool", "no_ln_pre")
                   if v.get(k)]
    if v.get("pos_embed_type", "learnable") != "learnable":
        unsupported.append("pos_embed_type")
    if unsupported:
        raise ConversionError(f"--vision-arch {what}: vision options not supported by the engine: {', '.join(unsupported)}")
    image_size = v.get("image_size", 224)
    if isinstance(image_size, (list, tuple)):
        if len(image_size) != 2 or image_size[0] != image_size[1]:
            raise ConversionError(f"--vision-arch {what}: non-square image_size {image_size} is not supported")
        image_size = image_size[0]
    patch = v.get("patch_size", 16)
    width = v.get("width", 768)
    head_width = v.get("head_width", 64)
    if width % head_width:
        raise ConversionError(f"--vision-arch {what}: width {width} is not a multiple of head_width {head_width}")
    eps = 1e-5
    if isinstance(v.get("norm_kwargs"), dict):
        extra = set(v["norm_kwargs"]) - {"eps"}
        if extra:
            raise ConversionError(f"--vision-arch {what}: norm_kwargs {sorted(extra)} not supported")
        eps = float(v["norm_kwargs"].get("eps", eps))
    if v.get("act_kwargs"):
        raise ConversionError(f"--vision-arch {what}: act_kwargs not supported")
    if image_size % patch:
        raise ConversionError(f"--vision-arch {what}: image_size {image_size} is not a multiple of patch_size {patch}")
    return {
        "image_size": int(image_size),
        "patch_size": int(patch),
        "width": int(width),
        "layers": int(layers),
        "heads": int(width // head_width),
        "mlp_dim": int(width * float(v.get("mlp_ratio", 4.0))),
        "layer_norm_eps": eps,
        "quick_gelu": bool(quick_gelu) if quick_gelu is not None else None,
    }


def expected_visual(arch: dict) -> Dict[str, Tuple[int, ...]]:
    """Tensor names of open_clip's `visual` module (without `proj`) and their shapes."""
    w, p, g = arch["width"], arch["patch_size"], arch["image_size"] // arch["patch_size"]
    m = arch["mlp_dim"]
    out = {
        "conv1.weight": (w, 3, p, p),
        "class_embedding": (w,),
        "positional_embedding": (g * g + 1, w),
        "ln_pre.weight": (w,),
        "ln_pre.bias": (w,),
    }
    for i in range(arch["layers"]):
        b = f"transformer.resblocks.{i}."
        out.update({
            b + "ln_1.weight": (w,), b + "ln_1.bias": (w,),
            b + "attn.in_proj_weight": (3 * w, w), b + "attn.in_proj_bias": (3 * w,),
            b + "attn.out_proj.weight": (w, w), b + "attn.out_proj.bias": (w,),
            b + "ln_2.weight": (w,), b + "ln_2.bias": (w,),
            b + "mlp.c_fc.weight": (m, w), b + "mlp.c_fc.bias": (m,),
            b + "mlp.c_proj.weight": (w, m), b + "mlp.c_proj.bias": (w,),
        })
    out["ln_post.weight"] = (w,)
    out["ln_post.bias"] = (w,)
    return out


def read_any(path: Path, what: str) -> Tuple[Dict[str, Tensor], str]:
    """Tensors of a .safetensors file, a torch.save state dict (optionally wrapped in
    {"state_dict": ...} / {"model_state_dict": ...}) or a TorchScript archive:
    (tensors, kind) with kind one of "safetensors", "torch", "torchscript"."""
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{what} {path}: no such file")
    if path.is_dir():
        raise ConversionError(f"{what} {path}: is a directory, expected a file")
    if safetensors_io.is_safetensors(path) and not _is_zip(path):
        tensors, _ = safetensors_io.read(path)
        return tensors, "safetensors"
    obj, script = torchpickle.load(path)
    if script:
        return torchpickle.script_tensors(obj), "torchscript"
    obj = unwrap_state_dict(obj)
    return torchpickle.tensor_dict(obj, path), "torch"


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def unwrap_state_dict(obj):
    """A training checkpoint's state dict: {"model_state_dict": sd, ...} or {"state_dict": sd, ...}."""
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict"):
            inner = obj.get(key)
            if isinstance(inner, dict) and not isinstance(obj.get(key), Tensor):
                return inner
    return obj


def read_vision(path: Path, arch: dict) -> Tuple[Dict[str, Tensor], str, List[str]]:
    """The `visual.*` tensors of a CLIP checkpoint, renamed to `vision_encoder.*`, checked
    against `arch`: (tensors, kind, notes)."""
    tensors, kind = read_any(path, "--vision")
    notes: List[str] = []
    names = list(tensors)
    strip_module = all(n.startswith("module.") for n in names) and names
    if strip_module:
        tensors = {n[len("module."):]: t for n, t in tensors.items()}
    visual = {n[len("visual."):]: t for n, t in tensors.items() if n.startswith("visual.")}
    if not visual:
        if "conv1.weight" in tensors and "class_embedding" in tensors:
            visual = dict(tensors)  # a bare visual-module state dict
        else:
            raise ConversionError(
                f"--vision {path}: no `visual.*` tensors (expected an open_clip / OpenAI CLIP state dict); "
                f"found e.g. {listing(list(tensors)[:8])}"
            )
    else:
        notes.append(f"vision: {len(tensors) - len(visual)} non-visual tensors (text tower, logit_scale) ignored")
    expected = expected_visual(arch)
    proj = visual.pop("proj", None)
    if proj is not None:
        notes.append(f"vision: visual.proj {list(proj.shape)} not stored (OpenFlamingo uses the patch tokens)")
    missing = set(expected) - set(visual)
    unexpected = set(visual) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing tensors: {listing('visual.' + n for n in missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {listing('visual.' + n for n in unexpected)}")
    wrong = [f"visual.{n} {list(t.shape)} (expected {list(expected[n])})"
             for n, t in visual.items() if n in expected and t.shape != expected[n]]
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong[:20])}")
    if problems:
        raise ConversionError(
            f"--vision {path} does not match --vision-arch (width {arch['width']}, layers {arch['layers']}, "
            f"patch {arch['patch_size']}, image {arch['image_size']}, mlp {arch['mlp_dim']}): " + "; ".join(problems)
        )
    for n, t in visual.items():
        if not t.is_float:
            raise ConversionError(f"--vision {path}: visual.{n} has dtype {t.dtype}, expected floating point")
    return {"vision_encoder." + n: t for n, t in visual.items()}, kind, notes
