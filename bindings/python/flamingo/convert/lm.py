"""The frozen language model: a Hugging Face model directory (config.json + weights)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Dict, List, Tuple

from . import safetensors_io, torchpickle
from .errors import ConversionError, listing
from .tensors import Tensor

FAMILIES = ("mosaic_gpt", "mpt", "gpt_neox", "llama")
LAYERS_PATH = {"mosaic_gpt": "transformer.blocks", "mpt": "transformer.blocks", "gpt_neox": "gpt_neox.layers",
               "llama": "model.layers"}
# the input embedding, and the separate output head where the family has one
EMBEDDING = {"mosaic_gpt": "transformer.wte.weight", "mpt": "transformer.wte.weight",
             "gpt_neox": "gpt_neox.embed_in.weight", "llama": "model.embed_tokens.weight"}
HEAD = {"gpt_neox": "embed_out.weight", "llama": "lm_head.weight"}
# non-parameter buffers that older transformers versions saved with the weights
_BUFFER = re.compile(r"(^|\.)(rotary_emb\.inv_freq|attention\.bias|attention\.masked_bias)$")


def is_ignorable_buffer(name: str, family: str) -> bool:
    m = _BUFFER.search(name)
    if not m:
        return False
    if m.group(2) in ("attention.bias", "attention.masked_bias"):
        return family == "gpt_neox"
    return family in ("gpt_neox", "llama")


class LanguageModel:
    def __init__(self, directory: Path, family: str, hf_config: dict, settings: dict, tensors: Dict[str, Tensor],
                 weight_files: List[str], notes: List[str]):
        self.directory = directory
        self.family = family
        self.hf_config = hf_config
        self.settings = settings  # the model-format language_model keys (vocab_size filled in later)
        self.tensors = tensors
        self.weight_files = weight_files
        self.notes = notes
        self.hf_vocab = 0  # rows of the HF input embedding

    @property
    def layers_path(self) -> str:
        return LAYERS_PATH[self.family]

    @property
    def hidden_size(self) -> int:
        return self.settings["hidden_size"]


def _family(cfg: dict, path: Path) -> str:
    mt = str(cfg.get("model_type", "")).lower()
    archs = [str(a) for a in cfg.get("architectures") or []]
    if mt in ("mosaic_gpt",) or "MosaicGPT" in archs:
        return "mosaic_gpt"
    if mt == "mpt" or any(a.upper().startswith("MPT") for a in archs):
        return "mpt"
    if mt == "gpt_neox" or "GPTNeoXForCausalLM" in archs:
        return "gpt_neox"
    if mt == "llama" or any(a.lower().startswith("llama") for a in archs):
        return "llama"
    raise ConversionError(
        f"--lm {path}: unsupported model_type {cfg.get('model_type')!r} (architectures {archs}); supported: "
        "mosaic_gpt (MPT-1B, mosaicml/examples), mpt (MPT-7B), gpt_neox (RedPajama-INCITE), llama (LLaMA)"
    )


def _need(cfg: dict, key: str, path: Path, *alts: str):
    for k in (key,) + alts:
        if k in cfg and cfg[k] is not None:
            return cfg[k]
    raise ConversionError(f"--lm {path}/config.json: missing {key!r}")


def _unsupported(path: Path, what: str):
    raise ConversionError(f"--lm {path}/config.json: {what} is not supported by the engine")


def _rope(cfg: dict) -> dict:
    rp = cfg.get("rope_parameters")
    return rp if isinstance(rp, dict) else {}


def _settings(family: str, cfg: dict, path: Path) -> dict:
    """The model-format language_model keys derivable from config.json (vocab_size: the
    HF embedding rows, replaced by the OpenFlamingo vocabulary later)."""
    if family == "mosaic_gpt":
        d = int(_need(cfg, "d_model", path))
        heads = int(_need(cfg, "n_heads", path))
        if not cfg.get("alibi", False):
            _unsupported(path, "MosaicGPT without ALiBi (learned positions)")
        for key in ("attn_clip_qkv", "logit_scale"):
            if cfg.get(key) is not None:
                _unsupported(path, f"{key} = {cfg[key]!r}")
        _check_softmax_scale(cfg.get("softmax_scale"), d // heads, path)
        if cfg.get("prefix_lm") or cfg.get("attn_uses_sequence_id"):
            _unsupported(path, "prefix_lm / attn_uses_sequence_id")
        if not cfg.get("no_bias", False):
            _unsupported(path, "MosaicGPT with biases (no_bias false)")
        return {
            "hidden_size": d, "layers": int(_need(cfg, "n_layers", path)), "heads": heads,
            "intermediate_size": int(cfg.get("mlp_ratio", 4)) * d,
            "vocab_size": int(_need(cfg, "vocab_size", path)),
            "max_seq_len": int(cfg.get("max_seq_len", 2048)),
            "norm_eps": 1e-5, "tie_word_embeddings": True,
            "alibi_bias_max": cfg.get("alibi_bias_max", 8), "qk_ln": bool(cfg.get("attn_qk_ln", False)),
        }
    if family == "mpt":
        d = int(_need(cfg, "d_model", path))
        heads = int(_need(cfg, "n_heads", path))
        ac = cfg.get("attn_config") or {}
        if not ac.get("alibi", False):
            _unsupported(path, "MPT without ALiBi (attn_config.alibi false)")
        if ac.get("attn_type", "multihead_attention") != "multihead_attention":
            _unsupported(path, f"attn_config.attn_type {ac.get('attn_type')!r}")
        for key in ("clip_qkv",):
            if ac.get(key) is not None:
                _unsupported(path, f"attn_config.{key} = {ac[key]!r}")
        if ac.get("rope"):
            _unsupported(path, "attn_config.rope")
        _check_softmax_scale(ac.get("softmax_scale"), d // heads, path)
        if ac.get("prefix_lm") or ac.get("attn_uses_sequence_id"):
            _unsupported(path, "prefix_lm / attn_uses_sequence_id")
        if cfg.get("logit_scale") is not None:
            _unsupported(path, f"logit_scale = {cfg['logit_scale']!r}")
        if not cfg.get("no_bias", False):
            _unsupported(path, "MPT with linear biases (no_bias false)")
        if str(cfg.get("norm_type", "low_precision_layernorm")).lower() not in ("layernorm", "low_precision_layernorm"):
            _unsupported(path, f"norm_type {cfg.get('norm_type')!r}")
        ffn = cfg.get("ffn_config") or {}
        if ffn and ffn.get("ffn_type", "mptmlp") != "mptmlp":
            _unsupported(path, f"ffn_config.ffn_type {ffn.get('ffn_type')!r}")
        if ffn.get("ffn_hidden_size"):
            inter = int(ffn["ffn_hidden_size"])
        else:
            inter = int(round(float(cfg.get("expansion_ratio", 4)) * d))
        if cfg.get("tie_word_embeddings") is False:
            _unsupported(path, "MPT with an untied output head")
        return {
            "hidden_size": d, "layers": int(_need(cfg, "n_layers", path)), "heads": heads,
            "intermediate_size": inter, "vocab_size": int(_need(cfg, "vocab_size", path)),
            "max_seq_len": int(cfg.get("max_seq_len", 2048)),
            # transformers' MptConfig has layer_norm_epsilon; llm-foundry's LPLayerNorm uses the default 1e-5
            "norm_eps": float(cfg.get("layer_norm_epsilon", 1e-5)), "tie_word_embeddings": True,
            "alibi_bias_max": ac.get("alibi_bias_max", 8), "norm_bias": False, "qk_ln": bool(ac.get("qk_ln", False)),
        }
    if family == "gpt_neox":
        rp = _rope(cfg)
        if cfg.get("hidden_act", "gelu") != "gelu":
            _unsupported(path, f"hidden_act {cfg.get('hidden_act')!r} (exact GELU only)")
        scaling = cfg.get("rope_scaling")
        if scaling or rp.get("rope_type", "default") != "default":
            _unsupported(path, f"rope scaling {scaling or rp}")
        if cfg.get("attention_bias") is False:
            _unsupported(path, "GPT-NeoX without attention biases")
        # defaults: transformers GPTNeoXConfig
        pct = rp.get("partial_rotary_factor", cfg.get("partial_rotary_factor", cfg.get("rotary_pct", 0.25)))
        theta = rp.get("rope_theta", cfg.get("rope_theta", cfg.get("rotary_emb_base", 10000)))
        return {
            "hidden_size": int(_need(cfg, "hidden_size", path)), "layers": int(_need(cfg, "num_hidden_layers", path)),
            "heads": int(_need(cfg, "num_attention_heads", path)),
            "intermediate_size": int(_need(cfg, "intermediate_size", path)),
            "vocab_size": int(_need(cfg, "vocab_size", path)),
            "max_seq_len": int(cfg.get("max_position_embeddings", 2048)),
            "norm_eps": float(cfg.get("layer_norm_eps", 1e-5)),
            "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
            "rotary_pct": float(pct), "rope_theta": float(theta),
            "parallel_residual": bool(cfg.get("use_parallel_residual", True)),
        }
    if family == "llama":
        rp = _rope(cfg)
        if cfg.get("hidden_act", "silu") != "silu":
            _unsupported(path, f"hidden_act {cfg.get('hidden_act')!r}")
        scaling = cfg.get("rope_scaling")
        if scaling or rp.get("rope_type", "default") != "default":
            _unsupported(path, f"rope scaling {scaling or rp}")
        if cfg.get("attention_bias") or cfg.get("mlp_bias"):
            _unsupported(path, "LLaMA with biases")
        d = int(_need(cfg, "hidden_size", path))
        heads = int(_need(cfg, "num_attention_heads", path))
        if cfg.get("head_dim") not in (None, d // heads):
            _unsupported(path, f"head_dim {cfg['head_dim']} != hidden_size / heads")
        theta = rp.get("rope_theta", cfg.get("rope_theta", 10000))
        return {
            "hidden_size": d, "layers": int(_need(cfg, "num_hidden_layers", path)), "heads": heads,
            "intermediate_size": int(_need(cfg, "intermediate_size", path)),
            "vocab_size": int(_need(cfg, "vocab_size", path)),
            # 2023 conversions wrote max_sequence_length
            "max_seq_len": int(cfg.get("max_position_embeddings") or cfg.get("max_sequence_length") or 2048),
            "norm_eps": float(cfg.get("rms_norm_eps", 1e-6)),
            "tie_word_embeddings": bool(cfg.get("tie_word_embeddings", False)),
            "kv_heads": int(cfg.get("num_key_value_heads") or heads), "rope_theta": float(theta),
        }
    raise AssertionError(family)


def _check_softmax_scale(scale, head_dim: int, path: Path):
    if scale is not None and not math.isclose(float(scale), 1 / math.sqrt(head_dim), rel_tol=1e-6):
        _unsupported(path, f"softmax_scale {scale} (only the default 1/sqrt(head_dim))")


def expected_hf(family: str, s: dict, vocab: int) -> Dict[str, Tuple[int, ...]]:
    """The HF tensor names of one family (vocab rows `vocab`), without a tied head."""
    d, inter, L = s["hidden_size"], s["intermediate_size"], s["layers"]
    out: Dict[str, Tuple[int, ...]] = {EMBEDDING[family]: (vocab, d)}
    if family in ("mosaic_gpt", "mpt"):
        mosaic = family == "mosaic_gpt"
        nb = s.get("norm_bias", False)

        def norm(n):
            out[n + ".weight"] = (d,)
            if nb:
                out[n + ".bias"] = (d,)

        for i in range(L):
            b = f"transformer.blocks.{i}."
            norm(b + ("ln_1" if mosaic else "norm_1"))
            out[b + "attn.Wqkv.weight"] = (3 * d, d)
            if s.get("qk_ln"):
                norm(b + "attn.q_ln")
                norm(b + "attn.k_ln")
            out[b + "attn.out_proj.weight"] = (d, d)
            norm(b + ("ln_2" if mosaic else "norm_2"))
            out[b + ("mlp.mlp_up.weight" if mosaic else "ffn.up_proj.weight")] = (inter, d)
            out[b + ("mlp.mlp_down.weight" if mosaic else "ffn.down_proj.weight")] = (d, inter)
        norm("transformer.ln_f" if mosaic else "transformer.norm_f")
    elif family == "gpt_neox":
        for i in range(L):
            b = f"gpt_neox.layers.{i}."
            for n in ("input_layernorm", "post_attention_layernorm"):
                out[b + n + ".weight"] = (d,)
                out[b + n + ".bias"] = (d,)
            for n, o, k in (("attention.query_key_value", 3 * d, d), ("attention.dense", d, d),
                            ("mlp.dense_h_to_4h", inter, d), ("mlp.dense_4h_to_h", d, inter)):
                out[b + n + ".weight"] = (o, k)
                out[b + n + ".bias"] = (o,)
        out["gpt_neox.final_layer_norm.weight"] = (d,)
        out["gpt_neox.final_layer_norm.bias"] = (d,)
        if not s["tie_word_embeddings"]:
            out["embed_out.weight"] = (vocab, d)
    elif family == "llama":
        kv = s["kv_heads"] * (d // s["heads"])
        for i in range(L):
            b = f"model.layers.{i}."
            out[b + "input_layernorm.weight"] = (d,)
            out[b + "post_attention_layernorm.weight"] = (d,)
            out[b + "self_attn.q_proj.weight"] = (d, d)
            out[b + "self_attn.k_proj.weight"] = (kv, d)
            out[b + "self_attn.v_proj.weight"] = (kv, d)
            out[b + "self_attn.o_proj.weight"] = (d, d)
            out[b + "mlp.gate_proj.weight"] = (inter, d)
            out[b + "mlp.up_proj.weight"] = (inter, d)
            out[b + "mlp.down_proj.weight"] = (d, inter)
        out["model.norm.weight"] = (d,)
        if not s["tie_word_embeddings"]:
            out["lm_head.weight"] = (vocab, d)
    return out


def _weight_files(directory: Path) -> List[Path]:
    """The weight files of a HF directory: sharded/single safetensors (preferred) or
    pytorch_model*.bin, following an index json when there is one."""
    for index_name, single in (("model.safetensors.index.json", "model.safetensors"),
                               ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        index = directory / index_name
        if index.is_file():
            try:
                wm = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ConversionError(f"--lm {index}: not a valid weight index ({e})") from None
            files = sorted(set(wm.values()))
            missing = [f for f in files if not (directory / f).is_file()]
            if missing:
                raise ConversionError(f"--lm {index}: shard files missing: {', '.join(missing)}")
            return [directory / f for f in files]
        if (directory / single).is_file():
            return [directory / single]
    found = sorted(p.name for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".pt"))
    raise ConversionError(
        f"--lm {directory}: no model.safetensors / pytorch_model.bin (or their .index.json); files present: "
        f"{', '.join(found) or 'none'}"
    )


def read_lm(directory: Path) -> LanguageModel:
    directory = Path(directory)
    if not directory.is_dir():
        raise ConversionError(f"--lm {directory}: not a directory (expected a Hugging Face model directory)")
    cpath = directory / "config.json"
    try:
        cfg = json.loads(cpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"--lm {directory}: no config.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConversionError(f"--lm {cpath}: not valid JSON ({e})") from None
    if not isinstance(cfg, dict):
        raise ConversionError(f"--lm {cpath}: not a JSON object")
    family = _family(cfg, directory)
    settings = _settings(family, cfg, directory)
    notes: List[str] = []
    tensors: Dict[str, Tensor] = {}
    files = _weight_files(directory)
    for f in files:
        if f.suffix == ".safetensors":
            part, _ = safetensors_io.read(f)
        else:
            obj, script = torchpickle.load(f)
            if script:
                raise ConversionError(f"--lm {f}: a TorchScript archive, expected a state dict")
            part = torchpickle.tensor_dict(obj, f)
        dup = set(part) & set(tensors)
        if dup:
            raise ConversionError(f"--lm {f}: tensors also present in another shard: {listing(dup)}")
        tensors.update(part)
    lm = LanguageModel(directory, family, cfg, settings, tensors, [p.name for p in files], notes)
    _check_lm_tensors(lm)
    return lm


def _check_lm_tensors(lm: LanguageModel):
    fam, s, t = lm.family, lm.settings, lm.tensors
    path = lm.directory
    # spellings that differ between code bases / transformers versions
    if fam == "gpt_neox" and "lm_head.weight" in t and "embed_out.weight" not in t:
        t["embed_out.weight"] = t.pop("lm_head.weight")  # transformers 5 in-memory name
    if fam == "mpt" and any(".norm_1.bias" in n for n in t):
        s["norm_bias"] = True
    ignored = [n for n in t if is_ignorable_buffer(n, fam)]
    for n in ignored:
        del t[n]
    if ignored:
        lm.notes.append(f"lm: {len(ignored)} non-parameter buffers ignored ({ignored[0]}, ...)")
    tied_head = None
    if s["tie_word_embeddings"] and "lm_head.weight" in t:
        tied_head = t.pop("lm_head.weight")
    emb = t.get(EMBEDDING[fam])
    if emb is None:
        raise ConversionError(f"--lm {path}: missing tensor {EMBEDDING[fam]}")
    if len(emb.shape) != 2 or emb.shape[1] != s["hidden_size"]:
        raise ConversionError(f"--lm {path}: {EMBEDDING[fam]} has shape {list(emb.shape)}, expected [vocab, {s['hidden_size']}]")
    vocab = emb.shape[0]
    if vocab != s["vocab_size"]:
        lm.notes.append(f"lm: embedding has {vocab} rows, config.json vocab_size {s['vocab_size']}")
    expected = expected_hf(fam, s, vocab)
    missing = set(expected) - set(t)
    unexpected = set(t) - set(expected)
    problems = []
    if missing:
        problems.append(f"missing tensors: {listing(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {listing(unexpected)}")
    wrong = [f"{n} {list(x.shape)} (expected {list(expected[n])})" for n, x in t.items()
             if n in expected and x.shape != expected[n]]
    if wrong:
        problems.append(f"wrong shapes: {', '.join(wrong[:20])}")
    if problems:
        raise ConversionError(f"--lm {path} ({fam}, weights {', '.join(lm.weight_files)}): " + "; ".join(problems))
    if tied_head is not None:
        from .tensors import same_values

        if tied_head.shape != emb.shape or not same_values(tied_head, emb):
            raise ConversionError(f"--lm {path}: lm_head.weight differs from {EMBEDDING[fam]} but the model ties them")
        lm.notes.append("lm: lm_head.weight equals the tied input embedding; not stored")
    for n, x in t.items():
        if not x.is_float:
            raise ConversionError(f"--lm {path}: {n} has dtype {x.dtype}, expected floating point")
    lm.hf_vocab = vocab
