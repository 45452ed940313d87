"""The Flamingo-paper configuration as a tiny loadable model, with its reference outputs.

    /work/refenv/bin/python tools/reference/make_paper_fixture.py

NFNet encoder (timm's NormFreeNet, dm_nfnet recipe shrunk) -> open_flamingo's PerceiverResampler built
with max_num_media / max_num_frames (learned frame and media-time embeddings) -> open_flamingo's gated
cross-attention in a tiny MPT (transformers), random weights, fixed seed. The prompt has two images and
one 8-frame video. Writes Tests/Fixtures/flamingo_paper_tiny/: config.json (docs/model-format.md, vision
kind "nfnet"), model.safetensors, tokenizer.json, reference.safetensors:

    input.pixels      [10, 3, 64, 64]  frames in media order: image 0, image 1, the video's 8 frames
    input.input_ids   [L]              the tokenized prompt (reference.json "prompt")
    resampler.out     [3, latents, dim] visual tokens of each media item
    logits            [L, vocab]       Flamingo forward over the prompt
    greedy.ids        [8]              greedy continuation (full recomputation per step: generated
                                       tokens attend to the last media item, the video)

It also writes the converter's input for the same configuration, Tests/Fixtures/conversion/paper_nfnet/:
a timm NFNet state dict with its classifier (nfnet_timm.safetensors), the NFNet's vision object
(nfnet_arch.json), an MPT language model directory in llm-foundry's format (lm/, from
make_conversion_fixtures.py), the open_flamingo checkpoint.pt of the trained parts (perceiver with
frame/media-time embeddings, gated cross-attention, embeddings), reference.safetensors (input.pixels,
input.input_ids, logits of the video prompt) and expected.json (the converter flags).

Open_flamingo's Flamingo only takes single-frame media in one tensor (F == 1 is asserted), so the
media are encoded as its _encode_vision_x does, item by item: the vision encoder per frame, then the
real PerceiverResampler on [1, t + 1, F, v, d] with zeros before item t (items are independent apart
from the media-time embedding index), and the language model is conditioned with
condition_vis_x / _condition_media_locations exactly as Flamingo.forward does.
"""
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_fixtures as mf  # noqa: E402  (sets the deterministic environment first)

import torch  # noqa: E402
from einops import rearrange  # noqa: E402
from open_flamingo.src.flamingo import Flamingo  # noqa: E402
from open_flamingo.src.flamingo_lm import FlamingoLMMixin  # noqa: E402
from open_flamingo.src.helpers import PerceiverResampler  # noqa: E402
from open_flamingo.src.utils import extend_instance  # noqa: E402
from timm.models.nfnet import NormFreeNet, _dm_nfnet_cfg  # noqa: E402
from torch import nn  # noqa: E402

NAME = "flamingo_paper_tiny"
IMAGE = 64                       # NFNet total stride 32 -> 2x2 tokens per frame
FEATURES = 64                    # final 1x1 conv width = the resampler's dim
RESAMPLER = dict(depth=2, heads=2, dim_head=16, num_latents=8, ff_mult=4, max_num_media=4, max_num_frames=8)
FRAMES = [1, 1, 8]               # two images, one 8-frame video
PROMPT = "<image>a red ball<|endofchunk|><image>two cats<|endofchunk|><image>a video of"
STEPS = 8


class NFNetTokens(nn.Module):
    """open_clip's visual interface for Flamingo._encode_vision_x: (pooled, tokens [B, HW, C])."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return None, rearrange(self.net.forward_features(x), "b c h w -> b (h w) c")


def nfnet():
    cfg = dataclasses.replace(_dm_nfnet_cfg(depths=(1, 2, 1, 1), channels=(32, 64, 96, 128)),
                              stem_chs=16, group_size=8, num_features=FEATURES)
    return NormFreeNet(cfg, num_classes=0).eval(), cfg


def build(lm, tok, layers_attr, every_n):
    net, cfg = nfnet()
    holder = mf._CLIPVisualHolder(NFNetTokens(net))
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name(layers_attr)
    lm.resize_token_embeddings(len(tok))
    model = Flamingo(holder, lm, tok.encode("<|endofchunk|>")[-1], tok.encode("<image>")[-1],
                     vis_dim=FEATURES, cross_attn_every_n_layers=every_n)
    model.perceiver = PerceiverResampler(dim=FEATURES, **RESAMPLER)
    model.requires_grad_(False)
    return model.eval(), net, cfg


@torch.no_grad()
def encode(model, frames_per_item, pixels):
    """Visual tokens [1, T, latents, d], item by item (see the module docstring)."""
    out, at = [], 0
    for t, f in enumerate(frames_per_item):
        feats = model.vision_encoder(pixels[at:at + f])[1]          # [F, v, d]
        at += f
        x = torch.zeros(1, t + 1, f, *feats.shape[1:])
        x[0, t] = feats
        out.append(model.perceiver(x)[0, t])
    return torch.stack(out)[None]


@torch.no_grad()
def lm_logits(model, vis, ids):
    for layer in model.lang_encoder._get_decoder_layers():
        layer.condition_vis_x(vis)
    model._condition_media_locations(input_ids=ids)
    logits = model.lang_encoder(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    model.lang_encoder.clear_conditioned_layers()
    return logits[0]


def make_conversion_case():
    import make_conversion_fixtures as mcf

    d = mcf.OUT / "paper_nfnet"
    if d.exists():
        import shutil
        shutil.rmtree(d)
    lm_dir = d / "lm"
    lm_dir.mkdir(parents=True)
    g = mf.seed_all(6006)
    mcf.write_bytelevel_files(mcf.train_bytelevel(), lm_dir)
    tok, _ = mcf.reference_tokenizer(lm_dir)
    lm, info = mcf.lm_mpt7b(lm_dir, g)
    model, net, cfg = build(lm, tok, info["layers_attr"], every_n=2)
    with torch.no_grad():
        mf.reinit_(net, g)
        for n, p in net.named_parameters():
            if n.endswith("skipinit_gain"):
                p.copy_(torch.tensor(0.5) + mf.randn(g, std=0.2))
    mcf.set_trainable_like_factory(model, freeze_lm_embeddings=False)
    mcf.randomise_trained_parts(model, g, trainable_embeddings=True)
    model.eval()
    mcf.torch_save(mcf.filter_state_dict_to_trainable(model, model.state_dict()), d / "checkpoint.pt")
    # timm's own state dict, classifier included (NormFreeNet(cfg, num_classes=4): head.fc)
    full = NormFreeNet(cfg, num_classes=4).eval()
    missing, _ = full.load_state_dict(net.state_dict(), strict=False)
    assert sorted(missing) == ["head.fc.bias", "head.fc.weight"], missing
    mf.save_st(d / "nfnet_timm.safetensors", {k: mf.f32(v) for k, v in full.state_dict().items()})
    arch = {"kind": "nfnet", "depths": list(cfg.depths), "channels": list(cfg.channels), "stem_channels": cfg.stem_chs,
            "group_size": cfg.group_size, "final_conv_channels": FEATURES, "image_size": IMAGE}
    mf.write_json(d / "nfnet_arch.json", arch)

    pixels = mf.normalised_pixels(g, sum(FRAMES), 3, IMAGE, IMAGE, mean=mf.IMAGENET_MEAN, std=mf.IMAGENET_STD)
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    logits = lm_logits(model, encode(model, FRAMES, pixels), ids)
    mf.save_st(d / "reference.safetensors", {"input.pixels": mf.f32(pixels), "input.input_ids": mf.i64(ids[0]),
                                             "logits": mf.f32(logits)})
    r = ",".join(f"{k}={RESAMPLER[k]}" for k in ("depth", "heads", "dim_head", "num_latents", "ff_mult"))
    mf.write_json(d / "expected.json", {
        "release": "a Flamingo-paper configuration (NFNet + video resampler), tiny",
        "flags": {"vision": "paper_nfnet/nfnet_timm.safetensors", "vision_arch": "paper_nfnet/nfnet_arch.json",
                  "lm": "paper_nfnet/lm", "checkpoint": "paper_nfnet/checkpoint.pt", "cross_attn_every_n_layers": 2,
                  "resampler_geometry": r, "xattn_geometry": ""},
        "prompt": PROMPT, "frames_per_media": FRAMES,
        "resampler": {"max_num_media": RESAMPLER["max_num_media"], "max_num_frames": RESAMPLER["max_num_frames"]},
        "tolerance": "max|logits - reference| / max|reference| <= 1e-4"})
    print(f"built conversion/paper_nfnet: {sum(p.stat().st_size for p in d.rglob('*') if p.is_file())} bytes")


def main():
    make_conversion_case()
    d = mf.OUT / NAME
    if d.exists():
        import shutil
        shutil.rmtree(d)
    d.mkdir(parents=True)
    g = mf.seed_all(5005)
    tok, base_vocab = mf.build_bytelevel_tokenizer()
    lm, info = mf.make_lm("mpt", base_vocab, tok)
    hf_names = list(lm.state_dict().keys())
    model, net, cfg = build(lm, tok, info["layers_attr"], every_n=2)
    mf.reinit_(model, g, embed_std=0.3)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n.endswith("skipinit_gain"):  # timm inits them to 0, which would hide the residual branch
                p.copy_(torch.tensor(0.5) + mf.randn(g, std=0.2))
    mf.set_gates_(model.lang_encoder)
    model.eval()

    weights = {}
    for k, v in net.state_dict().items():
        weights["vision_encoder." + k] = v
    rest = mf.export_weights(model, hf_names, info["layers_attr"], info["tied"], info["head_rename"])
    weights.update({k: v for k, v in rest.items() if not k.startswith("vision_encoder.")})
    mf.save_st(d / "model.safetensors", {k: mf.f32(v) for k, v in weights.items()})
    tok.backend_tokenizer.save(str(d / "tokenizer.json"), pretty=True)

    lk = dict(info["lm_keys"])
    lm_cfg = {"family": "mpt", "vocab_size": len(tok)}
    lm_cfg.update(lk)
    config = {
        "format": "flamingo",
        "format_version": 1,
        "architecture": "openflamingo",
        "weights": ["model.safetensors"],
        "tokenizer": "tokenizer.json",
        "vision": {
            "kind": "nfnet", "depths": list(cfg.depths), "channels": list(cfg.channels),
            "stem_channels": cfg.stem_chs, "group_size": cfg.group_size, "final_conv_channels": FEATURES,
            "features": "final", "image_size": IMAGE,
        },
        "resampler": dict(dim=FEATURES, **RESAMPLER),
        "cross_attention": {"every_n_layers": 2, **mf.XATTN, "media_semantics": "current"},
        "language_model": lm_cfg,
        "tokens": {"image": model.media_token_id, "endofchunk": model.eoc_token_id, "pad": tok.pad_token_id,
                   "bos": None, "eos": tok.eos_token_id},
        "preprocess": {"image_size": IMAGE, "resize": "bicubic", "crop": "center",
                       "mean": mf.IMAGENET_MEAN, "std": mf.IMAGENET_STD},
    }
    mf.write_json(d / "config.json", config)

    pixels = mf.normalised_pixels(g, sum(FRAMES), 3, IMAGE, IMAGE, mean=mf.IMAGENET_MEAN, std=mf.IMAGENET_STD)
    ids = tok(PROMPT, return_tensors="pt")["input_ids"]
    vis = encode(model, FRAMES, pixels)
    logits = lm_logits(model, vis, ids)
    seq = ids
    for _ in range(STEPS):  # greedy by full recomputation (no cache, no early stop)
        nxt = lm_logits(model, vis, seq)[-1].argmax()
        seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    greedy = seq[0, ids.shape[1]:]
    # the video's frames matter: shuffling them changes its tokens (frame embeddings)
    shuffled = encode(model, FRAMES, torch.cat([pixels[:2], pixels[2:].flip(0)]))
    assert mf.max_abs(shuffled[0, 2], vis[0, 2]) > 1e-3
    mf.save_st(d / "reference.safetensors", {
        "input.pixels": mf.f32(pixels), "input.input_ids": mf.i64(ids[0]),
        "resampler.out": mf.f32(vis[0]), "logits": mf.f32(logits), "greedy.ids": mf.i64(greedy)})
    mf.write_json(d / "reference.json", {
        "prompt": PROMPT, "frames_per_media": FRAMES, "greedy_steps": STEPS,
        "tolerances": {"resampler.out": 1e-4, "logits": 1e-4, "note": "max|d|/max|ref|, fp32 vs fp32"},
        "timm_version": mf.timm.__version__})
    total = sum(p.stat().st_size for p in d.iterdir())
    print(f"built {NAME}: {total} bytes; greedy {greedy.tolist()}")
    json.dumps(config)


if __name__ == "__main__":
    main()
