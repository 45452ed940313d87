#!/usr/bin/env python3
"""Golden-reference fixture generator for libflamingo.

Run from the repository root:

    /work/refenv/bin/python tools/reference/make_fixtures.py

It deletes and regenerates these entries of Tests/Fixtures/ (other entries, e.g. images/ from
make_image_goldens.py, are left alone):

  mpt_tiny/       OpenFlamingo (open_clip ViT + PerceiverResampler + MptForCausalLM), weights F32
  gpt_neox_tiny/  OpenFlamingo with GPTNeoXForCausalLM (partial rotary), weights F16
  llama_tiny/     OpenFlamingo with LlamaForCausalLM (GQA, SentencePiece-style tokenizer), weights BF16
  mosaic_gpt_tiny/ OpenFlamingo with MosaicGPT (MPT-1B's code: mosaicml/examples v0.0.4), weights F32
  nfnet_tiny/     timm NormFreeNet (dm_nfnet code path), forward_features reference

Everything is built from the REAL classes (open_clip 2.20 VisionTransformer, open_flamingo 2.0.1
Flamingo / FlamingoLMMixin / PerceiverResampler / GatedCrossAttentionBlock, transformers causal LMs,
MosaicGPT from a git copy of mosaicml/examples at tag v0.0.4 (not on PyPI; see load_mosaic_gpt and
the MOSAICML_EXAMPLES environment variable), timm NormFreeNet) with seeded random weights; nothing is
downloaded.  Output is deterministic: running
the script twice on the same machine gives byte-identical files (single-threaded torch, fixed seeds,
sorted JSON, safetensors' deterministic layout).

Semantics reproduced: /work/shared/spec (00 §2 data flow, 00 §5 generation loop, 30 masking).
File format written: docs/model-format.md.
"""

import os

# Determinism first: single-threaded BLAS / tokenizers before any heavy import.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import contextlib
import dataclasses
import hashlib
import importlib
import importlib.metadata
import io
import json
import math
import shutil
import subprocess
import sys
import tempfile
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")

import open_clip  # noqa: E402
import safetensors  # noqa: E402
import timm  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from open_clip.transformer import QuickGELU, VisionTransformer  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    MptConfig,
    MptForCausalLM,
    PreTrainedTokenizerFast,
)
from transformers.models.llama.modeling_llama import LlamaRMSNorm  # noqa: E402

from open_flamingo.src.flamingo import Flamingo  # noqa: E402
from open_flamingo.src.flamingo_lm import FlamingoLMMixin  # noqa: E402
from open_flamingo.src.helpers import GatedCrossAttentionBlock, MaskedCrossAttention, PerceiverResampler  # noqa: E402
from open_flamingo.src.utils import extend_instance  # noqa: E402

transformers.logging.set_verbosity_error()

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "Tests" / "Fixtures"

# ---------------------------------------------------------------------------------------------
# transformers-5 compatibility workaround (the ONLY monkeypatch; it does not change any math)
# ---------------------------------------------------------------------------------------------
# open_flamingo 2.0.1 declares `FlamingoLMMixin.forward(self, input_ids, attention_mask, **kwargs)`
# with a *required* attention_mask.  transformers 4.x `generate()` always passed one; transformers 5
# `generate()` replaces an all-ones mask by None and then leaves it out of the model inputs
# (generation/utils.py: `if ... (model_kwargs["attention_mask"] == 1).all(): ... = None`), so the
# real `Flamingo.generate()` raises "missing 1 required positional argument: 'attention_mask'".
# We give the argument a default of None (exactly what the LM's own forward accepts) and otherwise
# call the original method unchanged.  It is used only for the optional cross-check against
# `Flamingo.generate()`; the reference itself is produced by the explicit loop below, which always
# passes the mask.
_ORIG_MIXIN_FORWARD = FlamingoLMMixin.forward


def _mixin_forward_optional_mask(self, input_ids, attention_mask=None, **kwargs):
    return _ORIG_MIXIN_FORWARD(self, input_ids, attention_mask, **kwargs)


FlamingoLMMixin.forward = _mixin_forward_optional_mask

# Other transformers-5 differences handled below without patching library code:
#  * the KV cache is a `DynamicCache` object returned as `output.cache` (4.x: tuple
#    `past_key_values`); the decode loop passes it back as `cache=` (the new keyword name);
#  * `attn_implementation` is forced to "eager": HF MPT does `create_causal_mask(...).to(bool)` and
#    `masked_fill(mask, min)`, which is only correct with the eager (additive float) mask — with
#    sdpa the mask can be None or a "True = attend" boolean;
#  * GPT-NeoX's output head is called `lm_head` in transformers 5 (the Hub files and transformers 4
#    call it `embed_out`; transformers 5 renames on load).  We store it as `embed_out.weight`, the
#    name in the released OpenFlamingo-4B checkpoints (spec/50 §2).

# ---------------------------------------------------------------------------------------------
# constants
# ---------------------------------------------------------------------------------------------
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

VISION = dict(image_size=32, patch_size=8, width=32, layers=2, heads=4, mlp_ratio=4.0, output_dim=16)
RESAMPLER = dict(depth=2, heads=2, dim_head=16, num_latents=8, ff_mult=4)
# GatedCrossAttentionBlock is constructed by FlamingoLMMixin.init_flamingo with its defaults; these
# cannot be passed through Flamingo(...), so they are recorded, not chosen.
XATTN = dict(heads=8, dim_head=64, ff_mult=4)
MAX_NEW_TOKENS = 8
LONG_GREEDY_TOKENS = 32  # greedy32.ids: a longer explicit cached loop (no early stop)
# a prompt with 3 <image> markers for the 2 images of input.pixels (text_time 3 > 2 images)
EXTRA_MARKERS_PROMPT = "<image>A red square.<|endofchunk|><image>A blue<|endofchunk|><image>Three"
XATTN_OUT_SCALE = 0.3
NUM_IMAGES = 2

# MosaicGPT (MPT-1B's language model) is not on PyPI: its code is read from a git copy of
# mosaicml/examples (a clone or a bare mirror; MOSAICML_EXAMPLES overrides the default path) at this tag.
# Each file is checked against its git blob id, so any copy of the tag gives the same code.
MOSAIC_EXAMPLES_DEFAULT = "/work/.mirror/mosaicml+examples/repo"
MOSAIC_EXAMPLES_TAG = "v0.0.4"
MOSAIC_EXAMPLES_COMMIT = "52cd4fef69497f225a034fcd10692f8613732d10"
MOSAIC_FILES = {  # path at the tag -> git blob id
    "examples/llm/src/models/layers/attention.py": "66f36015644b2eb62ee8956461aa830ebc69ecb5",
    "examples/llm/src/models/layers/gpt_blocks.py": "bee8dd7694703b534d9a06c134623915e698eadc",
    "examples/llm/src/models/mosaic_gpt/configuration_mosaic_gpt.py": "c014280edf761e928c960b862b2e3720d0c1270b",
    "examples/llm/src/models/mosaic_gpt/mosaic_gpt.py": "ffff192af91719e2a1fdda391772b59250d9c1e0",
    "examples/llm/src/models/utils/param_init_fns.py": "7ef0cb37e07229ccb07f0840bf43d896b7c5e332",
}
# The gated cross-attention geometry of mosaic_gpt_tiny.  open_flamingo's init_flamingo always builds
# 8 heads x 64 with ff_mult 4 (~0.5 MB of F32 per block; 4 blocks would make the fixture ~3.4 MB); the
# same class is rebuilt with this smaller geometry (~82 KB per block, like the perceiver replacement) to
# keep Tests/Fixtures small.  It also makes the engine read the geometry from config.json (2 xattn
# heads of 32 vs 4 LM heads of 16, ff_mult 1).
MOSAIC_XATTN = dict(heads=2, dim_head=32, ff_mult=1)

# Non-zero gates, varying per layer (index = decoder layer index).
ATTN_GATES = [0.5, -0.7, 0.9, -0.4, 0.3, 0.8]
FF_GATES = [-0.7, 0.6, -0.3, 0.8, -0.5, 0.4]

TOKENIZER_TEXT = """\
An image of two cats sleeping on a red sofa. An image of a bathroom sink with a blue towel.
A red square next to a blue circle. A green triangle above a yellow square. The square is red.
Question: What color is the square? Short answer: red. Question: What shape is it? Short answer: a circle.
Output: A small dog runs across the green grass. Output: Two people ride bicycles down the street.
The quick brown fox jumps over the lazy dog. The cat sat on the mat and looked at the picture.
There is a photo of a kitchen with a white table, four chairs and a window. A man holds an umbrella
in the rain. A woman reads a book in the park. Children play with a ball near the water.
What is in the image? It shows a train at the station. How many birds are there? There are three birds.
Pictures: a red car, a blue bus, a black bike and an orange cat. The sky is blue and the sun is bright.
Caption: an old house with a large tree in front. Caption: a plate of food with rice and vegetables.
"""

# ---------------------------------------------------------------------------------------------
# MosaicGPT (mosaicml/examples v0.0.4) import
# ---------------------------------------------------------------------------------------------

_MOSAIC = None


def _git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _UnusedStub:
    """Placeholder for names that only the training wrapper (ComposerMosaicGPT) or the
    low-precision LayerNorm option use; instantiating one means the assumption broke."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{type(self).__name__} is a stub: the reference must not use it")


def load_mosaic_gpt():
    """Import the real MosaicGPT code of mosaicml/examples v0.0.4 with torch + transformers + einops only.

    The files are read from a git copy (`git --git-dir <dir> show v0.0.4:<path>`; a plain checkout of
    the tag works too), checked against their blob ids, written to a temporary package tree and
    imported under their original module names.  What is stubbed, and why it is unused here:
      * `composer` (LPLayerNorm, metrics, HuggingFaceModel) and `omegaconf`: imported at module level by
        mosaic_gpt.py / attention.py / gpt_blocks.py, but used only by the training wrapper
        `ComposerMosaicGPT` and by `low_precision_layernorm=True`.  The tiny model is built with
        `low_precision_layernorm=False`, i.e. plain `nn.LayerNorm`; composer's LPLayerNorm only differs
        under autocast (it is F.layer_norm with autocast disabled), and everything here runs in fp32
        without autocast.  The stubs raise if they are ever instantiated.
      * the package `__init__` files of examples/, examples/llm/, examples/llm/src/,
        examples/llm/src/models/ and models/utils/ (they import data loaders, HF wrappers, tokenizer
        adapters): replaced by empty packages.  `models/utils` gets the real MODEL_INIT_REGISTRY from
        param_init_fns.py (MosaicGPT.__init__ applies it; reinit_ overwrites every weight anyway) and a
        stub `add_bidirectional_mask_if_missing` (ComposerMosaicGPT only).
    """
    global _MOSAIC
    if _MOSAIC is not None:
        return _MOSAIC
    src = Path(os.environ.get("MOSAICML_EXAMPLES", MOSAIC_EXAMPLES_DEFAULT))
    root = Path(tempfile.mkdtemp(prefix="mosaicml_examples_"))
    for rel, blob in MOSAIC_FILES.items():
        if (src / rel).is_file() and not (src / "HEAD").is_file():
            data = (src / rel).read_bytes()  # a working tree checked out at the tag
        else:
            git_dir = src / ".git" if (src / ".git").exists() else src
            r = subprocess.run(
                ["git", "--git-dir", str(git_dir), "show", f"{MOSAIC_EXAMPLES_TAG}:{rel}"], capture_output=True
            )
            if r.returncode != 0:
                raise SystemExit(
                    f"mosaicml/examples {MOSAIC_EXAMPLES_TAG} not found at {src} (set MOSAICML_EXAMPLES to a clone of "
                    f"https://github.com/mosaicml/examples): {r.stderr.decode().strip()}"
                )
            data = r.stdout
        if _git_blob_id(data) != blob:
            raise SystemExit(f"{src}/{rel}: not the {MOSAIC_EXAMPLES_TAG} version (blob {_git_blob_id(data)} != {blob})")
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(data)

    def stub(name, **attrs):
        m = types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    for name in ("composer", "composer.algorithms", "composer.algorithms.low_precision_layernorm"):
        stub(name)
    lp = type("LPLayerNorm", (_UnusedStub,), {})
    stub("composer.algorithms.low_precision_layernorm.low_precision_layernorm", LPLayerNorm=lp)
    stub("composer.metrics", InContextLearningLMAccuracy=_UnusedStub, InContextLearningMultipleChoiceAccuracy=_UnusedStub)
    stub("composer.metrics.nlp", LanguageCrossEntropy=_UnusedStub, LanguagePerplexity=_UnusedStub)
    stub("composer.models", HuggingFaceModel=type("HuggingFaceModel", (), {}))
    stub("omegaconf", DictConfig=_UnusedStub, OmegaConf=_UnusedStub)
    for pkg in ("examples", "examples.llm", "examples.llm.src", "examples.llm.src.models",
                "examples.llm.src.models.layers", "examples.llm.src.models.mosaic_gpt", "examples.llm.src.models.utils"):
        stub(pkg).__path__ = [str(root.joinpath(*pkg.split(".")))]
    pif = importlib.import_module("examples.llm.src.models.utils.param_init_fns")
    utils = sys.modules["examples.llm.src.models.utils"]
    utils.MODEL_INIT_REGISTRY = pif.MODEL_INIT_REGISTRY
    utils.add_bidirectional_mask_if_missing = _UnusedStub
    attention = importlib.import_module("examples.llm.src.models.layers.attention")
    config_mod = importlib.import_module("examples.llm.src.models.mosaic_gpt.configuration_mosaic_gpt")
    model_mod = importlib.import_module("examples.llm.src.models.mosaic_gpt.mosaic_gpt")
    shutil.rmtree(root)  # everything is imported
    _MOSAIC = types.SimpleNamespace(
        MosaicGPT=model_mod.MosaicGPT, MosaicGPTConfig=config_mod.MosaicGPTConfig, attention=attention,
        source=str(src),
    )
    return _MOSAIC


class MosaicEmbeddingFnMixin:
    """Exactly open_flamingo/src/factory.py's hack for MPT-1B ("mpt-1b-redpajama-200b" in the path),
    whose MosaicGPT has no get_input_embeddings / set_input_embeddings."""

    def get_input_embeddings(self):
        return self.transformer.wte

    def set_input_embeddings(self, new_embeddings):
        self.transformer.wte = new_embeddings


def is_mosaic(model) -> bool:
    return getattr(model.lang_encoder, "_fixture_family", None) == "mosaic_gpt"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def seed_all(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def randn(g, *shape, std=1.0, mean=0.0):
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32) * std + mean


def fan_in(t: torch.Tensor) -> int:
    return int(np.prod(t.shape[1:])) if t.ndim >= 2 else int(t.shape[0])


NORM_TYPES = (nn.LayerNorm, LlamaRMSNorm)


@torch.no_grad()
def reinit_(model: nn.Module, g: torch.Generator, embed_std=1.0):
    """Deterministic, well-conditioned random weights for every parameter.

    Norm weights and conv gains 1 + 0.2·N, biases 0.1·N, matrices N(0, 1/fan_in), embeddings and
    output heads N(0, embed_std²), gated-xattn output projections N(0, 0.3²/fan_in), other vectors
    (class embedding, skipinit gains) N(0, 0.5²).  Activations stay O(1) and greedy decoding has
    clear margins.  Parameters are visited in registration order (named_parameters de-duplicates
    tied / doubly-registered ones), so the draw is deterministic.
    """
    owner = {}
    for mname, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            owner.setdefault(id(p), (mname, mod, pname))
    for name, p in model.named_parameters():
        mname, mod, pname = owner[id(p)]
        if isinstance(mod, NORM_TYPES):
            if pname == "weight":
                p.copy_(randn(g, *p.shape, std=0.2, mean=1.0))
            else:
                p.copy_(randn(g, *p.shape, std=0.1))
        elif isinstance(mod, nn.Embedding) or name.endswith(("lm_head.weight", "embed_out.weight")):
            p.copy_(randn(g, *p.shape, std=embed_std))
        elif pname in ("attn_gate", "ff_gate"):
            pass  # set explicitly by set_gates_
        elif pname == "gain":  # timm ScaledStdConv2d per-output-channel gain [out, 1, 1, 1]
            p.copy_(randn(g, *p.shape, std=0.2, mean=1.0))
        elif p.ndim >= 2:
            std = 1.0 / math.sqrt(fan_in(p))
            if ".gated_cross_attn_layer." in name and name.endswith(("attn.to_out.weight", "ff.3.weight")):
                # In cached-media decoding the cross-attention adds the same (image-dependent) vector
                # to every new token; at full scale it dominates the residual stream and greedy
                # decoding degenerates into one repeated token.  0.3 keeps it clearly visible
                # (checked below: zeroing the attn gates moves the logits by > 0.1).
                std *= XATTN_OUT_SCALE
            p.copy_(randn(g, *p.shape, std=std))
        elif pname.endswith("bias"):
            p.copy_(randn(g, *p.shape, std=0.1))
        else:  # class_embedding, skipinit_gain, ...
            p.copy_(randn(g, *p.shape, std=0.5))


@torch.no_grad()
def set_gates_(lang_encoder):
    for i, layer in enumerate(lang_encoder._get_decoder_layers()):
        blk = layer.gated_cross_attn_layer
        if blk is not None:
            blk.attn_gate.fill_(ATTN_GATES[i % len(ATTN_GATES)])
            blk.ff_gate.fill_(FF_GATES[i % len(FF_GATES)])


@torch.no_grad()
def round_params_(model: nn.Module, dtype: torch.dtype):
    """Round every weight to the storage dtype and back, so the fp32 reference uses exactly the
    stored values."""
    if dtype == torch.float32:
        return
    for p in model.parameters():
        r = p.to(dtype)
        assert torch.isfinite(r).all()
        p.copy_(r.to(torch.float32))


def normalised_pixels(g, *shape, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD):
    """Random images in [0,1] (quantised to 8 bit like a real image), normalised per channel."""
    u8 = torch.randint(0, 256, shape, generator=g, dtype=torch.int64).to(torch.float32) / 255.0
    m = torch.tensor(mean).view(3, 1, 1)
    s = torch.tensor(std).view(3, 1, 1)
    return (u8 - m) / s


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_json(path: Path, obj):
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def save_st(path: Path, tensors: dict, metadata=None):
    clean = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    save_file(clean, str(path), metadata=metadata or {"format": "pt"})
    os.chmod(path, 0o644)  # safetensors creates 0600 files


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def i64(t):
    return t.detach().to(torch.int64).contiguous().clone()


# ---------------------------------------------------------------------------------------------
# tokenizers
# ---------------------------------------------------------------------------------------------


def add_openflamingo_special_tokens(tok):
    """Exactly open_flamingo/src/factory.py."""
    tok.add_special_tokens({"additional_special_tokens": ["<|endofchunk|>", "<image>"]})
    if tok.pad_token is None:
        tok.add_special_tokens({"pad_token": "<PAD>"})
    return tok


def build_bytelevel_tokenizer(vocab_size=400):
    """GPT-NeoX-20B style: NFC normaliser, byte-level BPE (GPT-2 regex, no prefix space),
    <|endoftext|> = 0, <|padding|> = 1, no BOS added, no pad token configured."""
    tk = Tokenizer(models.BPE())
    tk.normalizer = normalizers.NFC()
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tk.decoder = decoders.ByteLevel()
    tk.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|padding|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator([TOKENIZER_TEXT], trainer)
    base = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    base_len = len(base)
    return add_openflamingo_special_tokens(base), base_len


def build_sentencepiece_bpe_tokenizer(trained_vocab=240):
    """LLaMA style: BPE with byte_fallback, Metaspace "▁" pre-tokeniser (prepend_scheme "first",
    as transformers' LlamaConverter writes for legacy=False), ids <unk>=0 <s>=1 </s>=2,
    <0x00>..<0xFF> = 3..258, then the learned pieces; BOS prepended by the post-processor."""
    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # Train on "▁word" units (split=True) so that, as in SentencePiece, no piece crosses a word
    # boundary and "▁" only starts a piece; encode with split=False like LlamaConverter.
    tk.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    trainer = trainers.BpeTrainer(vocab_size=trained_vocab, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tk.train_from_iterator([TOKENIZER_TEXT], trainer)
    # Insert the 256 byte-fallback pieces after the 3 specials (the SentencePiece LLaMA layout).
    spec = json.loads(tk.to_str())
    old_vocab = spec["model"]["vocab"]
    ordered = sorted(old_vocab.items(), key=lambda kv: kv[1])
    new_vocab = {}
    for piece, idx in ordered[:3]:
        new_vocab[piece] = idx
    for b in range(256):
        new_vocab[f"<0x{b:02X}>"] = 3 + b
    for piece, idx in ordered[3:]:
        assert piece not in new_vocab
        new_vocab[piece] = len(new_vocab)
    spec["model"]["vocab"] = new_vocab
    spec["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    spec["model"]["byte_fallback"] = True
    spec["model"]["fuse_unk"] = True
    spec["model"]["unk_token"] = "<unk>"
    spec["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<s>", "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    }
    tk = Tokenizer.from_str(json.dumps(spec))
    base = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    base_len = len(base)
    return add_openflamingo_special_tokens(base), base_len


# ---------------------------------------------------------------------------------------------
# model construction (replicates open_flamingo.create_model_and_transforms without downloads)
# ---------------------------------------------------------------------------------------------


class _CLIPVisualHolder(nn.Module):
    """Stands in for open_clip's CLIP model: Flamingo keeps `vision_encoder.visual`."""

    def __init__(self, visual):
        super().__init__()
        self.visual = visual


def build_flamingo(lm, tokenizer, decoder_layers_attr_name, cross_attn_every_n_layers, xattn=None):
    visual = VisionTransformer(
        image_size=VISION["image_size"],
        patch_size=VISION["patch_size"],
        width=VISION["width"],
        layers=VISION["layers"],
        heads=VISION["heads"],
        mlp_ratio=VISION["mlp_ratio"],
        output_dim=VISION["output_dim"],
        act_layer=QuickGELU,  # OpenAI weights (build_model_from_openai_state_dict(quick_gelu=True))
        output_tokens=True,
    )
    vision_encoder = _CLIPVisualHolder(visual)
    # --- from here on: open_flamingo/src/factory.py create_model_and_transforms, verbatim order ---
    vision_encoder.visual.output_tokens = True
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name(decoder_layers_attr_name)
    lm.resize_token_embeddings(len(tokenizer))
    model = Flamingo(
        vision_encoder,
        lm,
        tokenizer.encode("<|endofchunk|>")[-1],
        tokenizer.encode("<image>")[-1],
        vis_dim=VISION["width"],
        cross_attn_every_n_layers=cross_attn_every_n_layers,
    )
    # Flamingo.__init__ hard-codes PerceiverResampler(dim=vis_dim) with its defaults (depth 6,
    # 8 heads x 64, 64 latents).  Replace it with the same class built with the tiny geometry.
    model.perceiver = PerceiverResampler(
        dim=VISION["width"],
        depth=RESAMPLER["depth"],
        dim_head=RESAMPLER["dim_head"],
        heads=RESAMPLER["heads"],
        num_latents=RESAMPLER["num_latents"],
        ff_mult=RESAMPLER["ff_mult"],
    )
    model.perceiver._use_gradient_checkpointing = False
    for blk in model.lang_encoder.gated_cross_attn_layers:
        if blk is not None:
            assert blk.attn.heads == XATTN["heads"] and blk.attn.to_q.out_features == XATTN["heads"] * XATTN["dim_head"]
    if xattn is not None and xattn != XATTN:
        # init_flamingo hard-codes GatedCrossAttentionBlock(dim, dim_visual) with its defaults; rebuild
        # the same class with the requested geometry at the same layers and re-wrap the decoder layers
        # (FlamingoLMMixin.init_flamingo_layers, which propagates changes of gated_cross_attn_layers).
        lm_ = model.lang_encoder
        lm_.gated_cross_attn_layers = nn.ModuleList(
            [
                None if blk is None else GatedCrossAttentionBlock(
                    dim=blk.attn.to_q.in_features, dim_visual=VISION["width"], dim_head=xattn["dim_head"],
                    heads=xattn["heads"], ff_mult=xattn["ff_mult"],
                )
                for blk in lm_.gated_cross_attn_layers
            ]
        )
        lm_.init_flamingo_layers(False)
        for blk in lm_.gated_cross_attn_layers:
            if blk is not None:
                assert blk.attn.heads == xattn["heads"] and blk.attn.to_q.out_features == xattn["heads"] * xattn["dim_head"]
                assert blk.ff[1].out_features == xattn["ff_mult"] * blk.attn.to_q.in_features
    model.requires_grad_(False)
    return model.eval()


# ---------------------------------------------------------------------------------------------
# weight naming (docs/model-format.md "Tensor names")
# ---------------------------------------------------------------------------------------------


def export_weights(model, hf_names, layers_attr, tied, head_rename):
    out = {}
    for k, v in model.vision_encoder.state_dict().items():
        if k == "proj":
            continue  # never used by OpenFlamingo, not stored
        out["vision_encoder." + k] = v
    for k, v in model.perceiver.state_dict().items():
        out["perceiver." + k] = v
    lm_sd = model.lang_encoder.state_dict()
    expected = set()
    for k in hf_names:
        if tied and k == "lm_head.weight":
            continue
        expected.add(head_rename.get(k, k))
    for k, v in lm_sd.items():
        if k.startswith(("old_decoder_blocks.", "gated_cross_attn_layers.")):
            continue  # duplicate registrations of the same modules
        if tied and k == "lm_head.weight":
            continue  # tied to the input embedding; stored once
        name = k.replace(".decoder_layer.", ".")
        name = head_rename.get(name, name)
        out["lang_encoder." + name] = v
    # every HF tensor is present under its original name, plus exactly the xattn tensors
    lm_names = {k[len("lang_encoder."):] for k in out if k.startswith("lang_encoder.")}
    xattn_names = {n for n in lm_names if ".gated_cross_attn_layer." in n}
    assert lm_names - xattn_names == expected, (sorted(lm_names - xattn_names ^ expected))
    for n in xattn_names:
        assert n.startswith(layers_attr + "."), n
    return out


# ---------------------------------------------------------------------------------------------
# reference computation
# ---------------------------------------------------------------------------------------------


class Recorder:
    def __init__(self, model, final_norm):
        self.store = {}
        self.handles = []
        lm = model.lang_encoder

        def grab(name, pick=None):
            def hook(_m, _inp, out):
                o = out
                if pick is not None:
                    o = pick(o)
                self.store[name] = o.detach().clone()

            return hook

        self.handles.append(model.vision_encoder.register_forward_hook(grab("vision.tokens", lambda o: o[1])))
        self.handles.append(model.perceiver.register_forward_hook(grab("resampler.out")))
        self.handles.append(lm.get_input_embeddings().register_forward_hook(grab("hidden.embed")))
        for i, layer in enumerate(lm._get_decoder_layers()):
            self.handles.append(
                layer.register_forward_hook(grab(f"hidden.{i}", lambda o: o[0] if isinstance(o, tuple) else o))
            )
            if layer.gated_cross_attn_layer is not None:
                self.handles.append(layer.gated_cross_attn_layer.register_forward_hook(grab(f"xattn.{i}")))
        self.handles.append(final_norm.register_forward_hook(grab("hidden.final")))

    def clear(self):
        self.store = {}

    def remove(self):
        for h in self.handles:
            h.remove()


@torch.no_grad()
def prompt_forward(model, pixels, ids, mask):
    """Flamingo.forward (standard, non-cached mode) = the prefill of generation."""
    if is_mosaic(model):
        # Flamingo.forward passes `labels=None, past_key_values=None, use_cache=False` to the LM;
        # MosaicGPT v0.0.4's forward has no `labels` argument (the anas-awadalla copy used by OF-3B
        # added it) and needs a bool mask (it folds `~attention_mask` into the ALiBi bias).  So do
        # Flamingo.forward's three steps with exactly those semantics.
        assert not model.lang_encoder._use_cached_vision_x
        model._encode_vision_x(vision_x=pixels)
        model._condition_media_locations(input_ids=ids)
        out = model.lang_encoder(input_ids=ids, attention_mask=mask.bool(), use_cache=False)
        model.lang_encoder.clear_conditioned_layers()
        return out.logits
    out = model(vision_x=pixels, lang_x=ids, attention_mask=mask)
    return out.logits


@torch.no_grad()
def greedy_decode(model, pixels, ids, mask, steps, position_ids=None, process=None):
    """Explicit reproduction of Flamingo.generate + HF greedy search (spec/00 §5):
    encode images once with the cached-vision flag set, prefill with the prompt (media_locations of
    the prompt, running count), then one token per step in cached-media mode (every new token
    attends to the last image of its row's prompt) using the self-attention KV cache.
    Runs exactly `steps` steps (no early stop); returns ids [B, steps] and logits [steps, B, V].

    position_ids: None (the LM derives 0..n-1 from the cache length, as in the original single and
    MPT cases) or the prefill position ids [B, L]; each decode step then uses last + 1 per row (HF
    `_update_model_kwargs_for_generation`).  process: None or a function (sequence so far [B, n]
    including the prompt, logits [B, V]) -> processed scores; the argmax and the returned step logits
    are then those of the processed scores (HF applies logits processors before the argmax)."""
    lm = model.lang_encoder
    # MosaicGPT v0.0.4 takes its cache (a list of per-layer (k, v)) as `past_key_values` and a bool
    # mask (what its prepare_inputs_for_generation passes); transformers 5 models take `cache`.
    mosaic = is_mosaic(model)
    cache_kw = "past_key_values" if mosaic else "cache"
    as_mask = (lambda m: m.bool()) if mosaic else (lambda m: m)
    lm._use_cached_vision_x = True
    model._encode_vision_x(vision_x=pixels)
    extra = {} if position_ids is None else {"position_ids": position_ids}
    out = lm(input_ids=ids, attention_mask=as_mask(mask), use_cache=True, **extra)
    cache = out.cache
    mask = mask.clone()
    seq = ids.clone()
    new_ids, step_logits = [], []
    logits = out.logits[:, -1, :]
    if process is not None:
        logits = process(seq, logits.float())
    modes = []
    for step in range(steps):
        step_logits.append(logits.clone())
        nxt = logits.argmax(dim=-1)
        new_ids.append(nxt)
        if step == steps - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
        if position_ids is not None:
            position_ids = position_ids[:, -1:] + 1
            extra = {"position_ids": position_ids}
        out = lm(input_ids=nxt[:, None], attention_mask=as_mask(mask), use_cache=True, **{cache_kw: cache}, **extra)
        modes.append(bool(lm._get_decoder_layers()[0].use_cached_media))
        cache = out.cache
        logits = out.logits[:, -1, :]
        if process is not None:
            logits = process(seq, logits.float())
    lm.clear_conditioned_layers()
    lm._use_cached_vision_x = False
    return torch.stack(new_ids, dim=1), torch.stack(step_logits, dim=0), modes


def top2_margin(logits):
    s = torch.sort(logits, dim=-1, descending=True).values
    return float((s[..., 0] - s[..., 1]).min())


def max_abs(a, b):
    return float((a.double() - b.double()).abs().max())


def compute_case(model, recorder, pixels, ids, mask):
    recorder.clear()
    logits = prompt_forward(model, pixels, ids, mask)
    rec = dict(recorder.store)
    rec["logits"] = logits.clone()
    return rec


def fp64_deviation(model, recorder, pixels, ids, mask, ref):
    """Re-run the same forward in float64 and report max |fp32 - fp64| per tensor (tolerance hint)."""
    model.double()
    try:
        rec = compute_case(model, recorder, pixels.double(), ids, mask)
    finally:
        model.float()
    return {k: max_abs(ref[k], rec[k]) for k in ref}


# ---------------------------------------------------------------------------------------------
# generation references beyond plain greedy (beam search, logits processors, EOS stop, padded
# rotary batches).  Everything below is deterministic and draws no random numbers except the
# separately seeded batch images of the rotary fixtures.
# ---------------------------------------------------------------------------------------------


def mask_position_ids(mask):
    """Position ids as transformers' generate() derives them from a 2D attention mask
    (`_prepare_position_ids_for_generation`): cumsum - 1, pad positions set to 0 (transformers 4
    used 1; pad positions are masked as keys, so their value only affects the pad rows' own,
    meaningless outputs)."""
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


@torch.no_grad()
def prompt_forward_pos(model, pixels, ids, mask, position_ids):
    """Flamingo.forward (standard mode) with explicit position ids: Flamingo.forward has no
    position_ids argument, so this does its three steps (encode images, condition media locations,
    LM forward) with position_ids passed through FlamingoLMMixin.forward's **kwargs."""
    assert not model.lang_encoder._use_cached_vision_x
    model._encode_vision_x(vision_x=pixels)
    model._condition_media_locations(input_ids=ids)
    out = model.lang_encoder(input_ids=ids, attention_mask=mask, position_ids=position_ids)
    model.lang_encoder.clear_conditioned_layers()
    return out.logits


def repetition_penalty_process(penalty):
    """Independent re-implementation of HF RepetitionPenaltyLogitsProcessor: every token id that
    occurs anywhere in the sequence so far (prompt included) gets score/penalty if its score is > 0
    and score*penalty otherwise."""

    def process(seq, logits):
        out = logits.clone()
        for b in range(seq.shape[0]):
            for t in sorted(set(seq[b].tolist())):
                v = out[b, t]
                out[b, t] = v * penalty if v < 0 else v / penalty
        return out

    return process


def no_repeat_ngram_process(n):
    """Independent re-implementation of HF NoRepeatNGramLogitsProcessor: ban (-inf) every token that
    would complete an n-gram already present in the sequence so far (prompt included)."""

    def process(seq, logits):
        out = logits.clone()
        for b in range(seq.shape[0]):
            s = seq[b].tolist()
            if len(s) + 1 < n:
                continue
            prefix = s[len(s) - n + 1:]
            for i in range(len(s) - n + 1):
                if s[i:i + n - 1] == prefix:
                    out[b, s[i + n - 1]] = -float("inf")
        return out

    return process


@torch.no_grad()
def beam_search_explicit(model, pixels, ids, num_beams, max_new_tokens, length_penalty, eos_id):
    """Independent re-implementation of transformers 5 `_beam_search` (no sampling, early_stopping
    False, one EOS id) for one prompt (batch 1).  Logits come from a full no-cache forward of every
    running beam (standard mode: new tokens follow the prompt's last image), not from HF's KV cache.

    Per step: log_softmax of each running beam's last logits + its running score; the 2·num_beams
    best of the num_beams·V candidates (beam-major flattening, torch.topk order); a candidate
    "finishes" when its token is EOS or the sequence reaches prompt + max_new_tokens; the
    num_beams best non-finished candidates continue; finished ones among the first num_beams
    candidates enter the finished set with score = sum logprob / (generated length incl. EOS) **
    length_penalty, if the early-stop heuristic still allows improvement; the finished set keeps its
    num_beams best.  Stop when every candidate finished (max length) or when all num_beams finished
    slots are taken and best running score / (generated length) ** length_penalty <= worst finished.
    Returns the finished list [(score, new tokens)] best first and per-step tie statistics."""
    L = ids.shape[1]
    max_len = L + max_new_tokens
    K = 2 * num_beams
    running = [[] for _ in range(num_beams)]
    run_scores = torch.zeros(num_beams)
    run_scores[1:] = -1e9
    finished = []
    improvable = True
    cur_len = L
    steps = []
    while True:
        seqs = torch.cat([ids.repeat(num_beams, 1), torch.tensor(running, dtype=torch.long).view(num_beams, -1)], 1)
        logits = prompt_forward(model, pixels.repeat_interleave(num_beams, 0), seqs, torch.ones_like(seqs))[:, -1].float()
        V = logits.shape[-1]
        acc = (torch.log_softmax(logits, dim=-1) + run_scores[:, None]).reshape(-1)
        top_v, top_i = torch.topk(acc, K)
        beam = (top_i // V).tolist()
        tok_ids = (top_i % V).tolist()
        hits = torch.tensor([t == eos_id or cur_len + 1 >= max_len for t in tok_ids])
        srt = torch.sort(acc.double(), descending=True).values[: K + 1]
        adj = srt[:-1] - srt[1:]
        steps.append(
            {
                "best_minus_second": float(srt[0] - srt[1]),
                "min_adjacent_gap_top_2k_plus_1": float(adj.min()),
                "min_gap_after_rank": int(adj.argmin()) + 1,
            }
        )
        masked = top_v + hits.to(torch.float32) * -1.0e9
        nxt = torch.topk(masked, num_beams).indices.tolist()
        new_running = [running[beam[j]] + [tok_ids[j]] for j in nxt]
        new_scores = masked[nxt]
        if improvable:
            for j in range(num_beams):
                if bool(hits[j]):
                    score = float(top_v[j] / ((cur_len + 1 - L) ** length_penalty))
                    finished.append((score, running[beam[j]] + [tok_ids[j]]))
            finished = sorted(finished, key=lambda f: -f[0])[:num_beams]
        cur_len += 1
        if len(finished) == num_beams:
            best_possible = float(new_scores[0] / ((cur_len - L) ** length_penalty))
            if not best_possible > finished[-1][0]:
                improvable = False
        running, run_scores = new_running, new_scores
        if not improvable or bool(hits.all()):
            break
    return finished, steps


def beam_reference(model, tok, pixels, ids, mask, length_penalty, num_beams=3):
    """Real Flamingo.generate beam search (eos = <|endofchunk|> by default, no sampling,
    early_stopping default) + the explicit re-implementation as a cross-check.  Returns the new
    tokens of the best hypothesis and a JSON record."""
    L = ids.shape[1]
    eoc_id = model.eoc_token_id
    kw = dict(
        vision_x=pixels, lang_x=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, num_beams=num_beams,
        length_penalty=length_penalty, do_sample=False, output_scores=True, return_dict_in_generate=True,
    )
    with torch.no_grad():
        best = model.generate(**kw)
        allh = model.generate(**kw, num_return_sequences=num_beams)
    gen_cfg = model.lang_encoder.generation_config
    assert not gen_cfg.early_stopping, gen_cfg.early_stopping
    new = best.sequences[0, L:].tolist()
    assert eoc_id not in new[:-1], new
    finished, steps = beam_search_explicit(model, pixels, ids, num_beams, MAX_NEW_TOKENS, length_penalty, eoc_id)
    hyps = []
    for r in range(num_beams):
        h = allh.sequences[r, L:].tolist()
        h = h[: h.index(eoc_id) + 1] if eoc_id in h else h
        hyps.append({"ids": h, "sequences_score": float(allh.sequences_scores[r])})
    assert hyps[0]["ids"] == new and abs(hyps[0]["sequences_score"] - float(best.sequences_scores[0])) == 0.0
    for r, (score, toks) in enumerate(finished):
        assert toks == hyps[r]["ids"], (r, toks, hyps[r]["ids"])
        assert abs(score - hyps[r]["sequences_score"]) < 1e-4, (r, score, hyps[r]["sequences_score"])
    final_gap = finished[0][0] - finished[1][0]
    min_gap = min(s["min_adjacent_gap_top_2k_plus_1"] for s in steps)
    assert min_gap > 1e-4 and final_gap > 1e-4, (min_gap, final_gap)
    rec = {
        "num_beams": num_beams,
        "length_penalty": length_penalty,
        "max_new_tokens": MAX_NEW_TOKENS,
        "eos_token_id": eoc_id,
        "early_stopping": gen_cfg.early_stopping,
        "do_sample": False,
        "ids": new,
        "text": tok.decode(new, skip_special_tokens=False),
        "sequences_score": float(best.sequences_scores[0]),
        "hypotheses": hyps,
        "steps_run": len(steps),
        "step_gaps": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in s.items()} for s in steps],
        "step_gaps_note": "per step, over the num_beams*V accumulated candidate scores sorted descending: best - second, and the smallest gap between adjacent ranks among the first 2*num_beams+1 (every ordering beam search uses), with the 1-based rank after which it occurs",
        "min_step_gap": round(min_gap, 6),
        "best_minus_second_final_score": round(final_gap, 6),
        "verified": [
            "ids = Flamingo.generate(num_beams, length_penalty, max_new_tokens, return_dict_in_generate, output_scores).sequences[0, prompt_len:]",
            "all num_beams hypotheses (num_return_sequences = num_beams) equal an explicit re-implementation of transformers' beam search on no-cache full forwards, scores within 1e-4",
        ],
    }
    return new, rec


def processed_greedy_reference(model, tok, pixels, ids, mask, hf_kwargs, process):
    """Greedy through the real Flamingo.generate with a logits processor (stops at the first
    <|endofchunk|>), cross-checked against the explicit cached loop with an independent
    re-implementation of the processor."""
    L = ids.shape[1]
    eoc_id = model.eoc_token_id
    with torch.no_grad():
        hf = model.generate(
            vision_x=pixels, lang_x=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False,
            **hf_kwargs,
        )
    new = hf[0, L:].tolist()
    mine, scores, _ = greedy_decode(model, pixels, ids, mask, MAX_NEW_TOKENS, process=process)
    mine = mine[0].tolist()
    upto = mine.index(eoc_id) + 1 if eoc_id in mine else len(mine)
    assert new == mine[:upto], (hf_kwargs, new, mine)
    margin = top2_margin(scores[:upto, 0, :])
    assert margin > 1e-2, (hf_kwargs, margin)
    rec = {
        "settings": dict(hf_kwargs, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False, eos_token_id=eoc_id),
        "ids": new,
        "text": tok.decode(new, skip_special_tokens=False),
        "stopped_at_endofchunk": eoc_id in new,
        "min_top2_processed_score_margin": round(margin, 6),
        "verified": "ids = Flamingo.generate(...) output after the prompt = explicit cached loop with an independent re-implementation of the processor (applied to the raw logits of the full sequence so far, prompt tokens included)",
    }
    return new, rec


# ---------------------------------------------------------------------------------------------
# per-family LM construction
# ---------------------------------------------------------------------------------------------


def make_lm(family, base_vocab, tokenizer):
    if family == "mpt":
        cfg = MptConfig(
            d_model=64,
            n_heads=4,
            n_layers=4,
            expansion_ratio=4,
            max_seq_len=128,
            vocab_size=base_vocab,
            layer_norm_epsilon=1e-5,
            no_bias=True,
            attn_config=dict(alibi=True, alibi_bias_max=8, qk_ln=False, clip_qkv=None, softmax_scale=None),
            tie_word_embeddings=True,
            use_cache=True,
            eos_token_id=0,
        )
        cfg._attn_implementation = "eager"
        lm = MptForCausalLM(cfg)
        return lm, dict(
            layers_attr="transformer.blocks",
            final_norm=lambda m: m.transformer.norm_f,
            tied=True,
            head_rename={},
            lm_keys=dict(
                hidden_size=64,
                layers=4,
                heads=4,
                intermediate_size=256,
                max_seq_len=128,
                norm_eps=1e-5,
                tie_word_embeddings=True,
                alibi_bias_max=8,
                norm_bias=False,
                qk_ln=False,
            ),
        )
    if family == "gpt_neox":
        cfg = GPTNeoXConfig(
            vocab_size=base_vocab,
            hidden_size=64,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=192,
            hidden_act="gelu",
            max_position_embeddings=128,
            layer_norm_eps=1e-5,
            use_parallel_residual=False,
            rotary_pct=0.5,
            rotary_emb_base=10000,
            attention_bias=True,
            tie_word_embeddings=False,
            bos_token_id=0,
            eos_token_id=0,
            use_cache=True,
        )
        cfg._attn_implementation = "eager"
        assert cfg.rope_parameters["partial_rotary_factor"] == 0.5 and cfg.rope_parameters["rope_theta"] == 10000
        lm = GPTNeoXForCausalLM(cfg)
        return lm, dict(
            layers_attr="gpt_neox.layers",
            final_norm=lambda m: m.gpt_neox.final_layer_norm,
            tied=False,
            head_rename={"lm_head.weight": "embed_out.weight"},
            lm_keys=dict(
                hidden_size=64,
                layers=4,
                heads=4,
                intermediate_size=192,
                max_seq_len=128,
                norm_eps=1e-5,
                tie_word_embeddings=False,
                rotary_pct=0.5,
                rope_theta=10000,
                parallel_residual=False,
            ),
        )
    if family == "llama":
        cfg = LlamaConfig(
            vocab_size=base_vocab,
            hidden_size=64,
            intermediate_size=160,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            hidden_act="silu",
            max_position_embeddings=128,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            tie_word_embeddings=False,
            attention_bias=False,
            mlp_bias=False,
            bos_token_id=1,
            eos_token_id=2,
            use_cache=True,
        )
        cfg._attn_implementation = "eager"
        assert cfg.rope_parameters["rope_theta"] == 10000
        lm = LlamaForCausalLM(cfg)
        return lm, dict(
            layers_attr="model.layers",
            final_norm=lambda m: m.model.norm,
            tied=False,
            head_rename={},
            lm_keys=dict(
                hidden_size=64,
                layers=4,
                heads=4,
                intermediate_size=160,
                max_seq_len=128,
                norm_eps=1e-6,
                tie_word_embeddings=False,
                kv_heads=2,
                rope_theta=10000,
            ),
        )
    if family == "mosaic_gpt":
        mosaic = load_mosaic_gpt()
        # MPT-1B's configuration (spec/40 §3) shrunk: ALiBi (max bias 8, no positional embedding),
        # QK-LayerNorm over the full width, no biases anywhere (LayerNorms included), tied head, GELU
        # MLP ratio 4, attn_impl "torch" (the only CPU path; MPT-1B's setting), no logit scaling.
        cfg = mosaic.MosaicGPTConfig(
            d_model=64,
            n_heads=4,
            n_layers=4,
            mlp_ratio=4,
            max_seq_len=128,
            vocab_size=base_vocab,
            attn_impl="torch",
            attn_qk_ln=True,
            attn_clip_qkv=None,
            softmax_scale=None,
            alibi=True,
            alibi_bias_max=8,
            no_bias=True,
            logit_scale=None,
            embedding_fraction=1.0,
            low_precision_layernorm=False,  # = LPLayerNorm outside autocast (see load_mosaic_gpt)
            init_device="cpu",
            use_cache=True,
        )
        with contextlib.redirect_stdout(io.StringIO()):  # MosaicGPT prints an init_device hint
            lm = mosaic.MosaicGPT(cfg)
        lm.eval()
        # architecture checks: no bias parameter anywhere, weight-only LayerNorms of the full width
        # (q_ln / k_ln included), ALiBi slopes 2^(-h*8/H) for h = 1..H
        names = [n for n, _ in lm.named_parameters()]
        assert not any(n.endswith("bias") for n in names), names
        for blk in lm.transformer.blocks:
            for ln in (blk.ln_1, blk.ln_2, blk.attn.q_ln, blk.attn.k_ln):
                assert type(ln) is nn.LayerNorm and ln.bias is None and ln.normalized_shape == (64,) and ln.eps == 1e-5
        assert not hasattr(lm.transformer, "wpe")
        ab = mosaic.attention.alibi_bias(4, 8, full=False, alibi_bias_max=8, dtype=torch.float64)
        slopes = (-ab[0, :, 0, -2]).tolist()  # bias at distance 1 = -slope
        assert slopes == [2.0 ** (-h * 8 / 4) for h in range(1, 5)], slopes
        assert ab[0, :, 0, -1].abs().max() == 0
        # open_flamingo's factory patches these in for MPT-1B (before FlamingoLMMixin)
        extend_instance(lm, MosaicEmbeddingFnMixin)
        lm._fixture_family = "mosaic_gpt"
        return lm, dict(
            layers_attr="transformer.blocks",
            final_norm=lambda m: m.transformer.ln_f,
            tied=True,
            head_is_input_embedding=True,  # logits = F.linear(x, transformer.wte.weight): no lm_head module
            head_rename={},
            alibi_slopes=slopes,
            lm_keys=dict(
                hidden_size=64,
                layers=4,
                heads=4,
                intermediate_size=256,
                max_seq_len=128,
                norm_eps=1e-5,
                tie_word_embeddings=True,
                alibi_bias_max=8,
                qk_ln=True,
            ),
        )
    raise ValueError(family)


FIXTURES = [
    dict(
        name="mpt_tiny",
        family="mpt",
        seed=1001,
        every_n=1,
        dtype=torch.float32,
        st_dtype="F32",
        tokenizer="bytelevel",
        prompt="<image>A red square.<|endofchunk|><image>A blue",
        batch_prompts=["<image>A red square.<|endofchunk|><image>A blue", "<image>Two cats"],
        batch_images=[2, 1],
        # greedy reaches <|endofchunk|> only when the prompt ends with it (tied head: the model
        # repeats its last token); searched among ~2000 prompts
        stop_prompt="<image>A red square.<|endofchunk|><image>Two cats.<|endofchunk|>",
    ),
    dict(
        name="gpt_neox_tiny",
        family="gpt_neox",
        seed=2002,
        every_n=2,
        dtype=torch.float16,
        st_dtype="F16",
        tokenizer="bytelevel",
        # text before the first <image> has text_time 0 (zero cross-attention, FF still applied)
        prompt="Pictures: <image>An image of two cats.<|endofchunk|><image>An image of",
        batch_prompts=["Pictures: <image>An image of two cats.<|endofchunk|><image>An image of", "Caption: <image>A red square"],
        batch_images=[2, 1],
        batch_seed=2102,
        # found by a random search over word-salad prompts (greedy ends with <|endofchunk|>)
        stop_prompt="<image>Orange a What<|endofchunk|><image>Is the food",
    ),
    dict(
        name="llama_tiny",
        family="llama",
        seed=3003,
        every_n=2,
        dtype=torch.bfloat16,
        st_dtype="BF16",
        tokenizer="sentencepiece",
        # 'é' is not in the tokenizer training text -> byte-fallback pieces <0xC3><0xA9>
        prompt="<image>Question: What color is the square? Short answer: red<|endofchunk|><image>Question: What is in the café? Short answer:",
        batch_prompts=[
            "<image>Question: What color is the square? Short answer: red<|endofchunk|><image>Question: What is in the café? Short answer:",
            "<image>Question: What shape is it? Short answer:",
        ],
        batch_images=[2, 1],
        batch_seed=3103,
        # found by a random search over word-salad prompts (greedy ends with <|endofchunk|>)
        stop_prompt="<image>Photo park An a<|endofchunk|><image>. down with .",
    ),
    dict(
        name="mosaic_gpt_tiny",
        family="mosaic_gpt",
        seed=5017,
        every_n=1,
        xattn=MOSAIC_XATTN,
        dtype=torch.float32,
        st_dtype="F32",
        tokenizer="bytelevel",
        prompt="<image>A red square.<|endofchunk|><image>A blue",
        # transformers 5's PreTrainedModel no longer includes GenerationMixin and MosaicGPT v0.0.4
        # (April 2023) does not inherit it, so Flamingo.generate cannot run on it here: no cross-check
        # against it and no beam / logits-processor / stop / batch references.
        flamingo_generate=False,
    ),
]

TOLERANCES = {
    "note": "fp32 engine vs fp32 PyTorch reference; compare |a-b| <= atol + rtol*|ref|. Greedy ids must match exactly.",
    "vision.tokens": {"atol": 1e-4, "rtol": 1e-4},
    "resampler.out": {"atol": 1e-4, "rtol": 1e-4},
    "xattn.*": {"atol": 5e-4, "rtol": 1e-3},
    "hidden.*": {"atol": 5e-4, "rtol": 1e-3},
    "logits": {"atol": 2e-3, "rtol": 1e-3},
    "greedy.step_logits": {"atol": 2e-3, "rtol": 1e-3},
    "greedy.ids": "exact",
}


def tol_for(name):
    if name.startswith("batch."):
        name = name[len("batch."):]
    if name in TOLERANCES:
        return TOLERANCES[name]
    if name.startswith("xattn."):
        return TOLERANCES["xattn.*"]
    if name.startswith("hidden."):
        return TOLERANCES["hidden.*"]
    return None


def add_generation_references(model, tok, fx, pixels, ids, mask, tensors, refjson):
    """Beam search (length_penalty 0 and 1), greedy with no_repeat_ngram_size=2 and with
    repetition_penalty=1.5 on the main prompt and images, and a prompt whose greedy continuation
    reaches <|endofchunk|> (plus its beam searches).  All through the real Flamingo.generate, each
    cross-checked against an explicit re-implementation; draws no random numbers."""
    eoc_id = model.eoc_token_id
    for lp, key in ((0.0, "beam3_lp0"), (1.0, "beam3_lp1")):
        new, rec = beam_reference(model, tok, pixels, ids, mask, lp)
        tensors[f"{key}.ids"] = torch.tensor(new, dtype=torch.int64)
        refjson[key] = rec

    for key, hf_kwargs, process in (
        ("greedy_nr2", {"no_repeat_ngram_size": 2}, no_repeat_ngram_process(2)),
        ("greedy_rp15", {"repetition_penalty": 1.5}, repetition_penalty_process(1.5)),
    ):
        new, rec = processed_greedy_reference(model, tok, pixels, ids, mask, hf_kwargs, process)
        tensors[f"{key}.ids"] = torch.tensor(new, dtype=torch.int64)
        refjson[key] = rec

    # a prompt whose greedy continuation ends with <|endofchunk|> (same two images)
    sp = fx["stop_prompt"]
    senc = tok(sp, return_tensors="pt")
    sids, smask = senc["input_ids"], senc["attention_mask"]
    assert int((sids == model.media_token_id).sum()) == NUM_IMAGES
    sgen, ssteps, smodes = greedy_decode(model, pixels, sids, smask, MAX_NEW_TOKENS)
    assert all(smodes)
    sgen = sgen[0].tolist()
    assert eoc_id in sgen, ("stop prompt does not reach <|endofchunk|>", sp, sgen)
    sstop = sgen.index(eoc_id)
    s_until = sgen[: sstop + 1]
    smargin = top2_margin(ssteps[: sstop + 1, 0, :])
    assert smargin > 1e-2, smargin
    with torch.no_grad():
        shf = model.generate(
            vision_x=pixels, lang_x=sids, attention_mask=smask, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False
        )
    assert shf[0, sids.shape[1]:].tolist() == s_until, (shf[0].tolist(), s_until)
    tensors["stop.input_ids"] = i64(sids)
    tensors["stop.greedy.ids"] = torch.tensor(s_until, dtype=torch.int64)
    refjson["stop"] = {
        "prompt": sp,
        "input_ids": sids[0].tolist(),
        "input_tokens": tok.convert_ids_to_tokens(sids[0].tolist()),
        "pixels": "input.pixels (the main case's two images); attention mask all ones",
        "greedy_ids": s_until,
        "greedy_text": tok.decode(s_until, skip_special_tokens=False),
        "stop_index": sstop,
        "greedy_ids_without_stop": sgen,
        "min_top2_logit_margin": round(smargin, 6),
        "verified": "greedy_ids = Flamingo.generate(num_beams=1, max_new_tokens=8) output after the prompt (it stops at <|endofchunk|>, which is included)",
    }
    for lp, key in ((0.0, "beam3_lp0"), (1.0, "beam3_lp1")):
        new, rec = beam_reference(model, tok, pixels, sids, smask, lp)
        tensors[f"stop.{key}.ids"] = torch.tensor(new, dtype=torch.int64)
        refjson["stop"][key] = rec


def add_long_greedy_reference(model, tok, fx, pixels, ids, mask, gen_ids, step_logits, tensors, refjson):
    """greedy32.ids: LONG_GREEDY_TOKENS greedy tokens of the main prompt through the same explicit cached
    loop as greedy.ids (no early stop).  Checks: the first MAX_NEW_TOKENS steps equal greedy.ids /
    greedy.step_logits, every step equals a no-cache full recomputation, and (where Flamingo.generate
    runs) the tokens up to the first <|endofchunk|> equal Flamingo.generate(max_new_tokens=32)."""
    n = LONG_GREEDY_TOKENS
    eoc_id = model.eoc_token_id
    L = ids.shape[1]
    g_ids, g_steps, modes = greedy_decode(model, pixels, ids, mask, n)
    assert all(modes), "decode steps must run in cached-media mode"
    assert g_ids[0, :MAX_NEW_TOKENS].tolist() == gen_ids[0].tolist()
    dev_prefix = max_abs(g_steps[:MAX_NEW_TOKENS, 0], step_logits[:, 0])
    assert dev_prefix == 0.0, dev_prefix
    full = torch.cat([ids, g_ids[:, :-1]], dim=1)
    recompute = prompt_forward(model, pixels, full, torch.ones_like(full))[0, L - 1:, :]
    dev_cache = max_abs(recompute, g_steps[:, 0, :])
    assert dev_cache < 1e-4, f"KV-cache loop disagrees with full recomputation: {dev_cache}"
    ours = g_ids[0].tolist()
    stop_index = ours.index(eoc_id) if eoc_id in ours else None
    until_stop = ours if stop_index is None else ours[: stop_index + 1]
    verified = [
        f"the first {MAX_NEW_TOKENS} tokens and step logits are bit-identical to greedy.ids / greedy.step_logits",
        f"KV-cache loop vs no-cache recomputation of all {n} steps: max |diff| = {dev_cache:.3e}",
    ]
    if fx.get("flamingo_generate", True):
        with torch.no_grad():
            hf = model.generate(vision_x=pixels, lang_x=ids, attention_mask=mask, max_new_tokens=n, num_beams=1, do_sample=False)
        assert hf[0, L:].tolist() == until_stop, (hf[0, L:].tolist(), until_stop)
        verified.append(f"ids up to the first <|endofchunk|> == Flamingo.generate(num_beams=1, max_new_tokens={n}) output")
    srt = torch.sort(g_steps[:, 0, :].double(), dim=-1, descending=True).values
    margins = (srt[:, 0] - srt[:, 1]).tolist()
    margin = min(margins)
    if margin <= 1e-3:
        print(f"WARNING {fx['name']}: greedy32 top-2 logit margin {margin:.3e} <= 1e-3", flush=True)
    tensors["greedy32.ids"] = i64(g_ids[0])
    refjson["greedy32"] = {
        "max_new_tokens": n,
        "prompt": "the main prompt (input.input_ids, input.attention_mask) with input.pixels",
        "ids": ours,
        "text": tok.decode(ours, skip_special_tokens=False),
        "stop_index": stop_index,
        "stop_index_note": "first <|endofchunk|> among the tokens (null if none); the loop does not stop there, HF generate would",
        "min_top2_logit_margin": round(margin, 6),
        "min_top2_logit_margin_above_1e-3": margin > 1e-3,
        "top2_logit_margins": [round(m, 6) for m in margins],
        "mode": "same explicit loop as greedy: prefill in standard mode, then one token per step in cached-media mode with the KV cache",
        "verified": verified,
    }


def add_extra_markers_reference(model, tok, pixels, tensors, refjson):
    """extra_markers.*: a prompt with 3 <image> markers but only the 2 images of input.pixels, through
    the normal Flamingo forward.  Rows from the third marker on have text_time 3 > 2 images: every
    key is masked with the same constant, so after the max subtraction the softmax is uniform over all
    2 x 8 visual tokens (spec/30 §2); they are NOT zeroed (only text_time 0 rows are).  Checked: (a) in
    every cross-attention layer those rows' MaskedCrossAttention output equals to_out(mean of all
    visual values) (uniform attention, computed independently); (b) the logits of those rows differ
    from a run in which their cross-attention output is forced to zero, while earlier rows do not
    change."""
    media_id = model.media_token_id
    enc = tok(EXTRA_MARKERS_PROMPT, return_tensors="pt")
    eids, emask = enc["input_ids"], enc["attention_mask"]
    marks = (eids[0] == media_id).nonzero()[:, 0].tolist()
    assert len(marks) == 3 and pixels.shape[1] == NUM_IMAGES == 2, (marks, pixels.shape)
    m3 = marks[2]
    xattn_mods = [
        layer.gated_cross_attn_layer.attn
        for layer in model.lang_encoder._get_decoder_layers()
        if layer.gated_cross_attn_layer is not None
    ]
    assert all(isinstance(m, MaskedCrossAttention) and m.only_attend_immediate_media for m in xattn_mods)

    uniform_dev = []

    def check_uniform(mod, args, kwargs, out):
        media = args[1] if len(args) > 1 else kwargs["media"]
        flat = media.reshape(media.shape[0], -1, media.shape[-1])  # b (t n) d
        v = mod.to_kv(flat).chunk(2, dim=-1)[1]
        expected = mod.to_out(v.mean(dim=1))  # [b, dim]: every head averages its values uniformly
        uniform_dev.append(max_abs(out[:, m3:], expected[:, None, :].expand_as(out[:, m3:])))

    handles = [m.register_forward_hook(check_uniform, with_kwargs=True) for m in xattn_mods]
    try:
        logits = prompt_forward(model, pixels, eids, emask)
    finally:
        for h in handles:
            h.remove()
    assert len(uniform_dev) == len(xattn_mods) and max(uniform_dev) < 1e-5, uniform_dev

    def zero_rows(mod, args, out):
        out = out.clone()
        out[:, m3:] = 0.0
        return out

    handles = [m.register_forward_hook(zero_rows) for m in xattn_mods]
    try:
        zeroed = prompt_forward(model, pixels, eids, emask)
    finally:
        for h in handles:
            h.remove()
    effect = max_abs(logits[0, m3:], zeroed[0, m3:])
    before = max_abs(logits[0, :m3], zeroed[0, :m3])
    assert effect > 0.1, f"uniform attention of the extra-marker rows has too little effect: {effect}"
    assert before < 1e-5, before

    model.double()
    try:
        logits64 = prompt_forward(model, pixels.double(), eids, emask)
    finally:
        model.float()
    dev64 = max_abs(logits, logits64)
    assert dev64 * 10 < 2e-3, dev64

    tensors["extra_markers.input_ids"] = i64(eids)
    tensors["extra_markers.logits"] = f32(logits)
    refjson["extra_markers"] = {
        "prompt": EXTRA_MARKERS_PROMPT,
        "input_ids": eids[0].tolist(),
        "input_tokens": tok.convert_ids_to_tokens(eids[0].tolist()),
        "pixels": "input.pixels (2 images); attention mask all ones",
        "image_marker_positions": marks,
        "rows_without_an_image": f"positions {m3}..{eids.shape[1] - 1} (text_time 3 > 2 images)",
        "semantics": "normal Flamingo forward (standard mode, text_time = inclusive cumsum of <image> markers). Rows with text_time 3 match no image: every key is masked with -finfo.max, the max subtraction makes all scores 0 and the softmax is uniform over all 2 x 8 visual tokens (spec/30 §2); the row is not zeroed (only text_time 0 rows are).",
        "uniform_attention_max_abs_dev": float(f"{max(uniform_dev):.3e}"),
        "uniform_attention_note": "per cross-attention layer: MaskedCrossAttention output of those rows vs to_out(mean over all visual tokens of the values)",
        "zero_xattn_rows_max_abs_logit_change": float(f"{effect:.3e}"),
        "zero_xattn_rows_note": "max |logits - logits of a run in which the cross-attention output (before the gate) of the rows from the third marker on is set to zero in every layer|, over those rows; it must be clearly non-zero (asserted > 0.1): the uniform attention matters",
        "zero_xattn_earlier_rows_max_abs_logit_change": float(f"{before:.3e}"),
        "fp32_vs_fp64_max_abs_diff": float(f"{dev64:.3e}"),
        "tolerance": {"atol": 2e-3, "rtol": 1e-3},
    }


def make_flamingo_fixture(fx):
    name = fx["name"]
    d = OUT / name
    d.mkdir(parents=True)
    g = seed_all(fx["seed"])

    if fx["tokenizer"] == "bytelevel":
        tok, base_vocab = build_bytelevel_tokenizer()
    else:
        tok, base_vocab = build_sentencepiece_bpe_tokenizer()
    lm, info = make_lm(fx["family"], base_vocab, tok)
    hf_names = list(lm.state_dict().keys())  # names before the Flamingo wrapping
    model = build_flamingo(lm, tok, info["layers_attr"], fx["every_n"], xattn=fx.get("xattn"))
    xattn_geom = fx.get("xattn", XATTN)
    V = len(tok)
    assert model.lang_encoder.get_input_embeddings().weight.shape[0] == V
    if info.get("head_is_input_embedding"):
        assert not hasattr(model.lang_encoder, "lm_head") and model.lang_encoder.config.vocab_size == V
    elif info["tied"]:
        assert model.lang_encoder.lm_head.weight is model.lang_encoder.get_input_embeddings().weight
    else:
        assert model.lang_encoder.lm_head.weight.data_ptr() != model.lang_encoder.get_input_embeddings().weight.data_ptr()

    reinit_(model, g)
    set_gates_(model.lang_encoder)
    round_params_(model, fx["dtype"])
    model.eval()

    eoc_id = model.eoc_token_id
    media_id = model.media_token_id
    pad_id = tok.pad_token_id
    tokens = {
        "image": media_id,
        "endofchunk": eoc_id,
        "pad": pad_id,
        "bos": tok.bos_token_id if fx["tokenizer"] == "sentencepiece" else None,
        "eos": tok.eos_token_id,
    }
    for k, v in tokens.items():
        assert v is None or 0 <= v < V, (k, v)

    # ---------------- weights ----------------
    weights = export_weights(model, hf_names, info["layers_attr"], info["tied"], info["head_rename"])
    weights = {k: v.to(fx["dtype"]) for k, v in weights.items()}
    save_st(d / "model.safetensors", weights)

    # ---------------- tokenizer ----------------
    tok.backend_tokenizer.save(str(d / "tokenizer.json"), pretty=True)
    reloaded = Tokenizer.from_file(str(d / "tokenizer.json"))

    # ---------------- config.json ----------------
    lm_cfg = {"family": fx["family"]}
    lk = dict(info["lm_keys"])
    lm_cfg.update(
        hidden_size=lk.pop("hidden_size"),
        layers=lk.pop("layers"),
        heads=lk.pop("heads"),
        intermediate_size=lk.pop("intermediate_size"),
        vocab_size=V,
        max_seq_len=lk.pop("max_seq_len"),
        norm_eps=lk.pop("norm_eps"),
        tie_word_embeddings=lk.pop("tie_word_embeddings"),
    )
    lm_cfg.update(lk)
    config = {
        "format": "flamingo",
        "format_version": 1,
        "architecture": "openflamingo",
        "weights": ["model.safetensors"],
        "tokenizer": "tokenizer.json",
        "vision": {
            "kind": "clip_vit",
            "image_size": VISION["image_size"],
            "patch_size": VISION["patch_size"],
            "width": VISION["width"],
            "layers": VISION["layers"],
            "heads": VISION["heads"],
            "mlp_dim": int(VISION["width"] * VISION["mlp_ratio"]),
            "activation": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "ln_post_on_tokens": False,
        },
        "resampler": {
            "dim": VISION["width"],
            "depth": RESAMPLER["depth"],
            "heads": RESAMPLER["heads"],
            "dim_head": RESAMPLER["dim_head"],
            "num_latents": RESAMPLER["num_latents"],
            "ff_mult": RESAMPLER["ff_mult"],
            "max_num_media": None,
            "max_num_frames": None,
        },
        "cross_attention": {
            "every_n_layers": fx["every_n"],
            "heads": xattn_geom["heads"],
            "dim_head": xattn_geom["dim_head"],
            "ff_mult": xattn_geom["ff_mult"],
            "media_semantics": "current",
        },
        "language_model": lm_cfg,
        "tokens": tokens,
        "preprocess": {
            "image_size": VISION["image_size"],
            "resize": "bicubic",
            "crop": "center",
            "mean": OPENAI_CLIP_MEAN,
            "std": OPENAI_CLIP_STD,
        },
    }
    write_json(d / "config.json", config)

    # ---------------- reference: single prompt ----------------
    enc = tok(fx["prompt"], return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert reloaded.encode(fx["prompt"]).ids == ids[0].tolist(), "saved tokenizer.json disagrees"
    assert int((ids == media_id).sum()) == NUM_IMAGES
    H = VISION["image_size"]
    pixels = normalised_pixels(g, 1, NUM_IMAGES, 1, 3, H, H)

    recorder = Recorder(model, info["final_norm"](model.lang_encoder))
    ref = compute_case(model, recorder, pixels, ids, mask)
    dev64 = fp64_deviation(model, recorder, pixels, ids, mask, ref)
    recorder.remove()

    gen_ids, step_logits, modes = greedy_decode(model, pixels, ids, mask, MAX_NEW_TOKENS)
    assert all(modes), "decode steps must run in cached-media mode"
    # prefill logits == standard forward logits
    assert max_abs(step_logits[0], ref["logits"][:, -1, :]) < 1e-4, "prefill mismatch"
    # no-cache full recomputation (standard mode; text_time = cumsum = number of prompt images)
    full = torch.cat([ids, gen_ids[:, :-1]], dim=1)
    full_logits = prompt_forward(model, pixels, full, torch.ones_like(full))
    L = ids.shape[1]
    recompute = full_logits[0, L - 1:, :]
    dev_cache = max_abs(recompute, step_logits[:, 0, :])
    assert dev_cache < 1e-4, f"KV-cache loop disagrees with full recomputation: {dev_cache}"
    # cross-check against the real Flamingo.generate (HF greedy search, stops at <|endofchunk|>)
    ours = gen_ids[0].tolist()
    stop_index = ours.index(eoc_id) if eoc_id in ours else None
    ours_until_stop = ours if stop_index is None else ours[: stop_index + 1]
    if fx.get("flamingo_generate", True):
        with torch.no_grad():
            hf_out = model.generate(
                vision_x=pixels, lang_x=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False
            )
        hf_new = hf_out[0, L:].tolist()
        assert hf_new == ours_until_stop, (hf_new, ours_until_stop)

    # the cross-attention must matter: zero every attn_gate (tanh(0) = 0) and compare
    gates_backup = []
    with torch.no_grad():
        for layer in model.lang_encoder._get_decoder_layers():
            if layer.gated_cross_attn_layer is not None:
                gates_backup.append(layer.gated_cross_attn_layer.attn_gate.clone())
                layer.gated_cross_attn_layer.attn_gate.zero_()
        no_xattn = prompt_forward(model, pixels, ids, mask)
        for layer in model.lang_encoder._get_decoder_layers():
            if layer.gated_cross_attn_layer is not None:
                layer.gated_cross_attn_layer.attn_gate.copy_(gates_backup.pop(0))
    xattn_effect = max_abs(no_xattn, ref["logits"])
    assert xattn_effect > 0.1, f"cross-attention has too little effect on the logits: {xattn_effect}"
    # tokens before the first <image> have text_time 0: their attention row is zeroed, so zeroing
    # the attn gates must leave their logits bit-identical (the ungated-by-mask FF branch is kept)
    first_img = int((ids[0] == media_id).nonzero()[0])
    if first_img > 0:
        assert max_abs(no_xattn[0, :first_img], ref["logits"][0, :first_img]) == 0.0

    margin = top2_margin(step_logits[:, 0, :])
    assert margin > 1e-2, f"greedy argmax too close to a tie ({margin}); change seed/prompt"

    tensors = {
        "input.pixels": f32(pixels),
        "input.input_ids": i64(ids),
        "input.attention_mask": i64(mask),
        "vision.tokens": f32(ref["vision.tokens"]),
        "resampler.out": f32(ref["resampler.out"]),
        "hidden.embed": f32(ref["hidden.embed"]),
        "hidden.final": f32(ref["hidden.final"]),
        "logits": f32(ref["logits"]),
        "greedy.ids": i64(gen_ids[0]),
        "greedy.step_logits": f32(step_logits[:, 0, :]),
    }
    n_layers = len(model.lang_encoder._get_decoder_layers())
    for i in range(n_layers):
        tensors[f"hidden.{i}"] = f32(ref[f"hidden.{i}"])
        if f"xattn.{i}" in ref:
            tensors[f"xattn.{i}"] = f32(ref[f"xattn.{i}"])
    xattn_layers = [i for i in range(n_layers) if f"xattn.{i}" in ref]
    assert xattn_layers == [i for i in range(n_layers) if (i + 1) % fx["every_n"] == 0]

    refjson = {
        "fixture": name,
        "prompt": fx["prompt"],
        "input_ids": ids[0].tolist(),
        "input_tokens": tok.convert_ids_to_tokens(ids[0].tolist()),
        "num_images": NUM_IMAGES,
        "image_token_id": media_id,
        "endofchunk_token_id": eoc_id,
        "xattn_layers": xattn_layers,
        "gates": {
            str(i): {
                "attn_gate": float(model.lang_encoder._get_decoder_layers()[i].gated_cross_attn_layer.attn_gate),
                "ff_gate": float(model.lang_encoder._get_decoder_layers()[i].gated_cross_attn_layer.ff_gate),
            }
            for i in xattn_layers
        },
        "weights_dtype": fx["st_dtype"],
        "xattn_effect_max_abs_logit_change": float(f"{xattn_effect:.3e}"),
        "greedy": {
            "max_new_tokens": MAX_NEW_TOKENS,
            "ids": ours,
            "text": tok.decode(ours, skip_special_tokens=False),
            "text_skip_special": tok.decode(ours, skip_special_tokens=True),
            "eos_token_id": eoc_id,
            "stop_index": stop_index,
            "ids_until_stop": ours_until_stop,
            "min_top2_logit_margin": round(margin, 6),
            "mode": "prefill in standard mode, then cached-media mode: each new token attends to the last prompt image",
            "verified": [
                "step_logits[0] == logits[0, -1] of the standard forward",
                f"KV-cache loop vs no-cache recomputation: max |diff| = {dev_cache:.3e}",
            ]
            + (
                ["ids_until_stop == open_flamingo Flamingo.generate(num_beams=1, max_new_tokens=8) output"]
                if fx.get("flamingo_generate", True)
                else []
            ),
        },
        "fp32_vs_fp64_max_abs_diff": {k: float(f"{v:.3e}") for k, v in sorted(dev64.items())},
        "tolerances": TOLERANCES,
    }

    # ---------------- batch case (left padding, different image counts) ----------------
    if "batch_prompts" in fx:
        tok.padding_side = "left"
        benc = tok(fx["batch_prompts"], return_tensors="pt", padding="longest")
        bids, bmask = benc["input_ids"], benc["attention_mask"]
        assert (bmask == 0).any(), "batch case must contain left padding"
        # rotary LMs: position ids derived from the mask (mpt_tiny: ALiBi, no position ids)
        rotary = fx["family"] in ("gpt_neox", "llama")
        if "batch_seed" in fx:
            # batch cases added after the first release draw their images from their own stream, so
            # every earlier tensor of the fixture stays byte-identical
            bg = torch.Generator()
            bg.manual_seed(fx["batch_seed"])
        else:
            bg = g
        bpix = normalised_pixels(bg, len(fx["batch_prompts"]), NUM_IMAGES, 1, 3, H, H)
        for row, n_img in enumerate(fx["batch_images"]):
            assert int((bids[row] == media_id).sum()) == n_img
            bpix[row, n_img:] = 0.0  # missing images are zero tensors (eval _prepare_images)
        if rotary:
            bpos = mask_position_ids(bmask)
            bref = {"logits": prompt_forward_pos(model, bpix, bids, bmask, bpos)}
        else:
            bpos = None
            recorder = Recorder(model, info["final_norm"](model.lang_encoder))
            bref = compute_case(model, recorder, bpix, bids, bmask)
            recorder.remove()
        # (no float64 re-run here: HF MPT masks with finfo(float64).min and softmaxes in float32,
        # so the fully masked pad rows become NaN in float64 and leak into real rows via 0*NaN.)
        bgen, bsteps, bmodes = greedy_decode(model, bpix, bids, bmask, MAX_NEW_TOKENS, position_ids=bpos)
        assert all(bmodes)
        bmargin = top2_margin(bsteps)
        assert bmargin > 1e-2, bmargin
        bextra = {} if bpos is None else {"position_ids": bpos}
        with torch.no_grad():
            bhf = model.generate(
                vision_x=bpix, lang_x=bids, attention_mask=bmask, max_new_tokens=MAX_NEW_TOKENS, num_beams=1, do_sample=False,
                **bextra,
            )
        for row in range(bids.shape[0]):
            mine = bgen[row].tolist()
            upto = mine.index(eoc_id) + 1 if eoc_id in mine else len(mine)
            assert bhf[row, bids.shape[1]:][:upto].tolist() == mine[:upto], (row, bhf[row].tolist(), mine)
        if rotary:
            # transformers 5 generate() derives position ids from the mask only when the model's
            # forward signature names `position_ids`; FlamingoLMMixin.forward(input_ids,
            # attention_mask, **kwargs) hides it, so plain Flamingo.generate numbers pad positions
            # too (0..L-1).  Record what that gives (transformers 4 derived them in the LMs'
            # prepare_inputs_for_generation, which is what the reference above follows).
            with torch.no_grad():
                bhf_plain = model.generate(
                    vision_x=bpix, lang_x=bids, attention_mask=bmask, max_new_tokens=MAX_NEW_TOKENS, num_beams=1,
                    do_sample=False,
                )
            plain_rows = [bhf_plain[row, bids.shape[1]:].tolist() for row in range(bids.shape[0])]
            plain_same = all(
                pr[: (pr.index(eoc_id) + 1 if eoc_id in pr else len(pr))] == gr[: (pr.index(eoc_id) + 1 if eoc_id in pr else len(pr))]
                for pr, gr in zip(plain_rows, bgen.tolist())
            )
            plain_logits = prompt_forward(model, bpix, bids, bmask)  # positions 0..L-1, pads counted
            plain_dev = max_abs(plain_logits[bmask.bool()], bref["logits"][bmask.bool()])
        assert max_abs(bsteps[0], bref["logits"][:, -1, :]) < 1e-4, max_abs(bsteps[0], bref["logits"][:, -1, :])
        # each row alone (no padding) must give the same logits at its real positions
        for row in range(bids.shape[0]):
            real = bmask[row].bool()
            sid = bids[row][real][None]
            n_img = fx["batch_images"][row]
            single = prompt_forward(model, bpix[row : row + 1, :n_img], sid, torch.ones_like(sid))
            dev = max_abs(single[0], bref["logits"][row][real])
            assert dev < 1e-4, f"batch row {row} differs from the unpadded run: {dev}"
        tensors.update(
            {
                "batch.pixels": f32(bpix),
                "batch.input_ids": i64(bids),
                "batch.attention_mask": i64(bmask),
                "batch.logits": f32(bref["logits"]),
                "batch.greedy.ids": i64(bgen),
            }
        )
        refjson["batch"] = {
            "prompts": fx["batch_prompts"],
            "images_per_row": fx["batch_images"],
            "padding_side": "left",
            "input_ids": bids.tolist(),
            "attention_mask": bmask.tolist(),
            "greedy_ids": bgen.tolist(),
            "greedy_note": f"{MAX_NEW_TOKENS} greedy steps per row, no early stop; the attention mask grows by one 1 per step; equal to Flamingo.generate (left-padded batch) up to each row's first <|endofchunk|>",
            "greedy_min_top2_logit_margin": round(bmargin, 6),
            "logits_note": "compare only positions with attention_mask == 1 (pad rows are fully masked; their values are implementation artefacts)",
        }
        if rotary:
            refjson["batch"].update(
                {
                    "position_ids": bpos.tolist(),
                    "position_ids_note": "prefill position ids = cumsum(attention_mask) - 1 with 0 at pad positions (transformers generate(); the pad value never reaches a real token); each decode step uses the row's last position + 1. batch.logits and batch.greedy.ids use them, so each row equals its unpadded single-row run.",
                    "flamingo_generate_without_position_ids": plain_rows,
                    "flamingo_generate_without_position_ids_same_tokens": plain_same,
                    "positions_from_0_with_pads_max_abs_logit_diff": float(f"{plain_dev:.3e}"),
                    "flamingo_generate_without_position_ids_note": "plain Flamingo.generate under transformers 5 does not derive position ids (FlamingoLMMixin.forward's signature hides position_ids), so a padded row's real tokens get positions shifted by its pad count. Rotary attention depends only on position differences, so that shift changes the real positions' logits only by rounding (positions_from_0_with_pads_max_abs_logit_diff, prefill) and gives the same tokens here. The reference uses the mask-derived ids and equals Flamingo.generate(..., position_ids=<mask-derived>) up to each row's first <|endofchunk|>. An engine must at least keep prefill and decode positions consistent (decode position = last prefill position + step).",
                }
            )

    # ---------------- beam search, logits processors, stop on <|endofchunk|> ----------------
    if fx.get("flamingo_generate", True):
        add_generation_references(model, tok, fx, pixels, ids, mask, tensors, refjson)

    # ---------------- added later: longer greedy, more <image> markers than images ----------------
    # (no random numbers: every earlier tensor and field stays byte-identical)
    add_long_greedy_reference(model, tok, fx, pixels, ids, mask, gen_ids, step_logits, tensors, refjson)
    add_extra_markers_reference(model, tok, pixels, tensors, refjson)
    if fx["family"] == "mosaic_gpt":
        mosaic = load_mosaic_gpt()
        refjson["mosaic_gpt"] = {
            "code": f"mosaicml/examples tag {MOSAIC_EXAMPLES_TAG} (commit {MOSAIC_EXAMPLES_COMMIT}): "
            + ", ".join(sorted(MOSAIC_FILES)),
            "classes": "examples.llm.src.models.mosaic_gpt.mosaic_gpt.MosaicGPT + MosaicGPTConfig, layers.gpt_blocks.GPTBlock, layers.attention.MultiheadAttention (attn_impl torch)",
            "config": {k: getattr(model.lang_encoder.config, k) for k in (
                "d_model", "n_heads", "n_layers", "mlp_ratio", "max_seq_len", "vocab_size", "attn_impl", "attn_qk_ln",
                "attn_clip_qkv", "softmax_scale", "alibi", "alibi_bias_max", "no_bias", "logit_scale",
                "embedding_fraction", "low_precision_layernorm", "prefix_lm", "attn_uses_sequence_id")},
            "alibi_slopes": info["alibi_slopes"],
            "alibi_slopes_note": "attention.alibi_bias: slope_h = 2^(-h*alibi_bias_max/n_heads), h = 1..n_heads (checked); the bias added is slope_h*(j-(S_k-1)) for key j",
            "stubbed_imports": "composer (LPLayerNorm, metrics, HuggingFaceModel) and omegaconf: used only by ComposerMosaicGPT (training wrapper) and low_precision_layernorm=True; stubs raise if instantiated. low_precision_layernorm=False (nn.LayerNorm) equals composer's LPLayerNorm outside autocast; everything runs in fp32 without autocast",
            "flamingo_wrapping": "open_flamingo factory's MPT-1B hack (get_input_embeddings / set_input_embeddings = transformer.wte) mixed in before FlamingoLMMixin, as in create_model_and_transforms; decoder_layers_attr_name transformer.blocks",
            "forward": "Flamingo.forward's steps (_encode_vision_x, _condition_media_locations, lang_encoder(input_ids, attention_mask.bool()), clear) because MosaicGPT v0.0.4's forward takes no `labels` (Flamingo.forward always passes labels=None) and needs a bool mask; the KV cache is MosaicGPT's list of per-layer (k, v) passed as past_key_values",
            "not_available": "Flamingo.generate (transformers 5's PreTrainedModel no longer includes GenerationMixin; MosaicGPT v0.0.4 does not inherit it), hence no beam / logits-processor / stop / batch references; greedy is verified against the no-cache recomputation only",
            "xattn_geometry_note": f"gated cross-attention blocks rebuilt (same class) with heads {MOSAIC_XATTN['heads']} x dim_head {MOSAIC_XATTN['dim_head']}, ff_mult {MOSAIC_XATTN['ff_mult']} (open_flamingo's init_flamingo always uses {XATTN['heads']} x {XATTN['dim_head']}, ff_mult {XATTN['ff_mult']}) to keep the fixture small; config.json cross_attention records it",
        }

    # sanity: the fp32 reference is far more precise than the tolerances we hand out
    for k, v in dev64.items():
        t = tol_for(k)
        if isinstance(t, dict):
            assert v * 10 < t["atol"] + 1e-12, (k, v, t)

    save_st(d / "reference.safetensors", tensors)
    refjson["tensors"] = {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sorted(tensors.items())}
    write_json(d / "reference.json", refjson)
    return weights, config


# ---------------------------------------------------------------------------------------------
# NFNet (timm NormFreeNet, dm_nfnet code path)
# ---------------------------------------------------------------------------------------------


def make_nfnet_fixture():
    from timm.models.nfnet import NormFreeNet, _dm_nfnet_cfg

    name = "nfnet_tiny"
    d = OUT / name
    d.mkdir(parents=True)
    g = seed_all(4004)
    # dm_nfnet_f* recipe (deep_quad stem, GELU with gamma in the activation, ScaledStdConv2dSame,
    # SE after conv3 with gain 2, extra 3x3 conv, skipinit gains, final 1x1 conv to 2x last width)
    # shrunk: stem 16 ch, stages (32, 64, 96, 128), depths (1, 2, 1, 1), group size 8.
    cfg = dataclasses.replace(
        _dm_nfnet_cfg(depths=(1, 2, 1, 1), channels=(32, 64, 96, 128)),
        stem_chs=16,
        group_size=8,
        num_features=256,
    )
    model = NormFreeNet(cfg, num_classes=0).eval()
    reinit_(model, g)
    # skipinit gains must be non-zero (timm inits them to 0, which would hide the residual branch)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("skipinit_gain"):
                p.copy_(torch.tensor(0.5) + randn(g, std=0.2))
    sd = model.state_dict()
    save_st(d / "model.safetensors", {k: v.to(torch.float32) for k, v in sd.items()})

    H = 48  # odd stage sizes 12 -> 6 -> 3 -> 2: asymmetric TF-SAME padding and ceil-mode avg pool
    pixels = normalised_pixels(g, 2, 3, H, H, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    inter = {}
    hooks = [model.stem.register_forward_hook(lambda m, i, o: inter.__setitem__("stem", o.clone()))]
    for si, st in enumerate(model.stages):
        hooks.append(st.register_forward_hook(lambda m, i, o, si=si: inter.__setitem__(f"stages.{si}", o.clone())))
    with torch.no_grad():
        feats = model.forward_features(pixels)
        for h in hooks:
            h.remove()
        model.double()
        feats64 = model.forward_features(pixels.double())
        model.float()
    dev = max_abs(feats, feats64)
    tensors = {"input.pixels": f32(pixels), "features": f32(feats)}
    assert sorted(inter) == ["stages.0", "stages.1", "stages.2", "stages.3", "stem"], sorted(inter)
    tensors.update({k: f32(v) for k, v in inter.items()})
    save_st(d / "reference.safetensors", tensors)

    blocks = []
    for si, st in enumerate(model.stages):
        for bi, b in enumerate(st):
            blocks.append(
                {
                    "name": f"stages.{si}.{bi}",
                    "in_chs": b.conv1.in_channels,
                    "out_chs": b.conv3.out_channels,
                    "mid_chs": b.conv1.out_channels,
                    "groups": b.conv2.groups,
                    "stride": b.conv2.stride[0],
                    "transition": b.downsample is not None,
                    "downsample_pool": (b.downsample is not None and not isinstance(b.downsample.pool, nn.Identity)),
                    "alpha": b.alpha,
                    "beta": b.beta,
                    "attn_gain": b.attn_gain,
                    "se_rd_chs": b.attn_last.fc1.out_channels,
                }
            )
    config = {
        "format": "timm-nfnet-reference",
        "format_version": 1,
        "note": "not a loadable flamingo model; timm NormFreeNet built as NormFreeNet(cfg, num_classes=0) with the cfg below (timm.models.nfnet._dm_nfnet_cfg(depths=(1,2,1,1), channels=(32,64,96,128)) with stem_chs=16, group_size=8, num_features=256), random weights",
        "timm_version": timm.__version__,
        "nfcfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()},
        "activation": "gelu (exact erf) * gamma",
        "gamma": 1.7015043497085571,
        "conv": "ScaledStdConv2dSame (TF SAME padding, weight standardisation eps 1e-5, gain per output channel, bias)",
        "stem": {"type": "deep_quad", "channels": [2, 4, 8, 16], "strides": [2, 1, 1, 2], "kernel": 3},
        "blocks": blocks,
        "final_conv": {"in_chs": 128, "out_chs": model.num_features},
        "image_size": H,
        "preprocess": {"mean": IMAGENET_MEAN, "std": IMAGENET_STD},
        "reference": {
            "features": "model.forward_features(input.pixels): stem -> stages -> final_conv -> final_act, NCHW",
            "stem": "output of model.stem (no activation after the last stem conv)",
            "stages.{i}": "output of stage i",
            "fp32_vs_fp64_max_abs_diff": float(f"{dev:.3e}"),
            "tolerances": {"features": {"atol": 1e-4, "rtol": 1e-4}, "stages.*": {"atol": 1e-4, "rtol": 1e-4}},
        },
        "tensors": {k: {"dtype": "float32", "shape": list(v.shape)} for k, v in sorted(tensors.items())},
    }
    write_json(d / "config.json", config)
    assert dev * 10 < 1e-4, dev
    return sd


# ---------------------------------------------------------------------------------------------


OWN_DIRS = ["mpt_tiny", "gpt_neox_tiny", "llama_tiny", "mosaic_gpt_tiny", "nfnet_tiny"]


def main():
    # Only this generator's own outputs are replaced: other generators (make_image_goldens.py, ...)
    # write next to them under Tests/Fixtures/.
    assert [fx["name"] for fx in FIXTURES] + ["nfnet_tiny"] == OWN_DIRS
    load_mosaic_gpt()  # fails (before anything is deleted) if the mosaicml/examples copy is missing
    OUT.mkdir(parents=True, exist_ok=True)
    for name in OWN_DIRS:
        if (OUT / name).exists():
            shutil.rmtree(OUT / name)
    if (OUT / "MANIFEST.json").exists():
        (OUT / "MANIFEST.json").unlink()
    for fx in FIXTURES:
        make_flamingo_fixture(fx)
        print(f"built {fx['name']}", flush=True)
    make_nfnet_fixture()
    print("built nfnet_tiny", flush=True)

    manifest = {
        "generator": "tools/reference/make_fixtures.py",
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "open_flamingo": importlib.metadata.version("open_flamingo"),
            "open_clip_torch": importlib.metadata.version("open_clip_torch"),
            "transformers": transformers.__version__,
            "timm": timm.__version__,
            "tokenizers": tokenizers.__version__,
            "safetensors": safetensors.__version__,
            "numpy": np.__version__,
            "mosaicml_examples": f"{MOSAIC_EXAMPLES_TAG} ({MOSAIC_EXAMPLES_COMMIT})",
        },
        "files": {},
    }
    total = 0
    for p in sorted(q for name in OWN_DIRS for q in (OUT / name).rglob("*")):
        if p.is_file():
            rel = p.relative_to(OUT).as_posix()
            manifest["files"][rel] = {"bytes": p.stat().st_size, "sha256": sha256(p)}
            total += p.stat().st_size
    manifest["total_bytes"] = total
    write_json(OUT / "MANIFEST.json", manifest)
    assert total < 10 * 1024 * 1024, total
    print(f"total {total} bytes in {len(manifest['files'])} files")
    everything = sum(q.stat().st_size for q in OUT.rglob("*") if q.is_file())
    print(f"Tests/Fixtures as a whole (all generators): {everything} bytes")


if __name__ == "__main__":
    main()
