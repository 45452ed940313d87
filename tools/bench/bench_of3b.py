"""CPU benchmark at OpenFlamingo-3B geometry: libflamingo next to the PyTorch reference.

    /work/refenv/bin/python tools/bench/bench_of3b.py [--dir build/bench/of3b] [--decode 16]

Not a test. Builds (once) a random-weight model with the REAL classes at OpenFlamingo-3B geometry
(open_clip ViT-L/14 at 224, PerceiverResampler 6 layers x 64 latents, an MPT with MPT-1B dimensions:
d_model 2048, 24 layers, 16 heads, vocab 50280, cross-attention before every layer), writes it as a
flamingo model directory (f32), then times, each in its own process so peak RSS is its own:

  * PyTorch (open_flamingo 2.0.1 + transformers, fp32, no autocast) loading those same weights;
  * libflamingo through its C ABI (ctypes; FLAMINGO_LIBRARY or build/libflamingo.so.1).

Work measured (medians): encoding 3 images; prefill of 3 images + 64 text tokens; decode per token
over the KV cache (greedy). Prints a table with ratios engine/PyTorch and the floors: weight bytes
read per decode token over the measured streaming read bandwidth, and prefill / encode FLOPs over
the measured sgemm rate.

MPT-1B itself is MosaicGPT (QK-LayerNorm, not in transformers); transformers' MptForCausalLM with
the same dimensions has the same matrix shapes, which is what the timing depends on.
"""

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES, PROMPT, THREADS = 3, 64, 2


def vision_config():
    return dict(image_size=224, patch_size=14, width=1024, layers=24, heads=16, mlp_ratio=4.0, output_dim=768)


def lm_config():
    return dict(d_model=2048, n_heads=16, n_layers=24, vocab=50280)


def build_torch_model():
    """The OF-3B-geometry Flamingo from the real classes, default (random) init."""
    import torch
    sys.path.insert(0, str(REPO / "tools" / "reference"))
    import make_fixtures as mf  # the transformers-5 workaround and the name mapping live there
    from open_clip.transformer import QuickGELU, VisionTransformer
    from transformers import MptConfig, MptForCausalLM
    from open_flamingo.src.flamingo import Flamingo
    from open_flamingo.src.flamingo_lm import FlamingoLMMixin
    from open_flamingo.src.utils import extend_instance

    torch.manual_seed(0)
    v, l = vision_config(), lm_config()
    visual = VisionTransformer(image_size=v["image_size"], patch_size=v["patch_size"], width=v["width"],
                               layers=v["layers"], heads=v["heads"], mlp_ratio=v["mlp_ratio"],
                               output_dim=v["output_dim"], act_layer=QuickGELU, output_tokens=True)
    cfg = MptConfig(d_model=l["d_model"], n_heads=l["n_heads"], n_layers=l["n_layers"], expansion_ratio=4,
                    max_seq_len=2048, vocab_size=l["vocab"], no_bias=True, tie_word_embeddings=True,
                    attn_config=dict(alibi=True, alibi_bias_max=8))
    cfg._attn_implementation = "eager"
    lm = MptForCausalLM(cfg)
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("transformer.blocks")
    model = Flamingo(mf._CLIPVisualHolder(visual), lm, eoc_token_id=l["vocab"] - 3, media_token_id=l["vocab"] - 2,
                     vis_dim=v["width"], cross_attn_every_n_layers=1)
    with torch.no_grad():
        for i, blk in enumerate(model.lang_encoder.gated_cross_attn_layers):
            blk.attn_gate.fill_(0.5 if i % 2 else -0.5)
            blk.ff_gate.fill_(0.3)
    return model.eval().requires_grad_(False), mf


def make_model_dir(out: Path):
    import torch
    from safetensors.torch import save_file
    model, mf = build_torch_model()
    # The LM's original (unwrapped) Hugging Face names, as export_weights expects.
    hf_names = sorted({k.replace(".decoder_layer.", ".") for k in model.lang_encoder.state_dict()
                       if not k.startswith(("old_decoder_blocks.", "gated_cross_attn_layers."))
                       and ".gated_cross_attn_layer." not in k})
    tensors = mf.export_weights(model, hf_names=hf_names, layers_attr="transformer.blocks", tied=True, head_rename={})
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(out / "model.safetensors"))
    v, l = vision_config(), lm_config()
    config = {
        "format": "flamingo", "format_version": 1, "architecture": "openflamingo",
        "vision": {"kind": "clip_vit", "image_size": 224, "patch_size": 14, "width": 1024, "layers": 24,
                   "heads": 16, "mlp_dim": 4096, "activation": "quick_gelu"},
        "resampler": {"dim": 1024, "depth": 6, "heads": 8, "dim_head": 64, "num_latents": 64},
        "cross_attention": {"every_n_layers": 1, "heads": 8, "dim_head": 64},
        "language_model": {"family": "mpt", "hidden_size": 2048, "layers": 24, "heads": 16,
                           "intermediate_size": 8192, "vocab_size": l["vocab"], "max_seq_len": 2048},
        "tokens": {"image": l["vocab"] - 2, "endofchunk": l["vocab"] - 3, "pad": l["vocab"] - 1, "eos": 0},
        "preprocess": {"image_size": 224, "mean": [0.48145466, 0.4578275, 0.40821073],
                       "std": [0.26862954, 0.26130258, 0.27577711]},
    }
    (out / "config.json").write_text(json.dumps(config, indent=2))


def inputs(vocab):
    """Deterministic pixels [3,3,224,224] and a 64-token prompt with 3 <image> markers."""
    import random
    rng = random.Random(1)
    pixels = [rng.uniform(-1.8, 2.1) for _ in range(IMAGES * 3 * 224 * 224)]
    image, text = vocab - 2, [rng.randrange(1, vocab - 3) for _ in range(PROMPT)]
    for k, pos in enumerate((0, 21, 42)):
        text[pos] = image
    return pixels, text


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_torch(model_dir: Path, decode: int):
    import torch
    from safetensors.torch import load_file
    torch.set_num_threads(THREADS)
    warm_page_cache(model_dir / "model.safetensors")
    model, _ = build_torch_model()
    weights = load_file(str(model_dir / "model.safetensors"))
    with torch.no_grad():  # same weights as the engine reads
        for k, t in model.vision_encoder.state_dict().items():
            if "vision_encoder." + k in weights:
                t.copy_(weights["vision_encoder." + k])
        for k, t in model.perceiver.state_dict().items():
            t.copy_(weights["perceiver." + k])
        for k, t in model.lang_encoder.state_dict().items():
            name = "lang_encoder." + k.replace(".decoder_layer.", ".")
            if name in weights:
                t.copy_(weights[name])
    del weights
    pixels, text = inputs(lm_config()["vocab"])
    vision_x = torch.tensor(pixels).view(1, IMAGES, 1, 3, 224, 224)
    ids = torch.tensor([text])
    mask = torch.ones_like(ids)
    lm = model.lang_encoder
    out = {}
    with torch.no_grad():
        t = []
        for _ in range(3):
            s = time.perf_counter(); model._encode_vision_x(vision_x=vision_x); t.append(time.perf_counter() - s)
        out["encode_ms"] = statistics.median(t[1:]) * 1e3
        t = []
        for _ in range(3):
            lm.clear_conditioned_layers()
            lm._use_cached_vision_x = True
            s = time.perf_counter()
            model._encode_vision_x(vision_x=vision_x)
            res = lm(input_ids=ids, attention_mask=mask, use_cache=True)
            t.append(time.perf_counter() - s)
        out["prefill_ms"] = statistics.median(t[1:]) * 1e3
        cache, logits, steps = res.cache, res.logits[:, -1, :], []
        for _ in range(decode):
            nxt = logits.argmax(-1, keepdim=True)
            mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
            s = time.perf_counter()
            res = lm(input_ids=nxt, attention_mask=mask, cache=cache, use_cache=True)
            steps.append(time.perf_counter() - s)
            cache, logits = res.cache, res.logits[:, -1, :]
        out["decode_ms"] = statistics.median(steps[2:]) * 1e3
        # sgemm rate of this process, for the FLOP floors
        a = torch.randn(2048, 2048); b = torch.randn(2048, 2048); a @ b
        s = time.perf_counter(); [a @ b for _ in range(5)]; out["sgemm_gflops"] = 5 * 2 * 2048 ** 3 / (time.perf_counter() - s) / 1e9
        big = torch.randn(512 * 1024 * 1024 // 4 * 4)  # 2 GiB
        big.sum(); s = time.perf_counter(); big.sum(); out["read_gbps"] = big.numel() * 4 / (time.perf_counter() - s) / 1e9
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def warm_page_cache(path: Path):
    """Reads the weights once so both sides start from the page cache (the previous phase's
    process may have evicted them; disk reads would otherwise be timed)."""
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def run_engine(model_dir: Path, decode: int):
    warm_page_cache(model_dir / "model.safetensors")
    lib_path = os.environ.get("FLAMINGO_LIBRARY") or str(REPO / "build" / "libflamingo.so.1")
    lib = ctypes.CDLL(lib_path)
    P, c_size = ctypes.c_void_p, ctypes.c_size_t
    lib.flamingo_last_error.restype = ctypes.c_char_p
    for name, args in [("flamingo_model_load", [ctypes.c_char_p, P, ctypes.POINTER(P)]),
                       ("flamingo_session_init", [P, P, ctypes.POINTER(P)]),
                       ("flamingo_model_encode_images", [P, P, c_size, P, c_size]),
                       ("flamingo_session_set_media", [P, P, c_size]),
                       ("flamingo_session_eval", [P, P, c_size, ctypes.c_uint32, P, c_size]),
                       ("flamingo_session_truncate", [P, c_size])]:
        getattr(lib, name).argtypes = args
        getattr(lib, name).restype = ctypes.c_int32

    def check(rc):
        if rc != 0:
            raise RuntimeError(lib.flamingo_last_error().decode())

    model, session = P(), P()
    check(lib.flamingo_model_load(str(model_dir).encode(), None, ctypes.byref(model)))
    check(lib.flamingo_session_init(model, None, ctypes.byref(session)))
    vocab = lm_config()["vocab"]
    pixels, text = inputs(vocab)
    pix = (ctypes.c_float * len(pixels))(*pixels)
    visual = (ctypes.c_float * (IMAGES * 64 * 1024))()
    logits = (ctypes.c_float * vocab)()
    ids = (ctypes.c_int32 * len(text))(*text)
    out, t = {}, []
    for _ in range(3):
        s = time.perf_counter(); check(lib.flamingo_model_encode_images(model, pix, IMAGES, visual, len(visual))); t.append(time.perf_counter() - s)
    out["encode_ms"] = statistics.median(t[1:]) * 1e3
    t = []
    for _ in range(3):
        check(lib.flamingo_session_truncate(session, 0))
        s = time.perf_counter()
        check(lib.flamingo_model_encode_images(model, pix, IMAGES, visual, len(visual)))
        check(lib.flamingo_session_set_media(session, visual, IMAGES))
        check(lib.flamingo_session_eval(session, ids, len(text), 0, logits, vocab))
        t.append(time.perf_counter() - s)
    out["prefill_ms"] = statistics.median(t[1:]) * 1e3
    steps = []
    for _ in range(decode):
        nxt = max(range(vocab), key=logits.__getitem__)
        one = (ctypes.c_int32 * 1)(nxt)
        s = time.perf_counter(); check(lib.flamingo_session_eval(session, one, 1, 0, logits, vocab)); steps.append(time.perf_counter() - s)
    out["decode_ms"] = statistics.median(steps[2:]) * 1e3
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=str(REPO / "build" / "bench" / "of3b"))
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--phase", choices=["all", "make", "torch", "engine"], default="all")
    a = ap.parse_args()
    d = Path(a.dir)
    if a.phase == "make":
        make_model_dir(d); return
    if a.phase in ("torch", "engine"):
        print(json.dumps((run_torch if a.phase == "torch" else run_engine)(d, a.decode))); return
    if not (d / "model.safetensors").exists():
        print(f"writing the random-weight model to {d} ...", file=sys.stderr)
        subprocess.run([sys.executable, __file__, "--phase", "make", "--dir", str(d)], check=True)

    def phase(name):
        r = subprocess.run([sys.executable, __file__, "--phase", name, "--dir", str(d), "--decode", str(a.decode)],
                           check=True, capture_output=True, text=True)
        return json.loads(r.stdout.strip().splitlines()[-1])

    engine, torch_ = phase("engine"), phase("torch")
    header = json.loads((d / "model.safetensors").open("rb").read(8 + int.from_bytes((d / "model.safetensors").open("rb").read(8), "little"))[8:])
    total = sum(e["data_offsets"][1] - e["data_offsets"][0] for k, e in header.items() if k != "__metadata__")
    decode_bytes = sum(e["data_offsets"][1] - e["data_offsets"][0] for k, e in header.items()
                       if k.startswith("lang_encoder.") and k != "__metadata__")
    vit_flops = 2 * 303e6 * 257 * IMAGES
    lm_flops = 2 * decode_bytes / 4 * PROMPT
    floors = {"encode_ms": vit_flops / (torch_["sgemm_gflops"] * 1e9) * 1e3,
              "prefill_ms": (vit_flops + lm_flops) / (torch_["sgemm_gflops"] * 1e9) * 1e3,
              "decode_ms": decode_bytes / (torch_["read_gbps"] * 1e9) * 1e3}
    print(f"OpenFlamingo-3B geometry, fp32, {THREADS} threads; weights {total / 2**30:.2f} GiB "
          f"(decode reads {decode_bytes / 2**30:.2f} GiB/token); sgemm {torch_['sgemm_gflops']:.0f} GFLOP/s, "
          f"read {torch_['read_gbps']:.1f} GB/s (measured in the PyTorch process)")
    print(f"{'':<34}{'libflamingo':>12}{'PyTorch':>12}{'ratio':>8}{'floor':>10}")
    for key, label in [("encode_ms", f"encode {IMAGES} images (ms)"), ("prefill_ms", f"prefill {IMAGES} img + {PROMPT} tok (ms)"),
                       ("decode_ms", "decode (ms/token)")]:
        print(f"{label:<34}{engine[key]:>12.1f}{torch_[key]:>12.1f}{engine[key] / torch_[key]:>8.2f}{floors[key]:>10.1f}")
    print(f"{'peak RSS (MiB)':<34}{engine['peak_rss_mb']:>12.0f}{torch_['peak_rss_mb']:>12.0f}"
          f"{engine['peak_rss_mb'] / torch_['peak_rss_mb']:>8.2f}{total / 2**20:>10.0f}  (floor: weight bytes)")


if __name__ == "__main__":
    main()
