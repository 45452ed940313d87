#!/usr/bin/env python3
"""Text-only decode at equal bits: libflamingo's q8/q4 next to llama.cpp's Q8_0/Q4_0 (docs/benchmarks.md).

    python tools/bench/bench_llamacpp.py [--cli build/prefix/bin/flamingo] [--dir build/bench/llamacpp]
                                         [--types q8,q4] [--runs 3] [--decode 32]

Not a test. Needs `llama-cpp-python` (built on this machine, native flags) and `gguf` from PyPI:
    python -m venv /work/llenv && CMAKE_ARGS=-DGGML_NATIVE=ON /work/llenv/bin/pip install llama-cpp-python gguf numpy
and runs under that interpreter.

The language model is LLaMA-7B-shaped (d 4096, 32 layers, 32 heads, FFN 11008, vocabulary 32000,
untied output head) with random weights, written once per type:
  * for llama.cpp as GGUF with the `gguf` package: every matrix (output head included) in Q8_0 or
    Q4_0 (8.5 / 4.5 bits per weight), norms f32, a byte-level SentencePiece-style vocabulary;
  * for libflamingo with `flamingo synth`: the same language model in a Flamingo whose
    cross-attention never runs (every_n_layers > layers) and whose vision tower is tiny, every
    matrix at q8 / q4 in groups of 64 with f16 scale and bias (8.5 / 4.5 bits per weight).
Both then decode in a fresh process per run, alternating engine by engine, on 2 threads: a
16-token prompt, then `--decode` tokens one at a time; the per-token median is reported.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
D, LAYERS, HEADS, FFN, VOCAB = 4096, 32, 32, 11008, 32000
PROMPT = 16


def flamingo_config():
    return {"format": "flamingo", "format_version": 1, "architecture": "openflamingo",
            "vision": {"kind": "clip_vit", "image_size": 32, "patch_size": 16, "width": 64, "layers": 1,
                       "heads": 2, "mlp_dim": 128},
            "resampler": {"dim": 64, "depth": 1, "heads": 2, "dim_head": 32, "num_latents": 8},
            "cross_attention": {"every_n_layers": LAYERS + 1, "heads": 8, "dim_head": 64},
            "language_model": {"family": "llama", "hidden_size": D, "layers": LAYERS, "heads": HEADS,
                               "intermediate_size": FFN, "vocab_size": VOCAB, "max_seq_len": 2048,
                               "tie_word_embeddings": False},
            "tokens": {"image": VOCAB - 2, "endofchunk": VOCAB - 3, "bos": 1, "eos": 2},
            "preprocess": {"image_size": 32, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}


def write_gguf(path: Path, kind: str):
    import numpy as np
    import gguf
    qtype = {"q8": gguf.GGMLQuantizationType.Q8_0, "q4": gguf.GGMLQuantizationType.Q4_0}[kind]
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(2048)
    w.add_embedding_length(D)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(D // HEADS)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if kind == "q8" else gguf.LlamaFileType.MOSTLY_Q4_0)
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    tokens += [f"t{i}".encode() for i in range(VOCAB - len(tokens))]
    types = [2, 3, 3] + [6] * 256 + [1] * (VOCAB - 259)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * VOCAB)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    rng = np.random.default_rng(0)
    cache = {}

    def matrix(shape):  # one random matrix per shape, quantized once: speed does not depend on values
        if shape not in cache:
            a = (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float32)
            cache[shape] = gguf.quants.quantize(a, qtype)
        return cache[shape]

    ones = np.ones(D, dtype=np.float32)
    w.add_tensor("token_embd.weight", matrix((VOCAB, D)), raw_dtype=qtype)
    for i in range(LAYERS):
        b = f"blk.{i}"
        w.add_tensor(f"{b}.attn_norm.weight", ones)
        for n in ["attn_q", "attn_k", "attn_v", "attn_output"]:
            w.add_tensor(f"{b}.{n}.weight", matrix((D, D)), raw_dtype=qtype)
        w.add_tensor(f"{b}.ffn_norm.weight", ones)
        w.add_tensor(f"{b}.ffn_gate.weight", matrix((FFN, D)), raw_dtype=qtype)
        w.add_tensor(f"{b}.ffn_up.weight", matrix((FFN, D)), raw_dtype=qtype)
        w.add_tensor(f"{b}.ffn_down.weight", matrix((D, FFN)), raw_dtype=qtype)
    w.add_tensor("output_norm.weight", ones)
    w.add_tensor("output.weight", matrix((VOCAB, D)), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_decode(path: Path, decode: int, threads: int) -> float:
    """Median ms per decoded token in a fresh process."""
    code = f"""
import time, statistics, llama_cpp
m = llama_cpp.Llama(model_path={str(path)!r}, n_ctx=512, n_threads={threads}, n_threads_batch={threads},
                    n_batch=512, verbose=False)
toks = [1] + [300 + (i * 37) % 30000 for i in range({PROMPT - 1})]
m.eval(toks)
steps = []
for i in range({decode}):
    t = time.perf_counter(); m.eval([500 + i]); steps.append(time.perf_counter() - t)
print(statistics.median(steps) * 1e3)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def flamingo_decode(cli: str, model: Path, decode: int, threads: int) -> float:
    out = subprocess.run([cli, "bench", "-m", str(model), "--images", "0", "--prompt-tokens", str(PROMPT),
                          "--decode", str(decode), "--threads", str(threads), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["decode_ms_per_token"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=str(REPO / "build" / "prefix" / "bin" / "flamingo"))
    ap.add_argument("--dir", default=str(REPO / "build" / "bench" / "llamacpp"))
    ap.add_argument("--types", default="q8,q4")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    root = Path(a.dir)
    rows = []
    for kind in a.types.split(","):
        g, f = root / f"llama7b-{kind}.gguf", root / f"llama7b-{kind}"
        root.mkdir(parents=True, exist_ok=True)
        if not g.exists():
            t = time.time()
            write_gguf(g, kind)
            print(f"wrote {g} in {time.time() - t:.0f} s", file=sys.stderr)
        if not (f / "model.safetensors").exists():
            f.mkdir(parents=True, exist_ok=True)
            (f / "source-config.json").write_text(json.dumps(flamingo_config()))
            subprocess.run([a.cli, "synth", str(f / "source-config.json"), str(f), "--type", kind, "--plain"], check=True,
                           stdout=subprocess.DEVNULL)
        ours, theirs = [], []
        for r in range(a.runs):
            ours.append(flamingo_decode(a.cli, f, a.decode, a.threads))
            theirs.append(llama_decode(g, a.decode, a.threads))
            print(f"{kind} run {r + 1}: libflamingo {ours[-1]:.1f} ms, llama.cpp {theirs[-1]:.1f} ms", file=sys.stderr)
        lm_bytes = (f / "model.safetensors").stat().st_size
        rows.append((kind, g.stat().st_size, lm_bytes, ours, theirs))
    print("| type | GGUF GB | libflamingo file GB | libflamingo ms/token | llama.cpp ms/token | ratio (medians) |")
    print("|---|---|---|---|---|---|")
    for kind, gb, fb, ours, theirs in rows:
        mo, mt = statistics.median(ours), statistics.median(theirs)
        print(f"| {kind} / {'Q8_0' if kind == 'q8' else 'Q4_0'} | {gb / 1e9:.2f} | {fb / 1e9:.2f} | {mo:.1f} ({min(ours):.1f}–{max(ours):.1f}) "
              f"| {mt:.1f} ({min(theirs):.1f}–{max(theirs):.1f}) | {mo / mt:.2f} |")


if __name__ == "__main__":
    main()
