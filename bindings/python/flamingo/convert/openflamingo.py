"""OpenFlamingo release -> flamingo model directory (docs/model-format.md).

Procedure (spec/50 §5, open_flamingo 2.0.1 factory.py + README loading snippet):

1. tokenizer: the LM's tokenizer + "<|endofchunk|>", "<image>" (+ "<PAD>" when it has no
   pad token); V = len(tokenizer);
2. LM: the Hugging Face weights under their original names; input embedding resized to V
   (HF resize_token_embeddings: keep the first min(V, V_hf) rows);
3. overwritten from checkpoint.pt: the embeddings, every gated_cross_attn_layer tensor, the
   perceiver (missing or unexpected keys are errors, unlike load_state_dict(strict=False));
4. vision: the CLIP checkpoint's visual.* tensors (proj dropped, ln_post kept);
5. media/endofchunk ids = the added tokens' ids; constants of the released models:
   perceiver 6 layers x 8 heads x 64, 64 latents, ff_mult 4; cross-attention 8 heads x 64,
   ff_mult 4; every_n from the command line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from . import lm as lm_mod
from . import modelformat, nfnet as nfnet_mod, safetensors_io, tokenizer as tok_mod, vision as vision_mod
from .errors import ConversionError, listing, natural_key
from .tensors import STORABLE, Tensor, cast, float32_to_bf16, same_values, storable, to_float32

VERSION = "1"
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
RESAMPLER_DEFAULTS = {"depth": 6, "heads": 8, "dim_head": 64, "num_latents": 64, "ff_mult": 4}
XATTN_DEFAULTS = {"heads": 8, "dim_head": 64, "ff_mult": 4}
DEFAULT_SHARD_BYTES = 5 * 1024 ** 3


@dataclass
class Options:
    vision: Path
    vision_arch: str
    lm: Path
    checkpoint: Path
    cross_attn_every_n_layers: int
    out: Path
    dtype: Optional[str] = None  # None: keep each tensor's dtype (F64 -> F32)
    tokenizer: Optional[Path] = None
    vision_activation: Optional[str] = None  # None: quick_gelu unless the arch says quick_gelu: false
    media_semantics: str = "current"
    resampler: Dict[str, int] = field(default_factory=lambda: dict(RESAMPLER_DEFAULTS))
    xattn: Dict[str, int] = field(default_factory=lambda: dict(XATTN_DEFAULTS))
    new_rows: str = "zeros"  # grown output-head rows (LLaMA): zeros | mean
    max_shard_bytes: int = DEFAULT_SHARD_BYTES
    force: bool = False
    vision_image_size: Optional[int] = None  # NFNet only: input size (default: the variant's)


@dataclass
class Result:
    out: Path
    config: dict
    files: List[str]
    notes: List[str]


def _log(log: Optional[Callable[[str], None]], msg: str):
    if log is not None:
        log(msg)


def _strip_module(tensors: Dict[str, Tensor], notes: List[str]) -> Dict[str, Tensor]:
    out: Dict[str, Tensor] = {}
    n = 0
    for k, v in tensors.items():
        if k.startswith("module."):
            k = k[len("module."):]
            n += 1
        if k in out:
            raise ConversionError(f"--checkpoint: {k} appears both with and without the `module.` prefix")
        out[k] = v
    if n:
        notes.append(f"checkpoint: stripped the DDP `module.` prefix from {n} keys")
    return out


def _suggest_every_n(layers_with_blocks: List[int], n_layers: int) -> Optional[int]:
    for n in range(1, n_layers + 1):
        if modelformat.xattn_layers(n_layers, n) == layers_with_blocks:
            return n
    return None


def _grow_rows(t: Tensor, rows: int, mode: str) -> Tensor:
    """HF resize_token_embeddings for an output head: keep the first min(rows, V_hf) rows;
    new rows are zeros or the mean of the existing rows."""
    have = t.shape[0]
    if rows <= have:
        return Tensor(t.dtype, (rows,) + t.shape[1:], lambda: t.numpy()[:rows], t.origin + f" (first {rows} rows)")

    def load():
        a = t.numpy()
        if mode == "mean":
            mean = to_float32(a, t.dtype).astype(np.float64).mean(axis=0, keepdims=True).astype(np.float32)
            fill = float32_to_bf16(mean) if t.dtype == "BF16" else mean.astype(a.dtype)
            extra = np.repeat(fill, rows - have, axis=0)
        else:
            extra = np.zeros((rows - have,) + a.shape[1:], dtype=a.dtype)
        return np.concatenate([a, extra], axis=0)

    return Tensor(t.dtype, (rows,) + t.shape[1:], load, t.origin + f" (grown to {rows} rows)")


def _checkpoint_tensors(opts: Options, lm: lm_mod.LanguageModel, V: int, resampler: dict, xattn: dict,
                        visual_dim: int, notes: List[str]) -> Tuple[Dict[str, Tensor], dict, List[str]]:
    """(output tensors from checkpoint.pt, updated resampler settings, notes about unknowables)."""
    path = opts.checkpoint
    raw, kind = vision_mod.read_any(path, "--checkpoint")
    if kind == "torchscript":
        raise ConversionError(f"--checkpoint {path}: a TorchScript archive, expected OpenFlamingo's checkpoint.pt state dict")
    ck = _strip_module(raw, notes)
    fam, s = lm.family, lm.settings
    L, D = s["layers"], s["hidden_size"]
    lp = lm.layers_path
    unknowable: List[str] = []

    primary = re.compile(r"^lang_encoder\." + re.escape(lp) + r"\.(\d+)\.gated_cross_attn_layer\.(.+)$")
    alias = re.compile(r"^lang_encoder\.gated_cross_attn_layers\.(\d+)\.(.+)$")
    xt: Dict[Tuple[int, str], Dict[str, Tuple[str, Tensor]]] = {}
    perceiver: Dict[str, Tensor] = {}
    other: Dict[str, Tensor] = {}
    ignored: List[str] = []
    for k, t in ck.items():
        m = primary.match(k) or alias.match(k)
        if m:
            xt.setdefault((int(m.group(1)), m.group(2)), {})["alias" if m.re is alias else "primary"] = (k, t)
        elif k.startswith("perceiver."):
            perceiver[k] = t
        elif k.startswith("lang_encoder.") and lm_mod.is_ignorable_buffer(k, fam):
            ignored.append(k)
        else:
            other[k] = t
    if ignored:
        notes.append(f"checkpoint: {len(ignored)} non-parameter buffers ignored ({ignored[0]}, ...)")

    out: Dict[str, Tensor] = {}
    problems: List[str] = []

    # ---- cross-attention blocks
    want_layers = modelformat.xattn_layers(L, opts.cross_attn_every_n_layers)
    have_layers = sorted({i for i, _ in xt})
    if have_layers != want_layers:
        hint = _suggest_every_n(have_layers, L)
        raise ConversionError(
            f"--checkpoint {path}: cross-attention blocks before decoder layers {have_layers} but "
            f"--cross-attn-every-n-layers {opts.cross_attn_every_n_layers} with {L} layers implies {want_layers}"
            + (f" (the checkpoint matches --cross-attn-every-n-layers {hint})" if hint else "")
        )
    both = 0
    for i in want_layers:
        pref = f"lang_encoder.{lp}.{i}.gated_cross_attn_layer"
        spec = modelformat.xattn_block(xattn, pref, D, visual_dim)
        for name, shape in spec.items():
            suffix = name[len(pref) + 1:]
            entry = xt.pop((i, suffix), None)
            if entry is None:
                problems.append(f"missing {name}")
                continue
            if "primary" in entry and "alias" in entry:
                both += 1
                (k1, t1), (k2, t2) = entry["primary"], entry["alias"]
                if not same_values(t1, t2):
                    raise ConversionError(f"--checkpoint {path}: {k1} and {k2} (two spellings of one tensor) differ")
            key, t = entry.get("primary") or entry["alias"]
            if t.shape != shape:
                problems.append(f"{key} has shape {list(t.shape)}, expected {list(shape)}")
                continue
            out[name] = t
    for (i, suffix), entry in xt.items():
        for key, _ in entry.values():
            problems.append(f"unexpected {key}")
    if both:
        notes.append(f"checkpoint: {both} cross-attention tensors present under both spellings "
                     f"(lang_encoder.gated_cross_attn_layers.*, OpenFlamingo v1); checked equal")

    # ---- perceiver (optional media/frame embeddings decide the config)
    rs = dict(resampler)
    rs["dim"] = visual_dim
    me = perceiver.get("perceiver.media_time_embs")
    fe = perceiver.get("perceiver.frame_embs")
    rs["max_num_media"] = me.shape[0] if me is not None and len(me.shape) == 3 else None
    rs["max_num_frames"] = fe.shape[0] if fe is not None and len(fe.shape) == 2 else None
    pspec = modelformat.resampler(rs)
    for name, shape in pspec.items():
        t = perceiver.pop(name, None)
        if t is None:
            problems.append(f"missing {name}")
        elif t.shape != shape:
            problems.append(f"{name} has shape {list(t.shape)}, expected {list(shape)}")
        else:
            out[name] = t
    for name in perceiver:
        problems.append(f"unexpected {name}")

    # ---- embeddings and output head
    emb_name = "lang_encoder." + lm_mod.EMBEDDING[fam]
    emb = other.pop(emb_name, None)
    if emb is None:
        problems.append(f"missing {emb_name} (the resized input embedding)")
    elif len(emb.shape) != 2 or emb.shape[1] != D:
        problems.append(f"{emb_name} has shape {list(emb.shape)}, expected [V, {D}]")
    elif emb.shape[0] != V:
        raise ConversionError(
            f"--checkpoint {path}: {emb_name} has {emb.shape[0]} rows but the tokenizer with OpenFlamingo's tokens has "
            f"{V} (the LM's tokenizer differs from the one used in training: check the --lm directory, its "
            f"tokenizer files and whether it defines a pad token)"
        )
    else:
        out[emb_name] = emb
    tied_head = other.pop("lang_encoder.lm_head.weight", None) if s["tie_word_embeddings"] else None
    if tied_head is not None and emb is not None:
        if not same_values(tied_head, emb):
            raise ConversionError(f"--checkpoint {path}: lang_encoder.lm_head.weight differs from {emb_name} but the LM ties them")
        notes.append("checkpoint: lang_encoder.lm_head.weight is the tied input embedding; stored once")
    if not s["tie_word_embeddings"]:
        head_name = "lang_encoder." + lm_mod.HEAD[fam]
        head = other.pop(head_name, None)
        if head is None and fam == "gpt_neox":
            head = other.pop("lang_encoder.lm_head.weight", None)  # transformers 5 spelling
        if head is not None:
            if head.shape != (V, D):
                problems.append(f"{head_name} has shape {list(head.shape)}, expected {[V, D]}")
            else:
                out[head_name] = head
        elif fam in ("llama", "gpt_neox"):
            # Not in the checkpoint: open_flamingo saves only parameters whose name contains
            # "embed"; LLaMA's head is lm_head, and so is GPT-NeoX's once transformers >= 5
            # saved it. The base-vocabulary rows are the frozen LM's; the added tokens' are unknown.
            hf = lm.tensors[lm_mod.HEAD[fam]]
            out[head_name] = _grow_rows(hf, V, opts.new_rows)
            if fam == "gpt_neox":
                notes.append(f"warning: the checkpoint has no {head_name} (saved by transformers >= 5, which names "
                             f"the GPT-NeoX head lm_head, so open_flamingo did not save it); its rows come from --lm")
            if V > hf.shape[0]:
                unknowable.append(
                    f"{head_name} rows {hf.shape[0]}..{V - 1} (the output rows of the tokens OpenFlamingo "
                    f"added) are not in the release (only parameters whose name contains 'embed' were saved); written as "
                    f"{'zeros (logit 0)' if opts.new_rows == 'zeros' else 'the mean of the other rows'}; the reference "
                    f"initialised them randomly at load time"
                )
            elif V < hf.shape[0]:
                notes.append(f"lm: {lm_mod.HEAD[fam]} truncated from {hf.shape[0]} to {V} rows")
        else:
            problems.append(f"missing {head_name}")
    if other:
        problems.append(f"unexpected {listing(other)}")
    if problems:
        raise ConversionError(f"--checkpoint {path} does not match the model: " + "; ".join(problems[:60])
                              + (f"; ... ({len(problems) - 60} more)" if len(problems) > 60 else ""))
    for k, t in out.items():
        if not t.is_float:
            raise ConversionError(f"--checkpoint {path}: {k} has dtype {t.dtype}, expected floating point")
    # sanity (spec/50 §5): trained gates are non-zero
    zero = [k for k in out if k.endswith(("attn_gate", "ff_gate")) and float(out[k].float32().reshape(-1)[0]) == 0.0]
    if zero:
        notes.append(f"warning: {len(zero)} cross-attention gates are exactly 0 (untrained?): {listing(zero, 6)}")
    return out, rs, unknowable


def _language_model_config(lm: lm_mod.LanguageModel, V: int) -> dict:
    s = lm.settings
    c = {"family": lm.family}
    for k in ("hidden_size", "layers", "heads", "intermediate_size"):
        c[k] = s[k]
    c["vocab_size"] = V
    c["max_seq_len"] = s["max_seq_len"]
    c["norm_eps"] = s["norm_eps"]
    c["tie_word_embeddings"] = s["tie_word_embeddings"]
    extra = {"mosaic_gpt": ("alibi_bias_max", "qk_ln"), "mpt": ("alibi_bias_max", "norm_bias", "qk_ln"),
             "gpt_neox": ("rotary_pct", "rope_theta", "parallel_residual"), "llama": ("kv_heads", "rope_theta")}
    for k in extra[lm.family]:
        v = s[k]
        if isinstance(v, float) and v.is_integer() and k in ("alibi_bias_max", "rope_theta"):
            v = int(v)
        c[k] = v
    return c


def _shard(names: List[str], tensors: Dict[str, Tensor], max_bytes: int) -> List[List[str]]:
    shards: List[List[str]] = [[]]
    size = 0
    for n in names:
        b = tensors[n].nbytes
        if shards[-1] and size + b > max_bytes:
            shards.append([])
            size = 0
        shards[-1].append(n)
        size += b
    return shards


def _vision(opts: Options, notes: List[str], log) -> Tuple[dict, Dict[str, Tensor], int, dict, str, str]:
    """(config.json "vision", vision_encoder.* tensors, feature width, "preprocess", arch source, file kind)."""
    nf = nfnet_mod.parse_arch(opts.vision_arch, opts.vision_image_size)
    if nf is not None:
        raw, kind = vision_mod.read_any(opts.vision, "--vision")
        vis, width, vnotes = nfnet_mod.read_nfnet(raw, opts.vision, nf)
        notes += vnotes
        _log(log, f"vision: NFNet {opts.vision} ({kind}, {len(vis)} tensors, {width}-d features)")
        pre = {"image_size": nf["image_size"], "resize": "bicubic", "crop": "center",
               "mean": nfnet_mod.IMAGENET_MEAN, "std": nfnet_mod.IMAGENET_STD}
        return nf, vis, width, pre, "timm NFNet", kind
    if opts.vision_image_size is not None:
        raise ConversionError("--vision-image-size applies to NFNet encoders only (a CLIP ViT's size is in its arch)")
    arch, arch_src = vision_mod.load_arch(opts.vision_arch)
    _log(log, f"vision arch {opts.vision_arch}: {arch_src}")
    vis, vis_kind, vnotes = vision_mod.read_vision(opts.vision, arch)
    notes += vnotes
    _log(log, f"vision weights: {opts.vision} ({vis_kind}, {len(vis)} tensors)")
    if opts.vision_activation is not None:
        activation = opts.vision_activation
    elif arch["quick_gelu"] is False:
        activation = "gelu"
    else:
        activation = "quick_gelu"
        if arch["quick_gelu"] is None:
            notes.append("vision: activation quick_gelu (OpenAI CLIP weights, as open_clip loads pretrained='openai'; "
                         "pass --vision-activation gelu for other weights)")
    if activation not in ("quick_gelu", "gelu"):
        raise ConversionError(f"--vision-activation must be quick_gelu or gelu (got {activation})")
    cfg = {"kind": "clip_vit", "image_size": arch["image_size"], "patch_size": arch["patch_size"],
           "width": arch["width"], "layers": arch["layers"], "heads": arch["heads"], "mlp_dim": arch["mlp_dim"],
           "activation": activation, "layer_norm_eps": arch["layer_norm_eps"], "ln_post_on_tokens": False}
    pre = {"image_size": arch["image_size"], "resize": "bicubic", "crop": "center",
           "mean": OPENAI_CLIP_MEAN, "std": OPENAI_CLIP_STD}
    return cfg, vis, arch["width"], pre, arch_src, vis_kind


def convert(opts: Options, log: Optional[Callable[[str], None]] = None) -> Result:
    notes: List[str] = []
    if opts.cross_attn_every_n_layers < 1:
        raise ConversionError("--cross-attn-every-n-layers must be >= 1")
    if opts.media_semantics not in ("current", "v1"):
        raise ConversionError(f"--media-semantics must be current or v1 (got {opts.media_semantics})")
    if opts.new_rows not in ("zeros", "mean"):
        raise ConversionError(f"--new-rows must be zeros or mean (got {opts.new_rows})")
    if opts.dtype is not None and opts.dtype not in STORABLE:
        raise ConversionError(f"--dtype must be one of f32, f16, bf16 (got {opts.dtype})")
    out_dir = Path(opts.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConversionError(f"--out {out_dir}: exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not opts.force:
        raise ConversionError(f"--out {out_dir}: directory is not empty (use --force to overwrite)")

    # ---- vision
    vision_cfg, vis, visual_dim, preprocess, arch_src, vis_kind = _vision(opts, notes, log)

    # ---- language model
    lm = lm_mod.read_lm(opts.lm)
    notes += lm.notes
    _log(log, f"language model: {opts.lm} ({lm.family}, {lm.settings['layers']} layers, width {lm.hidden_size}, "
              f"weights {', '.join(lm.weight_files)})")

    # ---- tokenizer
    base, special, tok_src = tok_mod.load_base(Path(opts.lm), lm.family, opts.tokenizer)
    base_len = len(base)
    ids = tok_mod.add_openflamingo_tokens(base, special)
    V = ids.pop("vocab")
    pad_added = ids.pop("pad_added")
    _log(log, f"tokenizer: {tok_src}; {base_len} tokens + OpenFlamingo's -> V = {V}")
    notes.append(f"tokenizer: {tok_src}: base length {base_len}; added <|endofchunk|> = {ids['endofchunk']}, "
                 f"<image> = {ids['image']}, " + (f"<PAD> = {ids['pad']}" if pad_added else
                                                  f"pad token {special['pad_token']!r} = {ids['pad']} (existing)")
                 + f"; V = {V}")
    for k, v in ids.items():
        if v is not None and not 0 <= v < V:
            raise ConversionError(f"tokenizer: token {k} id {v} outside the vocabulary of {V}")

    # ---- checkpoint
    ck, resampler, unknowable = _checkpoint_tensors(opts, lm, V, dict(opts.resampler), dict(opts.xattn),
                                                    visual_dim, notes)
    _log(log, f"checkpoint: {opts.checkpoint} ({len(ck)} tensors)")

    # ---- assemble
    tensors: Dict[str, Tensor] = dict(vis)
    emb_hf = lm_mod.EMBEDDING[lm.family]
    head_hf = lm_mod.HEAD.get(lm.family)
    for k, t in lm.tensors.items():
        if k == emb_hf or (head_hf and k == head_hf):
            continue  # replaced by the checkpoint's (resized) embedding / head
        tensors["lang_encoder." + k] = t
    if lm.hf_vocab != V:
        notes.append(f"lm: input embedding resized {lm.hf_vocab} -> {V} rows (values from the checkpoint)")
    tensors.update(ck)

    config = {
        "format": "flamingo",
        "format_version": 1,
        "architecture": "openflamingo",
        "weights": [],
        "tokenizer": "tokenizer.json",
        "vision": vision_cfg,
        "resampler": {k: resampler[k] for k in ("dim", "depth", "heads", "dim_head", "num_latents", "ff_mult",
                                                 "max_num_media", "max_num_frames")},
        "cross_attention": {"every_n_layers": opts.cross_attn_every_n_layers, "heads": opts.xattn["heads"],
                            "dim_head": opts.xattn["dim_head"], "ff_mult": opts.xattn["ff_mult"],
                            "media_semantics": opts.media_semantics},
        "language_model": _language_model_config(lm, V),
        "tokens": {"image": ids["image"], "endofchunk": ids["endofchunk"], "pad": ids["pad"], "bos": ids["bos"],
                   "eos": ids["eos"]},
        "preprocess": preprocess,
    }

    expected = modelformat.expected(config, vision_shapes={n: t.shape for n, t in vis.items()})
    missing = set(expected) - set(tensors)
    extra = set(tensors) - set(expected)
    wrong = [f"{n} {list(tensors[n].shape)} != {list(expected[n])}" for n in expected
             if n in tensors and tensors[n].shape != expected[n]]
    if missing or extra or wrong:  # an internal inconsistency, not an input problem
        raise ConversionError(f"internal error: output does not match the format: missing {listing(missing)}; "
                              f"unexpected {listing(extra)}; wrong {wrong[:10]}")

    # dtypes
    final: Dict[str, Tensor] = {}
    for n, t in tensors.items():
        final[n] = cast(t, opts.dtype) if opts.dtype else storable(t)
    names = sorted(final, key=natural_key)
    shards = _shard(names, final, opts.max_shard_bytes)
    files = ["model.safetensors"] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    config["weights"] = files

    # ---- write (everything above only read headers and small tensors)
    if out_dir.is_dir() and opts.force:
        for p in out_dir.iterdir():
            if p.is_file() and (p.suffix == ".safetensors" or p.name in ("config.json", "tokenizer.json",
                                                                         "conversion.json")):
                p.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    written: List[Path] = []
    try:
        meta = {"format": "pt", "converter": f"flamingo.convert openflamingo v{VERSION}"}
        for fname, shard in zip(files, shards):
            _log(log, f"writing {out_dir / fname} ({len(shard)} tensors)")
            safetensors_io.write(out_dir / fname, [(n, final[n]) for n in shard], meta)
            written.append(out_dir / fname)
        (out_dir / "tokenizer.json").write_text(json.dumps(base.to_doc(), ensure_ascii=False, indent=2) + "\n",
                                                encoding="utf-8")
        written.append(out_dir / "tokenizer.json")
        report = {
            "converter": f"flamingo.convert openflamingo v{VERSION}",
            "inputs": {"vision": str(opts.vision), "vision_format": vis_kind, "vision_arch": f"{opts.vision_arch} ({arch_src})",
                       "lm": str(opts.lm), "lm_family": lm.family, "lm_weights": lm.weight_files,
                       "tokenizer": tok_src, "checkpoint": str(opts.checkpoint)},
            "options": {"cross_attn_every_n_layers": opts.cross_attn_every_n_layers, "dtype": opts.dtype or "keep",
                        "media_semantics": opts.media_semantics, "vision_activation": vision_cfg.get("activation"),
                        "resampler": opts.resampler, "xattn": opts.xattn, "new_rows": opts.new_rows},
            "dtypes": _dtype_counts(final),
            "notes": notes,
            "not_in_the_release": unknowable,
        }
        (out_dir / "conversion.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(out_dir / "conversion.json")
        (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    except BaseException:
        for p in written:
            try:
                p.unlink()
            except OSError:
                pass
        for p in out_dir.glob("*.partial"):
            try:
                p.unlink()
            except OSError:
                pass
        raise
    return Result(out_dir, config, files, notes + unknowable)


def _dtype_counts(tensors: Dict[str, Tensor]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for t in tensors.values():
        out[t.dtype] = out.get(t.dtype, 0) + 1
    return dict(sorted(out.items()))
