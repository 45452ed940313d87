"""Builds the real open_flamingo 2.0.1 `Flamingo` for flamingo-mini, the way
open_flamingo/src/factory.py create_model_and_transforms does (without downloads; compare
tools/reference/make_fixtures.py build_flamingo), with the miniature's geometry:

  vision   open_clip VisionTransformer (common.VISION), `visual.output_tokens = True`
  LM       transformers LlamaForCausalLM from WORK/lm, extended with FlamingoLMMixin
  Flamingo(vision, lm, eoc id, media id, vis_dim = vision width, cross_attn_every_n_layers)
  then the PerceiverResampler and the GatedCrossAttentionBlocks that Flamingo.__init__ /
  init_flamingo build with the release defaults are rebuilt from the same classes with
  common.RESAMPLER / common.XATTN (the converter's --resampler-geometry / --xattn-geometry).

Freezing as factory.py: everything frozen, then perceiver, gated_cross_attn_layers and the
LM's input embedding unfrozen (train_utils.py additionally masks the embedding gradient to the
<image> and <|endofchunk|> rows, done in train_flamingo.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import CROSS_ATTN_EVERY_N_LAYERS, RESAMPLER, VISION, WORK, XATTN  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoTokenizer, LlamaForCausalLM  # noqa: E402

from open_flamingo.src.flamingo import Flamingo  # noqa: E402
from open_flamingo.src.flamingo_lm import FlamingoLMMixin  # noqa: E402
from open_flamingo.src.helpers import GatedCrossAttentionBlock, PerceiverResampler  # noqa: E402
from open_flamingo.src.utils import extend_instance  # noqa: E402

# transformers-5 compatibility (the same single patch as tools/reference/make_fixtures.py):
# open_flamingo 2.0.1's FlamingoLMMixin.forward requires attention_mask, which transformers 5
# generate() drops when it is all ones.  Default it to None; nothing else changes.
_ORIG_MIXIN_FORWARD = FlamingoLMMixin.forward
if not getattr(FlamingoLMMixin.forward, "_optional_mask", False):
    def _mixin_forward_optional_mask(self, input_ids, attention_mask=None, **kwargs):
        return _ORIG_MIXIN_FORWARD(self, input_ids, attention_mask, **kwargs)

    _mixin_forward_optional_mask._optional_mask = True
    FlamingoLMMixin.forward = _mixin_forward_optional_mask

LM_DIR = WORK / "lm"
VISION_PT = WORK / "vision.pt"
CHECKPOINT = WORK / "checkpoint.pt"


class _CLIPVisualHolder(nn.Module):
    """Stands in for open_clip's CLIP model: Flamingo keeps `vision_encoder.visual`."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual


def load_tokenizer(lm_dir: Path = LM_DIR):
    tok = AutoTokenizer.from_pretrained(str(lm_dir))
    # factory.py's additions: no-ops here (the LM directory already has the tokens)
    n = len(tok)
    tok.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    assert len(tok) == n, "the LM tokenizer should already contain OpenFlamingo's tokens"
    return tok


def assemble(lm, tok, visual):
    """factory.py create_model_and_transforms from here on, with the miniature's geometry."""
    vision_encoder = _CLIPVisualHolder(visual)
    vision_encoder.visual.output_tokens = True
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("model.layers")
    if lm.get_input_embeddings().weight.shape[0] != len(tok):
        lm.resize_token_embeddings(len(tok))
    model = Flamingo(vision_encoder, lm, tok.encode("<|endofchunk|>")[-1], tok.encode("<image>")[-1],
                     vis_dim=VISION["width"], cross_attn_every_n_layers=CROSS_ATTN_EVERY_N_LAYERS)
    # the miniature's geometry (same classes)
    model.perceiver = PerceiverResampler(dim=VISION["width"], depth=RESAMPLER["depth"], dim_head=RESAMPLER["dim_head"],
                                         heads=RESAMPLER["heads"], num_latents=RESAMPLER["num_latents"],
                                         ff_mult=RESAMPLER["ff_mult"])
    model.perceiver._use_gradient_checkpointing = False
    lm.gated_cross_attn_layers = nn.ModuleList([
        None if blk is None else GatedCrossAttentionBlock(dim=LM_HIDDEN(lm), dim_visual=VISION["width"],
                                                          dim_head=XATTN["dim_head"], heads=XATTN["heads"],
                                                          ff_mult=XATTN["ff_mult"])
        for blk in lm.gated_cross_attn_layers])
    lm.init_flamingo_layers(False)
    # --- factory.py freezing ---
    model.requires_grad_(False)
    model.perceiver.requires_grad_(True)
    model.lang_encoder.gated_cross_attn_layers.requires_grad_(True)
    model.lang_encoder.get_input_embeddings().requires_grad_(True)
    return model


def build(lm_dir: Path = LM_DIR, vision_pt: Path = VISION_PT, attn_implementation: str = "eager"):
    from pretrain_vision import make_visual

    tok = load_tokenizer(lm_dir)
    lm = LlamaForCausalLM.from_pretrained(str(lm_dir), attn_implementation=attn_implementation,
                                          dtype=torch.float32)
    visual = make_visual()
    sd = torch.load(vision_pt, map_location="cpu", weights_only=True)
    visual.load_state_dict({k[len("visual."):]: v for k, v in sd.items()})
    return assemble(lm, tok, visual), tok


def from_model_dir(path: Path, attn_implementation: str = "eager"):
    """The same PyTorch Flamingo, with every weight read from a converted model directory
    (config.json + model.safetensors + tokenizer.json; docs/model-format.md).  For an F32
    directory the weights are bit-identical to the training outputs."""
    import json

    from safetensors.torch import load_file
    from transformers import LlamaConfig, PreTrainedTokenizerFast

    from pretrain_vision import make_visual

    path = Path(path)
    cfg = json.loads((path / "config.json").read_text())
    L = cfg["language_model"]
    assert L["family"] == "llama" and cfg["vision"]["image_size"] == VISION["image_size"]
    assert cfg["resampler"]["num_latents"] == RESAMPLER["num_latents"] and cfg["cross_attention"]["heads"] == XATTN["heads"]
    toks = cfg["tokens"]
    tok = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"), eos_token="<|endoftext|>",
                                  bos_token="<|endoftext|>", unk_token="<|endoftext|>", pad_token="<PAD>",
                                  additional_special_tokens=["<|endofchunk|>", "<image>"])
    assert tok.convert_tokens_to_ids("<image>") == toks["image"] and tok.pad_token_id == toks["pad"]
    lcfg = LlamaConfig(vocab_size=L["vocab_size"], hidden_size=L["hidden_size"], intermediate_size=L["intermediate_size"],
                       num_hidden_layers=L["layers"], num_attention_heads=L["heads"], num_key_value_heads=L["kv_heads"],
                       hidden_act="silu", max_position_embeddings=L["max_seq_len"], rms_norm_eps=L["norm_eps"],
                       rope_theta=float(L["rope_theta"]), tie_word_embeddings=L["tie_word_embeddings"],
                       attention_bias=False, mlp_bias=False, bos_token_id=toks["eos"], eos_token_id=toks["eos"],
                       pad_token_id=toks["pad"])
    lcfg._attn_implementation = attn_implementation
    lm = LlamaForCausalLM(lcfg)
    lm.generation_config.pad_token_id = toks["pad"]
    lm.generation_config.eos_token_id = toks["eos"]
    lm.generation_config.bos_token_id = toks["eos"]
    model = assemble(lm, tok, make_visual())
    st = {}
    for f in cfg.get("weights") or sorted(p.name for p in path.glob("*.safetensors")):
        st.update(load_file(str(path / f)))
    want = {}
    for k in model.state_dict():
        if k.startswith(("lang_encoder.old_decoder_blocks.", "lang_encoder.gated_cross_attn_layers.")):
            continue
        want[k] = k.replace(".decoder_layer.", ".")
    missing = [k for k, n in want.items() if n not in st and not k.endswith("vision_encoder.proj")]
    assert not missing, missing[:10]
    used = set(want.values())
    extra = [n for n in st if n not in used]
    assert not extra, extra[:10]
    sd = {k: st[n].to(torch.float32) for k, n in want.items() if n in st}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("proj") or ".old_decoder_blocks." in k or ".gated_cross_attn_layers." in k
                                  for k in missing), (missing, unexpected)
    model.eval()
    model.requires_grad_(False)
    return model, tok


def LM_HIDDEN(lm):
    return lm.config.hidden_size


def filter_state_dict_to_trainable(model, state_dict):
    """open_flamingo/train/train_utils.py filter_state_dict_to_trainable (copied: that module
    imports wandb): trainable parameters + every embedding, without the duplicate
    old_decoder_blocks / gated_cross_attn_layers registrations and the vision encoder."""
    for name, p in model.named_parameters():
        if "fsdp" in name:
            continue
        if "embed" in name or isinstance(p, torch.nn.Embedding):
            continue
        if not p.requires_grad:
            name = name.replace("._checkpoint_wrapped_module", "")
            if name in state_dict:
                del state_dict[name]
    to_delete = [n for n in state_dict if ("lang_encoder.old_decoder_blocks" in n)
                 or ("lang_encoder.gated_cross_attn_layers" in n) or ("vision_encoder" in n)]
    for name in to_delete:
        del state_dict[name]
    return state_dict


def load_trained(checkpoint: Path = CHECKPOINT, lm_dir: Path = LM_DIR, vision_pt: Path = VISION_PT,
                 attn_implementation: str = "eager"):
    """The trained model as OpenFlamingo's EvalModel builds it: create the model, then
    load_state_dict(checkpoint, strict=False)."""
    model, tok = build(lm_dir, vision_pt, attn_implementation)
    ck = torch.load(checkpoint, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(ck, strict=False)
    assert not unexpected, unexpected
    model.eval()
    model.requires_grad_(False)
    return model, tok
