"""The tensor inventory a config.json implies (docs/model-format.md), mirroring
Sources/FlamingoCore/Model/*: the converter checks its output against it before writing."""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .lm import LAYERS_PATH

Shapes = Dict[str, Tuple[int, ...]]


def _norm(out: Shapes, name: str, d: int, bias: bool = True):
    out[name + ".weight"] = (d,)
    if bias:
        out[name + ".bias"] = (d,)


def _linear(out: Shapes, name: str, o: int, i: int, bias: bool):
    out[name + ".weight"] = (o, i)
    if bias:
        out[name + ".bias"] = (o,)


def xattn_layers(layers: int, every_n: int) -> List[int]:
    return [i for i in range(layers) if (i + 1) % every_n == 0]


def vision(v: dict, p: str = "vision_encoder") -> Shapes:
    w, ps, g, m = v["width"], v["patch_size"], v["image_size"] // v["patch_size"], v["mlp_dim"]
    out: Shapes = {f"{p}.conv1.weight": (w, 3, ps, ps), f"{p}.class_embedding": (w,),
                   f"{p}.positional_embedding": (g * g + 1, w)}
    _norm(out, f"{p}.ln_pre", w)
    for i in range(v["layers"]):
        b = f"{p}.transformer.resblocks.{i}"
        _norm(out, f"{b}.ln_1", w)
        out[f"{b}.attn.in_proj_weight"] = (3 * w, w)
        out[f"{b}.attn.in_proj_bias"] = (3 * w,)
        _linear(out, f"{b}.attn.out_proj", w, w, True)
        _norm(out, f"{b}.ln_2", w)
        _linear(out, f"{b}.mlp.c_fc", m, w, True)
        _linear(out, f"{b}.mlp.c_proj", w, m, True)
    _norm(out, f"{p}.ln_post", w)
    return out


def resampler(r: dict, p: str = "perceiver") -> Shapes:
    dim, inner = r["dim"], r["heads"] * r["dim_head"]
    out: Shapes = {f"{p}.latents": (r["num_latents"], dim)}
    if r.get("max_num_frames") is not None:
        out[f"{p}.frame_embs"] = (r["max_num_frames"], dim)
    if r.get("max_num_media") is not None:
        out[f"{p}.media_time_embs"] = (r["max_num_media"], 1, dim)
    for l in range(r["depth"]):
        a = f"{p}.layers.{l}.0"
        _norm(out, f"{a}.norm_media", dim)
        _norm(out, f"{a}.norm_latents", dim)
        _linear(out, f"{a}.to_q", inner, dim, False)
        _linear(out, f"{a}.to_kv", 2 * inner, dim, False)
        _linear(out, f"{a}.to_out", dim, inner, False)
        f = f"{p}.layers.{l}.1"
        _norm(out, f"{f}.0", dim)
        _linear(out, f"{f}.1", dim * r["ff_mult"], dim, False)
        _linear(out, f"{f}.3", dim, dim * r["ff_mult"], False)
    _norm(out, f"{p}.norm", dim)
    return out


def xattn_block(x: dict, p: str, lm_dim: int, visual_dim: int) -> Shapes:
    inner = x["heads"] * x["dim_head"]
    out: Shapes = {f"{p}.attn_gate": (1,), f"{p}.ff_gate": (1,)}
    _norm(out, f"{p}.attn.norm", lm_dim)
    _linear(out, f"{p}.attn.to_q", inner, lm_dim, False)
    _linear(out, f"{p}.attn.to_kv", 2 * inner, visual_dim, False)
    _linear(out, f"{p}.attn.to_out", lm_dim, inner, False)
    _norm(out, f"{p}.ff.0", lm_dim)
    _linear(out, f"{p}.ff.1", lm_dim * x["ff_mult"], lm_dim, False)
    _linear(out, f"{p}.ff.3", lm_dim, lm_dim * x["ff_mult"], False)
    return out


def language_model(c: dict, p: str = "lang_encoder") -> Shapes:
    fam, d, V, L, inter = c["family"], c["hidden_size"], c["vocab_size"], c["layers"], c["intermediate_size"]
    out: Shapes = {}
    if fam in ("mpt", "mosaic_gpt"):
        mosaic = fam == "mosaic_gpt"
        nb = False if mosaic else c.get("norm_bias", False)
        qk = c.get("qk_ln", mosaic)
        out[f"{p}.transformer.wte.weight"] = (V, d)
        for i in range(L):
            b = f"{p}.transformer.blocks.{i}"
            _norm(out, f"{b}.{'ln_1' if mosaic else 'norm_1'}", d, nb)
            _linear(out, f"{b}.attn.Wqkv", 3 * d, d, False)
            if qk:
                _norm(out, f"{b}.attn.q_ln", d, nb)
                _norm(out, f"{b}.attn.k_ln", d, nb)
            _linear(out, f"{b}.attn.out_proj", d, d, False)
            _norm(out, f"{b}.{'ln_2' if mosaic else 'norm_2'}", d, nb)
            _linear(out, f"{b}.{'mlp.mlp_up' if mosaic else 'ffn.up_proj'}", inter, d, False)
            _linear(out, f"{b}.{'mlp.mlp_down' if mosaic else 'ffn.down_proj'}", d, inter, False)
        _norm(out, f"{p}.transformer.{'ln_f' if mosaic else 'norm_f'}", d, nb)
    elif fam == "gpt_neox":
        out[f"{p}.gpt_neox.embed_in.weight"] = (V, d)
        for i in range(L):
            b = f"{p}.gpt_neox.layers.{i}"
            _norm(out, f"{b}.input_layernorm", d)
            _norm(out, f"{b}.post_attention_layernorm", d)
            _linear(out, f"{b}.attention.query_key_value", 3 * d, d, True)
            _linear(out, f"{b}.attention.dense", d, d, True)
            _linear(out, f"{b}.mlp.dense_h_to_4h", inter, d, True)
            _linear(out, f"{b}.mlp.dense_4h_to_h", d, inter, True)
        _norm(out, f"{p}.gpt_neox.final_layer_norm", d)
        if not c["tie_word_embeddings"]:
            out[f"{p}.embed_out.weight"] = (V, d)
    elif fam == "llama":
        kv = c.get("kv_heads", c["heads"]) * (d // c["heads"])
        out[f"{p}.model.embed_tokens.weight"] = (V, d)
        for i in range(L):
            b = f"{p}.model.layers.{i}"
            _norm(out, f"{b}.input_layernorm", d, False)
            _linear(out, f"{b}.self_attn.q_proj", d, d, False)
            _linear(out, f"{b}.self_attn.k_proj", kv, d, False)
            _linear(out, f"{b}.self_attn.v_proj", kv, d, False)
            _linear(out, f"{b}.self_attn.o_proj", d, d, False)
            _norm(out, f"{b}.post_attention_layernorm", d, False)
            _linear(out, f"{b}.mlp.gate_proj", inter, d, False)
            _linear(out, f"{b}.mlp.up_proj", inter, d, False)
            _linear(out, f"{b}.mlp.down_proj", d, inter, False)
        _norm(out, f"{p}.model.norm", d, False)
        if not c["tie_word_embeddings"]:
            out[f"{p}.lm_head.weight"] = (V, d)
    else:
        raise ValueError(fam)
    return out


def expected(config: dict, vision_shapes: Optional[Shapes] = None) -> Shapes:
    """`vision_shapes`: the NFNet's tensors as given (its geometry is checked by the engine)."""
    if config["vision"].get("kind") == "nfnet":
        if vision_shapes is None:
            raise ValueError("an NFNet config needs vision_shapes")
        out = dict(vision_shapes)
    else:
        out = vision(config["vision"])
    out.update(resampler(config["resampler"]))
    lmc = config["language_model"]
    out.update(language_model(lmc))
    x = config["cross_attention"]
    for i in xattn_layers(lmc["layers"], x["every_n_layers"]):
        out.update(xattn_block(x, f"lang_encoder.{LAYERS_PATH[lmc['family']]}.{i}.gated_cross_attn_layer",
                               lmc["hidden_size"], config["resampler"]["dim"]))
    return out
