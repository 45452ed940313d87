"""CPU benchmark of the NFNet encoder: libflamingo next to timm, same weights, same input.

    /work/refenv/bin/python tools/bench/bench_nfnet.py [--models f0:256,f6:320] [--iters 5] [--threads N]

Not a test. For each model (timm dm_nfnet_<variant>, num_classes=0, seeded random weights rounded
to float16 so both sides use identical values) it writes build/nfnet_bench/<variant>_<size>/
(config.json, model.safetensors in F16, input.safetensors; reused when present), times timm's
forward_features (fp32, torch.no_grad, torch threads = --threads) and then the engine through the
hidden test entry NFNetTests.testBenchmark:

    FLAMINGO_NFNET_BENCH=1 FLAMINGO_NFNET_BENCH_DIR=<dir> \
        swift test -c release --scratch-path .build-nfnet --disable-swift-testing \
        --filter NFNetTests/testBenchmark

which prints the forward times and writes the features (checked here against timm's:
max|Δ|/max|ref|). Reported: medians and minima over `--rounds` alternating rounds of timm and
engine runs (one warm-up each), engine/timm ratios (target <= 0.5). Both sides use all cores: a
busy process elsewhere on the machine skews a round (the script warns when the load average says
one is running; the minima are the least disturbed).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def build_dir(variant: str, size: int, seed: int) -> Path:
    import torch
    import timm
    from safetensors.torch import save_file

    d = REPO / "build" / "nfnet_bench" / f"{variant}_{size}"
    marker = d / "config.json"
    if marker.exists() and json.loads(marker.read_text()).get("seed") == seed:
        return d
    d.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = timm.create_model(f"dm_nfnet_{variant}", pretrained=False, num_classes=0).eval()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("skipinit_gain"):
                p.copy_(0.5 + 0.2 * torch.randn((), generator=g))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            p.copy_(p.half().float())
    save_file({k: v.half().contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"))
    pixels = torch.randn((1, 3, size, size), generator=g)
    save_file({"input.pixels": pixels.contiguous()}, str(d / "input.safetensors"))
    marker.write_text(json.dumps({"vision": {"kind": "nfnet", "variant": variant, "image_size": size},
                                  "seed": seed, "note": "bench_nfnet.py: random weights (F16)"}, indent=2) + "\n")
    return d


def load_timm(d: Path, variant: str, threads: int):
    import torch
    import timm
    from safetensors.torch import load_file

    torch.set_num_threads(threads)
    model = timm.create_model(f"dm_nfnet_{variant}", pretrained=False, num_classes=0).eval()
    sd = {k: v.float() for k, v in load_file(str(d / "model.safetensors")).items()}
    model.load_state_dict(sd)
    return model, load_file(str(d / "input.safetensors"))["input.pixels"]


def time_timm(model, x, iters: int):
    """Forward times after one warm-up, and the features as the engine's tokens (NHWC)."""
    import numpy as np
    import torch

    times = []
    with torch.no_grad():
        for i in range(iters + 1):
            t = time.perf_counter()
            feats = model.forward_features(x)
            times.append((time.perf_counter() - t) * 1000)
    return times[1:], feats[0].permute(1, 2, 0).contiguous().numpy().astype(np.float32)


def time_engine(d: Path, iters: int, threads: int):
    import numpy as np

    env = dict(os.environ, FLAMINGO_NFNET_BENCH="1", FLAMINGO_NFNET_BENCH_DIR=str(d),
               FLAMINGO_NFNET_BENCH_ITERS=str(iters), OPENBLAS_NUM_THREADS=str(threads))
    cmd = ["swift", "test", "-c", "release", "--scratch-path", str(REPO / ".build-nfnet"), "--disable-swift-testing",
           "--filter", "NFNetTests/testBenchmark"]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    m = re.search(r"NFNET_BENCH .*?max_rss_mb=(\d+) load_s=(\S+) .*? all_ms=\[([^\]]*)\]", p.stdout + p.stderr)
    if p.returncode != 0 or not m:
        sys.stderr.write(p.stdout[-4000:] + p.stderr[-4000:])
        raise SystemExit(f"engine run failed ({p.returncode})")
    times = [float(t) for t in m.group(3).split(",")][1:]  # after the warm-up
    out = np.fromfile(d / "engine_features.f32", dtype=np.float32)
    return times, float(m.group(2)), int(m.group(1)), out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="f0:256,f6:320")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--rounds", type=int, default=2, help="timm and engine alternate this many times")
    args = ap.parse_args()

    try:
        load1 = float(Path("/proc/loadavg").read_text().split()[0])
        if load1 > 0.5:
            print(f"warning: load average {load1} before starting: another process is using the CPU", flush=True)
    except OSError:
        pass
    rows = []
    for spec in args.models.split(","):
        variant, size = spec.split(":")
        size = int(size)
        d = build_dir(variant, size, args.seed)
        model, x = load_timm(d, variant, args.threads)
        timm_t, eng_t = [], []
        for _ in range(args.rounds):  # alternate, so a burst of load elsewhere hits both sides
            t, ref = time_timm(model, x, args.iters)
            timm_t += t
            e, load_s, rss, got = time_engine(d, args.iters, args.threads)
            eng_t += e
        del model
        ref = ref.reshape(-1)
        err = float(abs(got - ref).max() / abs(ref).max()) if got.size == ref.size else float("nan")
        tm, tn, em, en = statistics.median(timm_t), min(timm_t), statistics.median(eng_t), min(eng_t)
        rows.append((f"dm_nfnet_{variant}", size, tm, tn, em, en, err, load_s, rss))
        print(f"{rows[-1][0]} {size}px: timm {tm:.1f} ms (min {tn:.1f}), engine {em:.1f} ms (min {en:.1f}), "
              f"ratio {em / tm:.3f} (minima {en / tn:.3f}), max|d|/max|ref| {err:.2e}, engine load {load_s:.1f} s, "
              f"engine max RSS {rss} MB", flush=True)

    import platform
    import torch
    print()
    print(f"CPU: {platform.processor() or platform.machine()}, {args.threads} threads; torch {torch.__version__}; "
          f"{args.rounds} alternating rounds of {args.iters} timed runs after 1 warm-up each; batch 1, fp32")
    print("| model | input | timm forward_features ms (median / min) | libflamingo ms (median / min) "
          "| ratio (medians / minima) | max\\|Δ\\|/max\\|ref\\| |")
    print("|---|---|---|---|---|---|")
    for name, size, t, tmin, e, emin, err, _, _ in rows:
        print(f"| {name} | {size}×{size} | {t:.0f} / {tmin:.0f} | {e:.0f} / {emin:.0f} | {e / t:.2f} / {emin / tmin:.2f} "
              f"| {err:.1e} |")


if __name__ == "__main__":
    main()
