"""Load benchmark of `flamingo serve` (not a test): throughput and latency at 1, 4 and 16
concurrent clients, continuous batching on (--parallel 16) vs off (--parallel 1), the
visual-token cache on vs off, on a model directory.

    python3 tools/bench/bench_serve.py build/prefix/bin/flamingo models/flamingo-mini [--requests 4] [--tokens 32]
    python3 tools/bench/bench_serve.py build/prefix/bin/flamingo --of3b /tmp/of3b-serve-q4   # made when missing

--of3b: the OpenFlamingo-3B geometry (ViT-L/14, MPT-1B dimensions, cross-attention in every
layer; random q4 weights from `flamingo synth`, tools/bench/bench_quant.py's config) with
flamingo-mini's tokenizer, so its vocabulary is 412 rows instead of 50,280 (the output head,
5 % of a decode step's bytes at q4/q8, is left out).

Each client sends --requests streaming chat requests one after another: a 2-shot caption
prompt (two fixed demonstration images, then the client's own image) and exactly --tokens new
tokens (min_tokens = max_tokens). Time to first token is measured at the first content chunk.
Prints a Markdown table.
"""
import argparse
import base64
import http.client
import json
import statistics
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start(cli, model, flags):
    p = subprocess.Popen([cli, "serve", "-m", model, "--port", "0", *flags], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    for line in p.stdout:
        if "listening on" in line:
            port = int(line.rsplit(":", 1)[1])
            break
    threading.Thread(target=p.stdout.read, daemon=True).start()
    while True:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/health")
        if c.getresponse().status == 200:
            return p, port
        time.sleep(0.1)


def uri(path):
    return "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def one_request(port, messages, tokens):
    body = json.dumps({"messages": messages, "max_tokens": tokens, "min_tokens": tokens, "stream": True,
                       "stream_options": {"include_usage": True}})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    t0 = time.perf_counter()
    c.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    first, generated = None, 0
    for raw in r:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            generated = chunk["usage"]["completion_tokens"]
        elif first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            first = time.perf_counter() - t0
    return first if first is not None else time.perf_counter() - t0, generated


def run(cli, model, flags, clients, requests, tokens, images, demos):
    p, port = start(cli, model, flags)
    shots = []
    for img, caption in demos:
        shots += [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri(img)}},
                                               {"type": "text", "text": "Output:"}]},
                  {"role": "assistant", "content": caption}]
    jobs = [shots + [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri(images[k % len(images)])}},
                                                  {"type": "text", "text": "Output:"}]}] for k in range(clients * requests)]
    one_request(port, jobs[0], 2)  # warm-up
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda m: one_request(port, m, tokens), jobs))
    wall = time.perf_counter() - t0
    p.terminate()
    p.wait()
    ttft = sorted(r[0] for r in results)
    generated = sum(r[1] for r in results)
    p99 = ttft[min(len(ttft) - 1, int(round(0.99 * (len(ttft) - 1))))]
    return {"ttft_p50": statistics.median(ttft), "ttft_p99": p99, "tokens_per_s": generated / wall,
            "requests_per_s": len(jobs) / wall, "generated": generated}


def make_of3b(cli, out: Path):
    import sys

    sys.path.insert(0, str(ROOT / "tools" / "bench"))
    from bench_quant import config

    mini = ROOT / "models" / "flamingo-mini"
    c = config("of3b")
    m = json.loads((mini / "config.json").read_text())
    c["language_model"]["vocab_size"] = m["language_model"]["vocab_size"]
    c["tokens"] = m["tokens"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "source-config.json").write_text(json.dumps(c))
    subprocess.run([cli, "synth", str(out / "source-config.json"), str(out / "model"), "--type", "q4"], check=True)
    (out / "model" / "tokenizer.json").write_bytes((mini / "tokenizer.json").read_bytes())
    cfg = json.loads((out / "model" / "config.json").read_text())
    cfg["tokenizer"] = "tokenizer.json"
    (out / "model" / "config.json").write_text(json.dumps(cfg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cli")
    ap.add_argument("model", nargs="?")
    ap.add_argument("--of3b", type=Path, help="a directory for the OpenFlamingo-3B geometry model (made when missing)")
    ap.add_argument("--requests", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", default="2")
    a = ap.parse_args()
    if a.of3b:
        if not (a.of3b / "model" / "config.json").is_file():
            make_of3b(a.cli, a.of3b)
        a.model = str(a.of3b / "model")
    mini = ROOT / "models" / "flamingo-mini"
    images = sorted((mini / "eval" / "images").iterdir())[:16]
    demos = [(mini / "examples" / "red_circle.jpg", "A red circle."), (mini / "examples" / "blue_squares.jpg", "Two blue squares.")]
    print(f"model {a.model}, {a.requests} requests per client, {a.tokens} new tokens, 2-shot chat prompts, --threads {a.threads}\n")
    print("| clients | batching | image cache | TTFT p50 (ms) | TTFT p99 (ms) | generated tokens/s | requests/s |")
    print("|---|---|---|---|---|---|---|")
    for clients in (1, 4, 16):
        for parallel, cache in ((16, 256), (1, 256), (16, 0)):
            if clients == 1 and (parallel, cache) == (1, 256):
                continue  # same as batching on with one client
            flags = ["--parallel", str(parallel), "--image-cache-mb", str(cache), "--threads", a.threads, "--queue", "256"]
            r = run(a.cli, a.model, flags, clients, a.requests, a.tokens, images, demos)
            print(f"| {clients} | {'on' if parallel > 1 else 'off'} | {'on' if cache else 'off'} | "
                  f"{r['ttft_p50'] * 1000:.0f} | {r['ttft_p99'] * 1000:.0f} | {r['tokens_per_s']:.1f} | {r['requests_per_s']:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
