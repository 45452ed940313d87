"""Writes the fuzz targets' seed corpora (tools/fuzz/corpus/<target>/) from the fixtures and
micro models made with `flamingo synth`: python3 tools/fuzz/make_corpus.py PATH/TO/flamingo.
The seeds are small on purpose (libFuzzer mutates small inputs faster); rerun after a format
change. Deterministic except for synth's random weights (the fuzzers only need the layout)."""
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FX = ROOT / "Tests" / "Fixtures"
OUT = ROOT / "tools" / "fuzz" / "corpus"
SEP = b"\n#----#\n"
cli = sys.argv[1]


def micro(family: str) -> dict:
    """mpt_tiny's config shrunk to the smallest geometry the engine accepts, per LM family."""
    c = json.loads((FX / f"{family}_tiny" / "config.json").read_text())
    c["vision"].update(image_size=16, patch_size=8, width=8, layers=1, heads=2, mlp_dim=16)
    c["resampler"].update(dim=8, depth=1, heads=2, dim_head=4, num_latents=2, ff_mult=1)
    c["cross_attention"].update(heads=2, dim_head=4, ff_mult=1)
    lm = c["language_model"]
    lm.update(hidden_size=8, layers=1, heads=2, intermediate_size=16, max_seq_len=16)
    if "kv_heads" in lm:
        lm["kv_heads"] = 1
    c["preprocess"]["image_size"] = 16
    c.pop("tokenizer", None)
    return c


def reset(name: str) -> Path:
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


def synth(config: dict, kind: str, group: int = 32) -> bytes:
    with tempfile.TemporaryDirectory() as t:
        (Path(t) / "config.json").write_text(json.dumps(config))
        subprocess.run([cli, "synth", f"{t}/config.json", f"{t}/m", "--type", kind, "--group-size", str(group), "--plain"],
                       check=True, capture_output=True)
        return (Path(t) / "m" / "config.json").read_bytes(), (Path(t) / "m" / "model.safetensors").read_bytes()


configs = reset("config")
for src in sorted(FX.glob("*/config.json")):
    shutil.copy(src, configs / f"{src.parent.name}.json")
models, tensors, quantized = reset("model"), reset("safetensors"), reset("quantized")
for family in ("mpt", "gpt_neox", "llama"):
    for kind in ("f32", "bf16", "q4", "q8"):
        config, weights = synth(micro(family), kind)
        if kind in ("f32", "q4"):
            (models / f"{family}_{kind}").write_bytes(config + SEP + weights)
        if family == "mpt":
            (tensors / kind).write_bytes(weights)
        (configs / f"micro_{family}_{kind}.json").write_bytes(config)
config, weights = synth(micro("mpt"), "q4")
(OUT / "quantized.config.json").write_bytes(config)
(quantized / "mpt_q4").write_bytes(weights)
config8, weights8 = synth(micro("mpt"), "q8")
(quantized / "mpt_q8_as_q4").write_bytes(weights8)  # a mismatch the validation must report
tok = reset("tokenizer")
texts = ["Hello world! <image>An image of two cats.<|endofchunk|>", "café crème e\u0301 ü 日本語 🙂 \x00\xff",
         "  leading spaces\tand\nnewlines  "]
for src in [FX / "tokenizers" / "canonical_keys.json", FX / "tokenizers" / "metaspace_flags.json",
            FX / "mpt_tiny" / "tokenizer.json", FX / "llama_tiny" / "tokenizer.json"]:
    for i, text in enumerate(texts if src.stat().st_size < 4096 else texts[:1]):
        (tok / f"{src.parent.name}_{src.stem}_{i}").write_bytes(src.read_bytes() + SEP + text.encode("utf-8", "surrogatepass"))
img = reset("image")
for src in sorted((FX / "images").iterdir()):
    if src.suffix.lower() in (".jpg", ".jpeg", ".png") and src.stat().st_size <= 16384:
        shutil.copy(src, img / src.name)
prompt = reset("prompt")
for i, (n, mask, text) in enumerate([(0, 0, "Hello"), (1, 0, "<image>An image of"), (2, 1, "<image>a<|endofchunk|><image>b"),
                                     (1, 0, "<image>" + "word " * 40), (3, 0, "<image><image>"), (1, 0, "\u00e9<image>\U0001f642")]):
    (prompt / f"seed{i}").write_bytes(bytes([n, mask]) + text.encode())
det = reset("detokenizer")
for i, ids in enumerate([[1, 2, 3], [400, 401, 402, 0], [255, 256, 30000, -1], list(range(180, 200))]):
    (det / f"seed{i}").write_bytes(bytes([i & 3]) + b"".join(x.to_bytes(2, "little", signed=True) for x in ids))
total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
print(f"{sum(1 for p in OUT.rglob('*') if p.is_file())} files, {total} bytes in {OUT}")
