#!/usr/bin/env python3
"""CPU speed of each storage format at OpenFlamingo-3B and -9B geometry (docs/benchmarks.md).

    tools/bench/bench_quant.py [--cli build/prefix/bin/flamingo] [--dir build/bench/quant]
                               [--models of3b:f32,of3b:bf16,of3b:q8,of3b:q4,of9b:q4] [--runs 3] [--decode 16]

Not a test. For each geometry:type it writes (once) a random-weight model directory with
`flamingo synth` (the config below; weights straight in the target type, so no f32 copy of a 9B
model is needed), then runs `flamingo bench` in a fresh process `--runs` times, interleaving the
models run by run so machine noise spreads evenly. Reports medians (min–max) of image encode
(3 images), prefill (3 images + 64 tokens) and decode ms/token, the peak RSS of each process
(os.wait4) next to the weight file size, and the decode floor: the bytes a decode step must read
(every LM and cross-attention matrix and the output head; not the vision encoder or resampler)
over the streaming read rate measured by `flamingo bench --bandwidth` on the same threads.
Standard library only.
"""
import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

VISION = {"kind": "clip_vit", "image_size": 224, "patch_size": 14, "width": 1024, "layers": 24, "heads": 16,
          "mlp_dim": 4096, "activation": "quick_gelu"}
RESAMPLER = {"dim": 1024, "depth": 6, "heads": 8, "dim_head": 64, "num_latents": 64}
GEOMETRY = {
    # OpenFlamingo-3B-vitl-mpt1b: MPT-1B dimensions, cross-attention before every layer.
    "of3b": ({"family": "mpt", "hidden_size": 2048, "layers": 24, "heads": 16, "intermediate_size": 8192,
              "vocab_size": 50280, "max_seq_len": 2048}, 1),
    # OpenFlamingo-9B-vitl-mpt7b: MPT-7B dimensions, cross-attention every 4th layer.
    "of9b": ({"family": "mpt", "hidden_size": 4096, "layers": 32, "heads": 32, "intermediate_size": 16384,
              "vocab_size": 50432, "max_seq_len": 2048}, 4),
}


def config(geometry):
    lm, every = GEOMETRY[geometry]
    v = lm["vocab_size"]
    return {"format": "flamingo", "format_version": 1, "architecture": "openflamingo", "vision": VISION,
            "resampler": RESAMPLER, "cross_attention": {"every_n_layers": every, "heads": 8, "dim_head": 64},
            "language_model": lm, "tokens": {"image": v - 2, "endofchunk": v - 3, "pad": v - 1, "eos": 0},
            "preprocess": {"image_size": 224, "mean": [0.48145466, 0.4578275, 0.40821073],
                           "std": [0.26862954, 0.26130258, 0.27577711]}}


def decode_bytes(model_dir):
    """Bytes of the tensors one decode step reads (all but vision/resampler; the embedding table
    is read whole only as the tied output head, which it is in MPT)."""
    with open(model_dir / "model.safetensors", "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name == "__metadata__" or name.startswith(("vision_encoder.", "perceiver.")):
            continue
        total += t["data_offsets"][1] - t["data_offsets"][0]
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", default=str(REPO / "build" / "prefix" / "bin" / "flamingo"))
    ap.add_argument("--dir", default=str(REPO / "build" / "bench" / "quant"))
    ap.add_argument("--models", default="of3b:f32,of3b:bf16,of3b:q8,of3b:q4,of9b:q4")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    models = [tuple(m.split(":")) for m in a.models.split(",")]
    dirs = {}
    for geometry, kind in models:
        d = Path(a.dir) / f"{geometry}-{kind}"
        if not (d / "model.safetensors").exists():
            d.mkdir(parents=True, exist_ok=True)
            (d / "source-config.json").write_text(json.dumps(config(geometry), indent=1))
            subprocess.run([a.cli, "synth", str(d / "source-config.json"), str(d), "--type", kind], check=True)
        dirs[(geometry, kind)] = d

    results = {m: [] for m in models}
    bw = []
    for m in models:
        for r in range(a.runs + 1):
            # Peak RSS: wait4 on our own child. The bandwidth is measured in a separate process
            # (its 1 GiB buffer would count in the RSS).
            args = ["bench", "-m", str(dirs[m]), "--threads", str(a.threads), "--decode", str(a.decode), "--json"]
            pid = os.fork()
            if pid == 0:
                fd = os.open(str(Path(a.dir) / "bench.out"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 1)
                os.execv(a.cli, [a.cli, *args])
            _, status, usage = os.wait4(pid, 0)
            if status != 0:
                sys.exit(f"{m}: flamingo bench failed ({status})")
            out = json.loads((Path(a.dir) / "bench.out").read_text())
            out["peak_rss"] = usage.ru_maxrss * 1024
            if r == 0:
                continue  # the page-cache warm-up
            results[m].append(out)
            print(f"run {r}/{a.runs} {m[0]} {m[1]}: decode {out['decode_ms_per_token']:.1f} ms/token", file=sys.stderr)
        probe = subprocess.run([a.cli, "bench", "-m", str(dirs[m]), "--threads", str(a.threads), "--images", "0",
                                "--prompt-tokens", "2", "--decode", "1", "--bandwidth", "--json"],
                               capture_output=True, text=True, check=True)
        bw.append(json.loads(probe.stdout)["read_gbps"] * 1e9)

    rate = statistics.median(bw)
    print(f"read bandwidth ({a.threads} threads, median of {len(bw)}): {rate / 1e9:.1f} GB/s\n")
    print("| model | file GB | peak RSS GB (RSS/file) | encode ms | prefill ms | decode ms/token | floor ms/token | decode/floor |")
    print("|---|---|---|---|---|---|---|---|")
    table = []
    for m in models:
        rs = results[m]
        def med(k):
            v = [x[k] for x in rs]
            return statistics.median(v), min(v), max(v)
        size = (dirs[m] / "model.safetensors").stat().st_size
        rss = max(x["peak_rss"] for x in rs)
        floor = decode_bytes(dirs[m]) / rate * 1e3
        enc, pre, dec = med("encode_ms"), med("prefill_ms"), med("decode_ms_per_token")
        print(f"| {m[0]} {m[1]} | {size / 1e9:.2f} | {rss / 1e9:.2f} ({rss / size:.2f}) | {enc[0]:.0f} ({enc[1]:.0f}–{enc[2]:.0f}) "
              f"| {pre[0]:.0f} ({pre[1]:.0f}–{pre[2]:.0f}) | {dec[0]:.1f} ({dec[1]:.1f}–{dec[2]:.1f}) | {floor:.1f} | {dec[0] / floor:.2f} |")
        table.append({"model": f"{m[0]} {m[1]}", "file_bytes": size, "peak_rss": rss, "encode_ms": enc, "prefill_ms": pre,
                      "decode_ms": dec, "floor_ms": floor})
    (Path(a.dir) / "results.json").write_text(json.dumps({"read_bytes_per_s": rate, "rows": table}, indent=1))


if __name__ == "__main__":
    main()
