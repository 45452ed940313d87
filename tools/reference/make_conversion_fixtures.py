#!/usr/bin/env python3
"""Conversion fixtures: tiny OpenFlamingo releases in their ORIGINAL file formats.

Run from the repository root:

    /work/refenv/bin/python tools/reference/make_conversion_fixtures.py

It deletes and regenerates Tests/Fixtures/conversion/ (< 2.5 MB):

  vision/openai_tiny.pt        a TorchScript archive laid out like OpenAI's ViT-L-14.pt (torch.jit.trace of a
                               tiny open_clip CLIP, conv/linear/attention weights stored in fp16 as OpenAI's are)
  vision/open_clip_tiny.bin    the same CLIP as an open_clip state dict (torch.save, fp32, keys visual.* + text tower)
  vision/tiny_clip_arch.json   its open_clip model config (--vision-arch)
  of3b_mpt1b/    OpenFlamingo-3B-vitl-mpt1b:  MosaicGPT (mosaicml/examples v0.0.4), lm/pytorch_model.bin (fp32),
                 checkpoint.pt with a DDP `module.` prefix, every_n 1, vision = TorchScript archive
  of4b_rpj3b/    OpenFlamingo-4B-vitl-rpj3b:  GPTNeoXForCausalLM, lm/model.safetensors via save_pretrained (fp16),
                 frozen embeddings (still saved: "embed" in their names), old-style attention buffers in
                 checkpoint.pt, every_n 2, vision = open_clip state dict
  of9b_mpt7b/    OpenFlamingo-9B-vitl-mpt7b:  MptForCausalLM with an llm-foundry-style config.json, lm/ sharded
                 pytorch_model-0000{1,2}-of-00002.bin + index (bf16, no lm_head, as mosaicml/mpt-7b), every_n 4
  of9b_v1_llama/ OpenFlamingo-9B-deprecated (v1): LlamaForCausalLM, lm/ sharded safetensors via save_pretrained
                 (fp16), ONLY a SentencePiece tokenizer.model (as 2023 LLaMA conversions), checkpoint.pt with both
                 spellings of every cross-attention tensor and rotary inv_freq buffers (v1 get_checkpoint),
                 every_n 4, vision = TorchScript archive
  tokenizer_cases.json         OpenFlamingo's token additions on pad-token variants, as transformers does them

Each release directory also holds reference.safetensors (input.pixels, input.input_ids, logits: fp32 PyTorch
logits of a fixed prompt with two images through the real open_flamingo Flamingo.forward) and expected.json
(conversion flags, the vocabulary size and token ids transformers gives, and what was emulated).

Everything is built with the REAL classes (open_clip 2.20 CLIP/VisionTransformer, open_flamingo 2.0.1 Flamingo,
PerceiverResampler, GatedCrossAttentionBlock, FlamingoLMMixin, transformers causal LMs, MosaicGPT from
mosaicml/examples v0.0.4) and seeded random weights, following open_flamingo's factory.py (tokens added,
resize_token_embeddings(len(tokenizer)), requires_grad flags) and train_utils.filter_state_dict_to_trainable
(copied below: importing open_flamingo.train needs wandb).  The geometry is shrunk: the Perceiver Resampler and
the gated cross-attention blocks are the same classes rebuilt with small sizes (RESAMPLER, XATTN below), which
the converter is told with --resampler-geometry / --xattn-geometry (released models use the defaults).

As a cross-check the script runs the converter (bindings/python/flamingo/convert) on every fixture and asserts
that (a) every converted tensor equals the PyTorch model's tensor under the model-format name
(make_fixtures.export_weights), (b) the tokenizer.json it writes has exactly the added tokens, ids and length
that transformers gives after factory.py's additions and encodes the prompt to the same ids.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import make_fixtures as mf  # noqa: E402  (sets determinism flags, imports torch/open_clip/open_flamingo)

import collections  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import hashlib  # noqa: E402
import importlib.metadata  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg, convert_weights_to_lp  # noqa: E402
from open_clip.transformer import QuickGELU, VisionTransformer  # noqa: E402
from open_flamingo.src.flamingo import Flamingo  # noqa: E402
from open_flamingo.src.flamingo_lm import FlamingoLMMixin  # noqa: E402
from open_flamingo.src.helpers import GatedCrossAttentionBlock, PerceiverResampler  # noqa: E402
from open_flamingo.src.utils import extend_instance  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from torch import nn  # noqa: E402
from transformers import (  # noqa: E402
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MptConfig,
    MptForCausalLM,
    PreTrainedTokenizerFast,
)

REPO = HERE.parents[1]
OUT = REPO / "Tests" / "Fixtures" / "conversion"
sys.path.insert(0, str(REPO / "bindings" / "python"))
from flamingo.convert import openflamingo as fconv  # noqa: E402
from flamingo.convert import safetensors_io as fst  # noqa: E402
from flamingo.convert import tokenizer as ftok  # noqa: E402

SIZE_LIMIT = int(2.5 * 1024 * 1024)

VISION_CFG = dict(image_size=32, layers=2, width=32, head_width=8, patch_size=8)  # 4 heads, mlp 128
TEXT_CFG = dict(context_length=8, vocab_size=64, width=16, heads=2, layers=1)
EMBED_DIM = 16
RESAMPLER = dict(depth=2, heads=2, dim_head=16, num_latents=8, ff_mult=2)
XATTN = dict(heads=2, dim_head=16, ff_mult=2)
NUM_IMAGES = 2
BYTELEVEL_VOCAB = 400   # trained BPE size (GPT-NeoX-20B style tokenizer)
HF_VOCAB_PADDED = 416   # LM embedding rows in the HF files (> V: resize truncates, as 50432 -> 50280)
SP_VOCAB = 400          # SentencePiece pieces (LLaMA style; the LM has exactly these rows, V grows by 3)

PROMPT = "<image>A red square.<|endofchunk|><image>A blue"
LLAMA_PROMPT = "<image>Question: What color is the square? Short answer: red<|endofchunk|><image>Question: What is in the café? Short answer:"

GPT_NEOX_SPECIAL = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
LLAMA_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def write_json(path: Path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def filter_state_dict_to_trainable(model, state_dict):
    """open_flamingo 2.0.1 open_flamingo/train/train_utils.py, verbatim logic (that module imports wandb)."""
    for name, p in model.named_parameters():  # won't work for fsdp + use_orig_params=False
        if "fsdp" in name:
            continue
        if "embed" in name or isinstance(p, torch.nn.Embedding):
            continue
        if not p.requires_grad:
            name = name.replace("._checkpoint_wrapped_module", "")
            if name in state_dict:
                del state_dict[name]
            else:
                print(f"WARNING: filtering but {name} not in state_dict")
    to_delete = [
        n for n in state_dict.keys()
        if ("lang_encoder.old_decoder_blocks" in n) or ("lang_encoder.gated_cross_attn_layers" in n) or ("vision_encoder" in n)
    ]
    for name in to_delete:
        del state_dict[name]
    return state_dict


def set_trainable_like_factory(model, freeze_lm_embeddings: bool):
    """open_flamingo/src/factory.py create_model_and_transforms, after building the model."""
    model.requires_grad_(False)
    model.perceiver.requires_grad_(True)
    model.lang_encoder.gated_cross_attn_layers.requires_grad_(True)
    if not freeze_lm_embeddings:
        model.lang_encoder.get_input_embeddings().requires_grad_(True)


def torch_save(obj, path: Path):
    torch.save(obj, str(path))
    os.chmod(path, 0o644)


# ---------------------------------------------------------------------------------------------
# the tiny CLIP (vision inputs)
# ---------------------------------------------------------------------------------------------


def make_tiny_clip():
    g = mf.seed_all(7007)
    model = CLIP(embed_dim=EMBED_DIM, vision_cfg=CLIPVisionCfg(**VISION_CFG), text_cfg=CLIPTextCfg(**TEXT_CFG),
                 quick_gelu=True).eval()
    mf.reinit_(model, g)
    # OpenAI's archive holds conv/linear/attention projection weights in fp16 ("OpenAI state dicts are
    # partially converted to float16", open_clip model.py); open_clip upcasts them with .float().
    # open_clip's convert_weights_to_lp is exactly that conversion: apply it, remember which tensors it
    # touched, and go back to fp32 holding the fp16-rounded values.
    before = {k: v.dtype for k, v in model.state_dict().items()}
    convert_weights_to_lp(model, torch.float16)
    lp = sorted(k for k, v in model.state_dict().items() if v.dtype == torch.float16 and before[k] == torch.float32)
    model.float()
    return model, lp


def save_openai_style_torchscript(model, lp_names, path: Path):
    """torch.jit.trace(model, (image, text)) like OpenAI's released archives, with the fp16 tensors of
    OpenAI's archives stored as fp16. Checked: torch.jit.load(path).state_dict() has the same visual.*
    names, values and dtypes, and the fields open_clip's build_model_from_openai_state_dict derives."""
    image = torch.zeros(1, 3, VISION_CFG["image_size"], VISION_CFG["image_size"])
    text = torch.zeros(1, TEXT_CFG["context_length"], dtype=torch.long)
    with warnings_off():
        traced = torch.jit.trace(model, (image, text), check_trace=False)
    params = dict(traced.named_parameters())
    for name in lp_names:
        params[name].data = params[name].data.half()
    traced.save(str(path))
    os.chmod(path, 0o644)
    with warnings_off():
        sd = torch.jit.load(str(path), map_location="cpu").state_dict()
    ref = model.state_dict()
    vis = sorted(k for k in ref if k.startswith("visual."))
    assert sorted(k for k in sd if k.startswith("visual.")) == vis, "TorchScript archive visual.* names differ"
    for k in vis:
        want = torch.float16 if k in lp_names else torch.float32
        assert sd[k].dtype == want, (k, sd[k].dtype)
        assert torch.equal(sd[k].float(), ref[k]), k
    # what open_clip.model.build_model_from_openai_state_dict reads from the state dict (ViT branch)
    assert "visual.proj" in sd
    width = sd["visual.conv1.weight"].shape[0]
    layers = len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")])
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    assert (width, layers, patch, patch * grid) == (VISION_CFG["width"], VISION_CFG["layers"], VISION_CFG["patch_size"],
                                                  VISION_CFG["image_size"])
    for k in ("text_projection", "token_embedding.weight", "ln_final.weight", "positional_embedding"):
        assert k in sd, k
    return vis


@contextlib.contextmanager
def warnings_off():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---------------------------------------------------------------------------------------------
# tokenizers (the LM directories' files, 2023 style)
# ---------------------------------------------------------------------------------------------


def train_bytelevel() -> Tokenizer:
    """GPT-NeoX-20B style (make_fixtures.build_bytelevel_tokenizer without the additions)."""
    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=BYTELEVEL_VOCAB, special_tokens=["<|endoftext|>", "<|padding|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator([mf.TOKENIZER_TEXT], trainer)
    return tk


def write_bytelevel_files(tk: Tokenizer, d: Path):
    tk.save(str(d / "tokenizer.json"), pretty=True)
    write_json(d / "tokenizer_config.json", dict(GPT_NEOX_SPECIAL, add_prefix_space=False, model_max_length=2048,
                                                 tokenizer_class="GPTNeoXTokenizer"))
    write_json(d / "special_tokens_map.json", GPT_NEOX_SPECIAL)


def train_sentencepiece() -> bytes:
    """A LLaMA-style SentencePiece BPE model: byte fallback, digits split, identity normaliser, dummy prefix,
    <unk>=0 <s>=1 </s>=2, no pad."""
    buf = io.BytesIO()
    lines = [line for line in mf.TOKENIZER_TEXT.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=buf, model_type="bpe", vocab_size=SP_VOCAB, byte_fallback=True,
        split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0, allow_whitespace_only_pieces=True,
        minloglevel=2, num_threads=1,
    )
    return buf.getvalue()


def check_sentencepiece_conversion(model_path: Path, tokenizer_json: Path):
    """The converted tokenizer (legacy LLaMA fast layout) encodes like SentencePiece itself on every corpus line
    and on words with characters outside the training text (byte fallback)."""
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    tk = Tokenizer.from_file(str(tokenizer_json))
    texts = [line for line in mf.TOKENIZER_TEXT.splitlines() if line.strip()]
    texts += ["café crème", "naïve 12345 ×", "What is in the café?", "Short answer: red", "a\tb", "日本語"]
    for t in texts:
        want = sp.encode(t)
        got = tk.encode(t, add_special_tokens=False).ids
        assert got == want, (t, got, want)
    assert tk.get_vocab_size(with_added_tokens=True) == sp.get_piece_size()


def reference_tokenizer(lm_dir: Path, tokenizer_json: Path = None):
    """The tokenizer as open_flamingo's factory.py saw it in 2023: a fast tokenizer whose special tokens come
    from the directory's files only. (transformers 5's GPTNeoXTokenizer class now defaults pad_token to
    <|padding|>; the 2023 GPTNeoXTokenizerFast had no pad default - the released checkpoints' 50280
    embedding rows = 50277 + 3 show <PAD> was added.)  Returns the tokenizer after factory.py's additions."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        shutil.copy(tokenizer_json or lm_dir / "tokenizer.json", t / "tokenizer.json")
        cfg = json.loads((lm_dir / "tokenizer_config.json").read_text())
        cfg.pop("tokenizer_class", None)  # the generic fast class: no class-specific special-token defaults
        write_json(t / "tokenizer_config.json", cfg)
        shutil.copy(lm_dir / "special_tokens_map.json", t / "special_tokens_map.json")
        with warnings_off():
            tok = PreTrainedTokenizerFast.from_pretrained(str(t))
    base_len = len(tok)
    mf.add_openflamingo_special_tokens(tok)  # factory.py, verbatim
    return tok, base_len


# ---------------------------------------------------------------------------------------------
# OpenFlamingo model construction (factory.py without downloads)
# ---------------------------------------------------------------------------------------------


def build_model(lm, tokenizer, layers_attr, every_n, clip_model):
    visual = VisionTransformer(
        image_size=VISION_CFG["image_size"], patch_size=VISION_CFG["patch_size"], width=VISION_CFG["width"],
        layers=VISION_CFG["layers"], heads=VISION_CFG["width"] // VISION_CFG["head_width"], mlp_ratio=4.0,
        output_dim=EMBED_DIM, act_layer=QuickGELU, output_tokens=True,
    )
    visual.load_state_dict(clip_model.visual.state_dict())
    vision_encoder = mf._CLIPVisualHolder(visual)
    vision_encoder.visual.output_tokens = True
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name(layers_attr)
    lm.resize_token_embeddings(len(tokenizer))
    model = Flamingo(vision_encoder, lm, tokenizer.encode("<|endofchunk|>")[-1], tokenizer.encode("<image>")[-1],
                     vis_dim=VISION_CFG["width"], cross_attn_every_n_layers=every_n)
    # Flamingo.__init__ builds PerceiverResampler(dim) with the release geometry (6 x 8 x 64, 64 latents,
    # ff_mult 4) and init_flamingo GatedCrossAttentionBlock(dim, dim_visual) with 8 x 64, ff_mult 4: rebuild
    # the same classes with the tiny geometry (what --resampler-geometry / --xattn-geometry tell the converter).
    model.perceiver = PerceiverResampler(dim=VISION_CFG["width"], depth=RESAMPLER["depth"], dim_head=RESAMPLER["dim_head"],
                                         heads=RESAMPLER["heads"], num_latents=RESAMPLER["num_latents"],
                                         ff_mult=RESAMPLER["ff_mult"])
    model.perceiver._use_gradient_checkpointing = False
    lm_ = model.lang_encoder
    lm_.gated_cross_attn_layers = nn.ModuleList([
        None if blk is None else GatedCrossAttentionBlock(dim=blk.attn.to_q.in_features, dim_visual=VISION_CFG["width"],
                                                          dim_head=XATTN["dim_head"], heads=XATTN["heads"],
                                                          ff_mult=XATTN["ff_mult"])
        for blk in lm_.gated_cross_attn_layers
    ])
    lm_.init_flamingo_layers(False)
    return model.eval()


def randomise_trained_parts(model, g, trainable_embeddings: bool):
    """Random 'trained' perceiver, cross-attention blocks (non-zero gates) and, where the release trains them,
    input embeddings."""
    with torch.no_grad():
        mf.reinit_(model.perceiver, g)
        for blk in model.lang_encoder.gated_cross_attn_layers:
            if blk is not None:
                mf.reinit_(blk, g)
        mf.set_gates_(model.lang_encoder)
        if trainable_embeddings:
            emb = model.lang_encoder.get_input_embeddings().weight
            emb.copy_(mf.randn(g, *emb.shape))


# ---------------------------------------------------------------------------------------------
# the four language models, saved in their original formats
# ---------------------------------------------------------------------------------------------


def lm_mosaic(lm_dir: Path, g):
    mosaic = mf.load_mosaic_gpt()
    cfg = mosaic.MosaicGPTConfig(
        d_model=32, n_heads=4, n_layers=2, mlp_ratio=4, max_seq_len=128, vocab_size=HF_VOCAB_PADDED, attn_impl="torch",
        attn_qk_ln=True, attn_clip_qkv=None, softmax_scale=None, alibi=True, alibi_bias_max=8, no_bias=True,
        logit_scale=None, embedding_fraction=1.0, low_precision_layernorm=False, init_device="cpu", use_cache=True,
    )
    with contextlib.redirect_stdout(io.StringIO()):
        lm = mosaic.MosaicGPT(cfg)
    lm.eval()
    mf.reinit_(lm, g)
    cfg.architectures = ["MosaicGPT"]
    cfg.save_pretrained(str(lm_dir))
    # the anas-awadalla/mpt-1b-redpajama-200b repository ships pytorch_model.bin (a torch.save state dict)
    torch_save(collections.OrderedDict((k, v.detach().clone()) for k, v in lm.state_dict().items()),
               lm_dir / "pytorch_model.bin")
    extend_instance(lm, mf.MosaicEmbeddingFnMixin)  # factory.py's MPT-1B hack
    lm._fixture_family = "mosaic_gpt"  # make_fixtures.prompt_forward's MosaicGPT path
    return lm, dict(layers_attr="transformer.blocks", tied=True, head_rename={})


def lm_mpt7b(lm_dir: Path, g):
    cfg = MptConfig(
        d_model=32, n_heads=4, n_layers=4, expansion_ratio=4, max_seq_len=128, vocab_size=HF_VOCAB_PADDED,
        layer_norm_epsilon=1e-5, no_bias=True,
        attn_config=dict(alibi=True, alibi_bias_max=8, qk_ln=False, clip_qkv=None, softmax_scale=None),
        tie_word_embeddings=True, use_cache=True, eos_token_id=0,
    )
    cfg._attn_implementation = "eager"
    lm = MptForCausalLM(cfg).eval()
    mf.reinit_(lm, g)
    mf.round_params_(lm, torch.bfloat16)
    # mosaicml/mpt-7b's config.json (llm-foundry MPTConfig, May 2023), shrunk
    write_json(lm_dir / "config.json", {
        "architectures": ["MPTForCausalLM"],
        "attn_config": {"alibi": True, "alibi_bias_max": 8, "attn_impl": "torch", "attn_pdrop": 0,
                        "attn_type": "multihead_attention", "attn_uses_sequence_id": False, "clip_qkv": None,
                        "prefix_lm": False, "qk_ln": False, "softmax_scale": None},
        "auto_map": {"AutoConfig": "configuration_mpt.MPTConfig", "AutoModelForCausalLM": "modeling_mpt.MPTForCausalLM"},
        "d_model": 32, "emb_pdrop": 0, "embedding_fraction": 1.0, "expansion_ratio": 4,
        "init_config": {"emb_init_std": None, "emb_init_uniform_lim": None, "fan_mode": "fan_in", "init_div_is_residual": True,
                        "init_gain": 0, "init_nonlinearity": "relu", "init_std": 0.02, "name": "kaiming_normal_", "verbose": 0},
        "init_device": "cpu", "learned_pos_emb": True, "logit_scale": None, "max_seq_len": 128, "model_type": "mpt",
        "n_heads": 4, "n_layers": 4, "no_bias": True, "norm_type": "low_precision_layernorm", "resid_pdrop": 0,
        "tokenizer_name": "EleutherAI/gpt-neox-20b", "torch_dtype": "bfloat16", "transformers_version": "4.28.1",
        "use_cache": False, "verbose": 0, "vocab_size": HF_VOCAB_PADDED,
    })
    # two pytorch_model-0000k-of-00002.bin shards + index, bf16, without the tied lm_head (llm-foundry has none)
    sd = collections.OrderedDict((k, v.detach().to(torch.bfloat16).clone()) for k, v in lm.state_dict().items()
                                 if k != "lm_head.weight")
    keys = list(sd)
    half = len(keys) // 2
    weight_map = {}
    total = 0
    for i, part in enumerate((keys[:half], keys[half:])):
        fname = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch_save(collections.OrderedDict((k, sd[k]) for k in part), lm_dir / fname)
        for k in part:
            weight_map[k] = fname
            total += sd[k].numel() * 2
    write_json(lm_dir / "pytorch_model.bin.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})
    return lm, dict(layers_attr="transformer.blocks", tied=True, head_rename={})


def lm_neox(lm_dir: Path, g):
    cfg = GPTNeoXConfig(
        vocab_size=HF_VOCAB_PADDED, hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=64,
        hidden_act="gelu", max_position_embeddings=64, layer_norm_eps=1e-5, use_parallel_residual=False,
        rotary_pct=1.0, rotary_emb_base=10000, attention_bias=True, tie_word_embeddings=False, bos_token_id=0,
        eos_token_id=0, use_cache=True,
    )
    cfg._attn_implementation = "eager"
    lm = GPTNeoXForCausalLM(cfg).eval()
    mf.reinit_(lm, g)
    mf.round_params_(lm, torch.float16)
    # model.safetensors (fp16, as the RedPajama weights), config.json. A copy is converted: .half() then .float() on
    # the model itself would also round the rotary inv_freq buffer to fp16 (a real fp32 load recomputes it).
    copy.deepcopy(lm).half().save_pretrained(str(lm_dir))
    for p in lm_dir.glob("*"):
        os.chmod(p, 0o644)
    return lm, dict(layers_attr="gpt_neox.layers", tied=False, head_rename={"lm_head.weight": "embed_out.weight"})


def lm_llama(lm_dir: Path, g, vocab: int):
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=80, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, hidden_act="silu", max_position_embeddings=128, rms_norm_eps=1e-6, rope_theta=10000.0,
        tie_word_embeddings=False, attention_bias=False, mlp_bias=False, bos_token_id=1, eos_token_id=2, use_cache=True,
    )
    cfg._attn_implementation = "eager"
    lm = LlamaForCausalLM(cfg).eval()
    mf.reinit_(lm, g)
    mf.round_params_(lm, torch.float16)
    copy.deepcopy(lm).half().save_pretrained(str(lm_dir), max_shard_size="40KB")  # sharded safetensors + index
    for p in lm_dir.glob("*"):
        os.chmod(p, 0o644)
    return lm, dict(layers_attr="model.layers", tied=False, head_rename={})


# ---------------------------------------------------------------------------------------------
# one release
# ---------------------------------------------------------------------------------------------

RELEASES = [
    dict(name="of3b_mpt1b", release="OpenFlamingo-3B-vitl-mpt1b", family="mosaic_gpt", seed=11, every_n=1,
         vision="openai_tiny.pt", trainable_embeddings=True, module_prefix=True, prompt=PROMPT),
    dict(name="of4b_rpj3b", release="OpenFlamingo-4B-vitl-rpj3b", family="gpt_neox", seed=12, every_n=2,
         vision="open_clip_tiny.bin", trainable_embeddings=False, prompt=PROMPT),
    dict(name="of9b_mpt7b", release="OpenFlamingo-9B-vitl-mpt7b", family="mpt", seed=13, every_n=4,
         vision="open_clip_tiny.bin", trainable_embeddings=True, prompt=PROMPT),
    dict(name="of9b_v1_llama", release="OpenFlamingo-9B-deprecated", family="llama", seed=14, every_n=4,
         vision="openai_tiny.pt", trainable_embeddings=True, v1=True, prompt=LLAMA_PROMPT),
]


def converter_options(fx, d: Path, out: Path, tokenizer=None) -> fconv.Options:
    return fconv.Options(
        vision=OUT / "vision" / fx["vision"], vision_arch=str(OUT / "vision" / "tiny_clip_arch.json"), lm=d / "lm",
        checkpoint=d / "checkpoint.pt", cross_attn_every_n_layers=fx["every_n"], out=out, tokenizer=tokenizer,
        resampler=dict(RESAMPLER), xattn=dict(XATTN),
    )


def make_release(fx, clip_model):
    name = fx["name"]
    d = OUT / name
    lm_dir = d / "lm"
    lm_dir.mkdir(parents=True)
    g = mf.seed_all(fx["seed"])
    family = fx["family"]
    emulated = []

    # ---- tokenizer files + the reference tokenizer (factory.py's additions)
    if family == "llama":
        (lm_dir / "tokenizer.model").write_bytes(train_sentencepiece())
        write_json(lm_dir / "tokenizer_config.json", dict(LLAMA_SPECIAL, add_bos_token=True, add_eos_token=False,
                                                          model_max_length=2048, tokenizer_class="LlamaTokenizer"))
        write_json(lm_dir / "special_tokens_map.json", LLAMA_SPECIAL)
        # the fast conversion of tokenizer.model as transformers' LlamaConverter(legacy=True) did it in 2023
        # (the converter's own implementation; checked against sentencepiece below)
        converted_tok = Path(tempfile.mkdtemp()) / "tokenizer.json"
        converted_tok.write_text(json.dumps(ftok.convert_sentencepiece(lm_dir / "tokenizer.model",
                                                                       ftok.SpecialTokens(lm_dir, None))))
        check_sentencepiece_conversion(lm_dir / "tokenizer.model", converted_tok)
        tok, base_len = reference_tokenizer(lm_dir, converted_tok)
        vocab = spm.SentencePieceProcessor(model_file=str(lm_dir / "tokenizer.model")).get_piece_size()
        assert base_len == vocab, (base_len, vocab)
        emulated.append("lm/ holds only a SentencePiece tokenizer.model (+ tokenizer_config.json, special_tokens_map.json), "
                        "like 2023 LLaMA-7B conversions; the reference tokenizer is its fast conversion as transformers' "
                        "LlamaConverter(legacy=True) made it in 2023 (checked against sentencepiece on the corpus)")
    else:
        write_bytelevel_files(train_bytelevel(), lm_dir)
        tok, base_len = reference_tokenizer(lm_dir)
    V = len(tok)

    # ---- the HF language model, saved in its original format
    if family == "mosaic_gpt":
        lm, info = lm_mosaic(lm_dir, g)
    elif family == "mpt":
        lm, info = lm_mpt7b(lm_dir, g)
    elif family == "gpt_neox":
        lm, info = lm_neox(lm_dir, g)
    else:
        lm, info = lm_llama(lm_dir, g, vocab)
    hf_names = list(lm.state_dict().keys())
    hf_rows = lm.get_input_embeddings().weight.shape[0]

    # ---- OpenFlamingo model
    model = build_model(lm, tok, info["layers_attr"], fx["every_n"], clip_model)
    assert model.lang_encoder.get_input_embeddings().weight.shape[0] == V
    set_trainable_like_factory(model, freeze_lm_embeddings=not fx["trainable_embeddings"])
    randomise_trained_parts(model, g, fx["trainable_embeddings"])
    if family == "llama":
        # v1's lm_head rows of the 3 added tokens are initialised by HF at load time and are not in checkpoint.pt;
        # the converter writes zeros there (--new-rows zeros): give the reference the same rows.
        with torch.no_grad():
            model.lang_encoder.lm_head.weight[hf_rows:] = 0.0
        emulated.append(f"lm_head rows {hf_rows}..{V - 1} set to 0 in the reference (not in the release; the converter's default)")
    model.eval()

    # ---- checkpoint.pt
    ck = filter_state_dict_to_trainable(model, model.state_dict())
    if family == "gpt_neox":
        # transformers 4.x (2023) named GPT-NeoX's output head `embed_out`: its name contains "embed", so the
        # filter kept it (frozen) in the released 4B file. transformers 5 calls the module lm_head (removed by
        # the filter above): store it under the 2023 name.
        ck["lang_encoder.embed_out.weight"] = model.lang_encoder.lm_head.weight.detach().clone()
        # transformers 4.2x registered these GPT-NeoX attention buffers as persistent, so state_dict() - and the
        # filter, which only removes parameters - kept them (UNVERIFIED for the real file; converters must ignore them)
        P = lm.config.max_position_embeddings
        hd = 32 // 4
        for i in range(lm.config.num_hidden_layers):
            b = f"lang_encoder.gpt_neox.layers.{i}.decoder_layer.attention."
            ck[b + "bias"] = torch.tril(torch.ones((P, P), dtype=torch.bool)).view(1, 1, P, P)
            ck[b + "masked_bias"] = torch.tensor(-1e9)
            ck[b + "rotary_emb.inv_freq"] = 1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        emulated.append("checkpoint.pt: lang_encoder.embed_out.weight (transformers 4 name of the head) and the "
                        "transformers 4.2x persistent attention buffers (bias, masked_bias, rotary_emb.inv_freq)")
    if fx.get("v1"):
        # OpenFlamingo v1 train_utils.get_checkpoint deleted only frozen parameters by their named_parameters()
        # name: the duplicate registration lang_encoder.gated_cross_attn_layers.* stayed (issues #187, #209), and so
        # did buffers such as LLaMA's rotary inv_freq (persistent in transformers 4.28).
        for k in list(ck):
            m = re.match(r"lang_encoder\.model\.layers\.(\d+)\.gated_cross_attn_layer\.(.+)$", k)
            if m:
                ck[f"lang_encoder.gated_cross_attn_layers.{m.group(1)}.{m.group(2)}"] = ck[k].clone()
        hd = 32 // 4
        for i in range(lm.config.num_hidden_layers):
            ck[f"lang_encoder.model.layers.{i}.decoder_layer.self_attn.rotary_emb.inv_freq"] = \
                1.0 / (10000 ** (torch.arange(0, hd, 2).float() / hd))
        emulated.append("checkpoint.pt as OpenFlamingo v1's get_checkpoint wrote it: both spellings of every "
                        "cross-attention tensor and the rotary inv_freq buffers")
    if fx.get("module_prefix"):
        ck = collections.OrderedDict(("module." + k, v) for k, v in ck.items())
        emulated.append("checkpoint.pt keys carry the DDP `module.` prefix (issue #210, OF-3B)")
    ck = collections.OrderedDict((k, v.detach().clone().contiguous()) for k, v in ck.items())
    torch_save(ck, d / "checkpoint.pt")

    # ---- reference logits
    enc = tok(fx["prompt"], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert int((ids == model.media_token_id).sum()) == NUM_IMAGES
    H = VISION_CFG["image_size"]
    pixels = mf.normalised_pixels(g, 1, NUM_IMAGES, 1, 3, H, H)
    logits = mf.prompt_forward(model, pixels, ids, mask)
    model.double()
    try:
        logits64 = mf.prompt_forward(model, pixels.double(), ids, mask)
    finally:
        model.float()
    dev64 = mf.max_abs(logits, logits64)
    assert dev64 / float(logits.abs().max()) < 1e-5, dev64
    mf.save_st(d / "reference.safetensors", {"input.pixels": mf.f32(pixels), "input.input_ids": mf.i64(ids),
                                             "logits": mf.f32(logits)})

    # ---- what the conversion must give (transformers / the torch model as the authority)
    backend = json.loads(tok.backend_tokenizer.to_str())
    tokens = {"image": model.media_token_id, "endofchunk": model.eoc_token_id, "pad": tok.pad_token_id,
              "bos": tok.bos_token_id if family == "llama" else None, "eos": tok.eos_token_id}
    expected = {
        "release": fx["release"],
        "family": family,
        "flags": {"vision": f"vision/{fx['vision']}", "vision_arch": "vision/tiny_clip_arch.json", "lm": f"{name}/lm",
                  "checkpoint": f"{name}/checkpoint.pt", "cross_attn_every_n_layers": fx["every_n"],
                  "resampler_geometry": ",".join(f"{k}={v}" for k, v in RESAMPLER.items()),
                  "xattn_geometry": ",".join(f"{k}={v}" for k, v in XATTN.items())},
        "vocab_size": V,
        "base_tokenizer_length": base_len,
        "hf_embedding_rows": hf_rows,
        "tokens": tokens,
        "added_tokens": [t for t in backend["added_tokens"] if t["id"] >= base_len or t["content"] in
                         ("<|endofchunk|>", "<image>", "<PAD>")],
        "prompt": fx["prompt"],
        "input_ids": ids[0].tolist(),
        "xattn_layers": [i for i, layer in enumerate(model.lang_encoder._get_decoder_layers())
                         if layer.gated_cross_attn_layer is not None],
        "language_model": {k: v for k, v in info.items() if k in ("layers_attr", "tied")},
        "fp32_vs_fp64_max_abs_logit_diff": float(f"{dev64:.3e}"),
        "tolerance": "max|logits - reference| / max|reference| <= 1e-4",
        "emulated": emulated,
    }
    if family == "gpt_neox" or family in ("mpt", "mosaic_gpt"):
        from transformers import AutoTokenizer

        with warnings_off():
            t5 = AutoTokenizer.from_pretrained(str(lm_dir))
        expected["transformers5_autotokenizer_pad_token"] = t5.pad_token
        expected["transformers5_note"] = ("transformers 5's GPTNeoXTokenizer defaults pad_token to <|padding|> (2023's "
                                          "GPTNeoXTokenizerFast had no default), so AutoTokenizer there would give V = "
                                          f"{V - 1}; the releases were built with <PAD> added")
    if family == "llama":
        sp = spm.SentencePieceProcessor(model_file=str(lm_dir / "tokenizer.model"))
        expected["sentencepiece_slow_ids_of_the_text_pieces"] = {
            piece: sp.encode(piece) for piece in re.split(r"<image>|<\|endofchunk\|>", fx["prompt"]) if piece}
        # the legacy fast tokenization = SentencePiece on each text piece between the special tokens, BOS first
        pieces = re.split(r"(<image>|<\|endofchunk\|>)", fx["prompt"])
        want_ids = [tok.bos_token_id]
        for piece in pieces:
            if piece in ("<image>", "<|endofchunk|>"):
                want_ids.append(tok.convert_tokens_to_ids(piece))
            elif piece:
                want_ids += sp.encode(piece)
        assert want_ids == ids[0].tolist(), (want_ids, ids[0].tolist())
    write_json(d / "expected.json", expected)

    # ---- cross-check the converter against the torch model
    want = mf.export_weights(model, hf_names, info["layers_attr"], info["tied"], info["head_rename"])
    with tempfile.TemporaryDirectory() as tmp:
        res = fconv.convert(converter_options(fx, d, Path(tmp) / "out"))
        got, _ = fst.read(Path(tmp) / "out" / "model.safetensors")
        assert sorted(got) == sorted(want), (sorted(set(got) ^ set(want)))[:20]
        for k, t in got.items():
            a = torch.from_numpy(t.float32().copy())
            assert torch.equal(a, want[k].detach().float()), f"{name}: converted {k} differs from the torch model"
        cfg = res.config
        assert cfg["language_model"]["vocab_size"] == V and cfg["tokens"] == tokens, (cfg["tokens"], tokens)
        assert cfg["cross_attention"]["every_n_layers"] == fx["every_n"]
        out_tok = json.loads((Path(tmp) / "out" / "tokenizer.json").read_text())
        assert out_tok["added_tokens"] == backend["added_tokens"], (out_tok["added_tokens"], backend["added_tokens"])
        assert Tokenizer.from_str(json.dumps(out_tok)).encode(fx["prompt"]).ids == ids[0].tolist()
        assert Tokenizer.from_str(json.dumps(out_tok)).get_vocab_size(with_added_tokens=True) == V
        expected["converter_notes"] = res.notes
    write_json(d / "expected.json", expected)
    print(f"built {name}: V {V}, {len(ck)} checkpoint tensors, logits {list(logits.shape)}", flush=True)
    return V


# ---------------------------------------------------------------------------------------------
# tokenizer variants (pad token present or not, added tokens already in the vocabulary)
# ---------------------------------------------------------------------------------------------


def tokenizer_cases(base_dir: Path):
    """Each case: files written next to a copy of base_dir/tokenizer.json; expected = transformers (files-only
    special tokens, factory.py's additions)."""
    cases = [
        dict(name="no_pad", tokenizer_config=dict(GPT_NEOX_SPECIAL), special_tokens_map=dict(GPT_NEOX_SPECIAL)),
        dict(name="pad_in_tokenizer_config", tokenizer_config=dict(GPT_NEOX_SPECIAL, pad_token="<|padding|>"),
             special_tokens_map=dict(GPT_NEOX_SPECIAL)),
        dict(name="pad_in_special_tokens_map", tokenizer_config=dict(GPT_NEOX_SPECIAL),
             special_tokens_map=dict(GPT_NEOX_SPECIAL, pad_token={"content": "<|endoftext|>", "lstrip": False,
                                                                   "normalized": False, "rstrip": False,
                                                                   "single_word": False})),
        dict(name="image_already_added", tokenizer_config=dict(GPT_NEOX_SPECIAL), special_tokens_map=dict(GPT_NEOX_SPECIAL),
             extra_added=[{"id": 400, "content": "<image>", "single_word": False, "lstrip": False, "rstrip": False,
                           "normalized": True, "special": False}]),
    ]
    out = []
    for c in cases:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            doc = json.loads((base_dir / "tokenizer.json").read_text())
            if c.get("extra_added"):
                doc["added_tokens"] = doc["added_tokens"] + c["extra_added"]
            (d / "tokenizer.json").write_text(json.dumps(doc))
            write_json(d / "tokenizer_config.json", c["tokenizer_config"])
            write_json(d / "special_tokens_map.json", c["special_tokens_map"])
            tok, base_len = reference_tokenizer(d)
            backend = json.loads(tok.backend_tokenizer.to_str())
            want = {"vocab": len(tok), "image": tok.convert_tokens_to_ids("<image>"),
                    "endofchunk": tok.convert_tokens_to_ids("<|endofchunk|>"), "pad": tok.pad_token_id,
                    "added_tokens": backend["added_tokens"]}
            # the converter's implementation must agree
            tj, special, _ = ftok.load_base(d, "gpt_neox", None)
            ids = ftok.add_openflamingo_tokens(tj, special)
            got = {"vocab": ids["vocab"], "image": ids["image"], "endofchunk": ids["endofchunk"], "pad": ids["pad"],
                   "added_tokens": tj.to_doc()["added_tokens"]}
            assert got == want, (c["name"], got, want)
        out.append(dict(c, expected=want))
    return out


# ---------------------------------------------------------------------------------------------


def main():
    mf.load_mosaic_gpt()  # fails early if the mosaicml/examples copy is missing
    # paper_nfnet/ belongs to make_paper_fixture.py: everything else is regenerated
    for p in OUT.iterdir() if OUT.exists() else []:
        if p.name != "paper_nfnet":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    (OUT / "vision").mkdir(parents=True)

    clip_model, lp = make_tiny_clip()
    save_openai_style_torchscript(clip_model, lp, OUT / "vision" / "openai_tiny.pt")
    torch_save(collections.OrderedDict((k, v.detach().clone()) for k, v in clip_model.state_dict().items()),
               OUT / "vision" / "open_clip_tiny.bin")
    write_json(OUT / "vision" / "tiny_clip_arch.json", {
        "embed_dim": EMBED_DIM, "quick_gelu": True, "vision_cfg": VISION_CFG, "text_cfg": TEXT_CFG})

    vocab = {}
    for fx in RELEASES:
        vocab[fx["name"]] = make_release(fx, clip_model)

    write_json(OUT / "tokenizer_cases.json", {
        "base": "of9b_mpt7b/lm/tokenizer.json",
        "note": "expected = transformers PreTrainedTokenizerFast with the files' special tokens after factory.py's additions",
        "cases": tokenizer_cases(OUT / "of9b_mpt7b" / "lm"),
    })

    files = {}
    total = 0
    for p in sorted(OUT.rglob("*")):
        if p.is_file() and not p.relative_to(OUT).as_posix().startswith("paper_nfnet/"):
            files[p.relative_to(OUT).as_posix()] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
            total += p.stat().st_size
    manifest = {
        "generator": "tools/reference/make_conversion_fixtures.py",
        "versions": {
            "python": sys.version.split()[0], "torch": torch.__version__,
            "open_flamingo": importlib.metadata.version("open_flamingo"),
            "open_clip_torch": importlib.metadata.version("open_clip_torch"),
            "transformers": importlib.metadata.version("transformers"),
            "tokenizers": importlib.metadata.version("tokenizers"),
            "sentencepiece": importlib.metadata.version("sentencepiece"),
            "mosaicml_examples": f"{mf.MOSAIC_EXAMPLES_TAG} ({mf.MOSAIC_EXAMPLES_COMMIT})",
        },
        "vocab_sizes": vocab,
        "files": files,
        "total_bytes": total,
    }
    write_json(OUT / "MANIFEST.json", manifest)
    print(f"total {total} bytes in {len(files)} files")
    assert total < SIZE_LIMIT, total


if __name__ == "__main__":
    main()
