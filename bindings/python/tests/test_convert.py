"""The checkpoint converter (flamingo.convert) on tiny OpenFlamingo releases in their
original formats (Tests/Fixtures/conversion/, made by
tools/reference/make_conversion_fixtures.py): each is converted into a temporary
directory and loaded through the library, whose logits must match the PyTorch
reference (max|d| / max|ref| <= 1e-4); then the error paths. numpy is required (the
converter's only dependency); torch, tokenizers and sentencepiece are used for extra
cross-checks when installed."""

import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

import flamingo  # noqa: E402
from conftest import fixtures_dir, subprocess_env  # noqa: E402
from reference import read, rel_err  # noqa: E402

from flamingo import convert as fconv  # noqa: E402
from flamingo.convert import safetensors_io, torchpickle  # noqa: E402
from flamingo.convert.__main__ import main as cli_main  # noqa: E402
from flamingo.convert.tensors import Tensor, float32_to_bf16, to_float32  # noqa: E402

TOL = 1e-4
RELEASES = ["of3b_mpt1b", "of4b_rpj3b", "of9b_mpt7b", "of9b_v1_llama"]


def conv_dir() -> Path:
    d = fixtures_dir() / "conversion"
    if not (d / "MANIFEST.json").is_file():
        msg = f"conversion fixtures {d} are missing"
        if os.environ.get("FLAMINGO_REQUIRE_FIXTURES") == "1":
            pytest.fail(msg + " (FLAMINGO_REQUIRE_FIXTURES=1)")
        pytest.skip(msg)
    return d


def expected(name: str) -> dict:
    return json.loads((conv_dir() / name / "expected.json").read_text())


def args_for(name: str, out: Path, **override) -> list:
    """The command line for one fixture (keys of `override`: flag names without --; None drops a flag)."""
    e = expected(name)
    f, root = e["flags"], conv_dir()
    flags = {
        "vision": str(root / f["vision"]),
        "vision-arch": str(root / f["vision_arch"]),
        "lm": str(root / f["lm"]),
        "checkpoint": str(root / f["checkpoint"]),
        "cross-attn-every-n-layers": str(f["cross_attn_every_n_layers"]),
        "out": str(out),
        "resampler-geometry": f["resampler_geometry"],
        "xattn-geometry": f["xattn_geometry"],
    }
    flags.update({k: v for k, v in override.items()})
    argv = ["openflamingo", "--quiet"]
    for k, v in flags.items():
        if v is None:
            continue
        argv += [f"--{k}"] if v is True else [f"--{k}", str(v)]
    return argv


def run_cli(argv, capsys=None) -> int:
    return cli_main(argv)


def convert(name: str, out: Path, **override) -> Path:
    rc = cli_main(args_for(name, out, **override))
    assert rc == 0, f"conversion of {name} failed"
    return out


def conversion_error(name: str, tmp_path: Path, capsys, **override) -> str:
    rc = cli_main(args_for(name, tmp_path / "out", **override))
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("error: "), err
    assert not (tmp_path / "out" / "config.json").exists()
    return err


def model_logits(model_dir: Path, ref) -> list:
    with flamingo.Model.load(model_dir) as m:
        s = m.session()
        s.set_images(ref["input.pixels"].data)
        return s.eval(list(ref["input.input_ids"].data), all_logits=True)


def read_checkpoint(name: str) -> dict:
    obj, script = torchpickle.load(conv_dir() / name / "checkpoint.pt")
    assert not script
    return torchpickle.tensor_dict(obj, Path(name))


def write_checkpoint(tensors: dict, path: Path) -> Path:
    safetensors_io.write(path, sorted(tensors.items()))
    return path


def arr(t: Tensor):
    return Tensor.from_array(t.numpy().copy(), t.dtype)


# ---- the releases ---------------------------------------------------------------


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each release converted once (default options)."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = convert(name, tmp_path_factory.mktemp(name) / "model")
        return cache[name]

    return get


@pytest.mark.parametrize("name", RELEASES)
def test_converted_logits_match_pytorch(name, converted):
    out = converted(name)
    ref = read(conv_dir() / name / "reference.safetensors")
    got = model_logits(out, ref)
    err = rel_err(got, ref["logits"].data)
    assert err <= TOL, f"{name}: max|d|/max|ref| = {err}"


@pytest.mark.parametrize("name", RELEASES)
def test_converted_config_and_tokenizer(name, converted):
    out = converted(name)
    e = expected(name)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["format"] == "flamingo" and cfg["architecture"] == "openflamingo"
    assert cfg["language_model"]["family"] == e["family"]
    assert cfg["language_model"]["vocab_size"] == e["vocab_size"]
    assert cfg["tokens"] == e["tokens"]
    assert cfg["cross_attention"]["every_n_layers"] == e["flags"]["cross_attn_every_n_layers"]
    assert cfg["vision"]["activation"] == "quick_gelu" and cfg["vision"]["ln_post_on_tokens"] is False
    assert cfg["preprocess"]["mean"] == [0.48145466, 0.4578275, 0.40821073]
    assert cfg["weights"] == ["model.safetensors"]
    tok = json.loads((out / "tokenizer.json").read_text())
    added = [t for t in tok["added_tokens"] if t["content"] in ("<|endofchunk|>", "<image>", "<PAD>")]
    assert added == [t for t in e["added_tokens"] if t["content"] in ("<|endofchunk|>", "<image>", "<PAD>")]
    # the prompt through the library's tokenizer (when the binding has it) gives the reference ids
    with flamingo.Model.load(out) as m:
        info = m.info
        assert info.vocab_size == e["vocab_size"]
        assert info.image_token_id == e["tokens"]["image"] and info.endofchunk_token_id == e["tokens"]["endofchunk"]
        tokenize = getattr(m, "tokenize", None)
        if tokenize is not None:
            assert tokenize(e["prompt"]) == e["input_ids"]
    report = json.loads((out / "conversion.json").read_text())
    assert report["inputs"]["lm_family"] == e["family"]


def test_tokenizer_json_encodes_like_transformers(converted):
    tokenizers = pytest.importorskip("tokenizers")
    for name in RELEASES:
        e = expected(name)
        tk = tokenizers.Tokenizer.from_file(str(converted(name) / "tokenizer.json"))
        assert tk.encode(e["prompt"]).ids == e["input_ids"], name
        assert tk.get_vocab_size(with_added_tokens=True) == e["vocab_size"]


def test_llama_tokenizer_model_only(converted):
    """of9b_v1_llama/lm has only tokenizer.model: the converter builds the 2023 fast conversion itself."""
    lm = conv_dir() / "of9b_v1_llama" / "lm"
    assert (lm / "tokenizer.model").is_file() and not (lm / "tokenizer.json").exists()
    tok = json.loads((converted("of9b_v1_llama") / "tokenizer.json").read_text())
    assert tok["normalizer"]["type"] == "Sequence" and tok["pre_tokenizer"] is None
    assert tok["model"]["byte_fallback"] is True
    spm = pytest.importorskip("sentencepiece")
    tokenizers = pytest.importorskip("tokenizers")
    sp = spm.SentencePieceProcessor(model_file=str(lm / "tokenizer.model"))
    tk = tokenizers.Tokenizer.from_str(json.dumps(tok))
    for text in ("Question: What color is the square?", "café crème 1234", "A small dog runs."):
        assert tk.encode(text, add_special_tokens=False).ids == sp.encode(text)


def test_module_prefix_and_v1_duplicates_are_reported(converted):
    notes = json.loads((converted("of3b_mpt1b") / "conversion.json").read_text())["notes"]
    assert any("module." in n for n in notes)
    report = json.loads((converted("of9b_v1_llama") / "conversion.json").read_text())
    assert any("both spellings" in n for n in report["notes"])
    assert any("lm_head.weight rows" in n for n in report["not_in_the_release"])


def test_llama_grown_rows_are_zero(converted):
    t, _ = safetensors_io.read(converted("of9b_v1_llama") / "model.safetensors")
    head = t["lang_encoder.lm_head.weight"].float32()
    rows = expected("of9b_v1_llama")["hf_embedding_rows"]
    assert head.shape[0] == expected("of9b_v1_llama")["vocab_size"]
    assert not head[rows:].any() and head[:rows].any()


def test_new_rows_mean(tmp_path):
    out = convert("of9b_v1_llama", tmp_path / "m", **{"new-rows": "mean"})
    t, _ = safetensors_io.read(out / "model.safetensors")
    head = t["lang_encoder.lm_head.weight"].float32()
    rows = expected("of9b_v1_llama")["hf_embedding_rows"]
    mean = head[:rows].astype(np.float64).mean(axis=0)
    assert np.allclose(head[rows:], mean, atol=1e-3)


def test_dtypes_are_kept_by_default(converted):
    t, _ = safetensors_io.read(converted("of9b_mpt7b") / "model.safetensors")
    assert t["lang_encoder.transformer.blocks.0.attn.Wqkv.weight"].dtype == "BF16"  # HF weights
    assert t["lang_encoder.transformer.wte.weight"].dtype == "F32"  # checkpoint
    t, _ = safetensors_io.read(converted("of3b_mpt1b") / "model.safetensors")
    assert t["vision_encoder.conv1.weight"].dtype == "F16"  # OpenAI archive
    assert t["vision_encoder.ln_pre.weight"].dtype == "F32"


@pytest.mark.parametrize("dtype,stored", [("f32", "F32"), ("bf16", "BF16"), ("f16", "F16")])
def test_dtype_option(dtype, stored, tmp_path, converted):
    out = convert("of9b_mpt7b", tmp_path / "m", dtype=dtype)
    t, _ = safetensors_io.read(out / "model.safetensors")
    assert {x.dtype for x in t.values()} == {stored}
    ref = read(conv_dir() / "of9b_mpt7b" / "reference.safetensors")
    err = rel_err(model_logits(out, ref), ref["logits"].data)
    assert err <= (TOL if dtype == "f32" else 0.1), err
    if dtype == "f32":  # the same values as the default conversion
        base, _ = safetensors_io.read(converted("of9b_mpt7b") / "model.safetensors")
        for k, v in base.items():
            assert np.array_equal(v.float32(), t[k].float32()), k


def test_vision_formats_give_the_same_weights(tmp_path, converted):
    """The TorchScript archive, the open_clip .bin and a .safetensors copy hold the same tower."""
    root = conv_dir() / "vision"
    ts, _ = fconv.vision.read_any(root / "openai_tiny.pt", "vision")
    sd, _ = fconv.vision.read_any(root / "open_clip_tiny.bin", "vision")
    vis = sorted(k for k in sd if k.startswith("visual."))
    assert vis == sorted(k for k in ts if k.startswith("visual."))
    for k in vis:
        assert np.array_equal(ts[k].float32(), sd[k].float32()), k
    st = write_checkpoint({k: arr(v) for k, v in sd.items()}, tmp_path / "clip.safetensors")
    out = convert("of9b_mpt7b", tmp_path / "m", vision=st)
    a, _ = safetensors_io.read(out / "model.safetensors")
    b, _ = safetensors_io.read(converted("of9b_mpt7b") / "model.safetensors")
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k].numpy(), b[k].numpy()), k


def test_checkpoint_as_safetensors_and_wrapped(tmp_path, converted):
    """The same checkpoint as .safetensors, and as a training checkpoint {"model_state_dict": ...}
    re-read: identical output."""
    ck = read_checkpoint("of4b_rpj3b")
    st = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    out = convert("of4b_rpj3b", tmp_path / "m", checkpoint=st)
    a, _ = safetensors_io.read(out / "model.safetensors")
    b, _ = safetensors_io.read(converted("of4b_rpj3b") / "model.safetensors")
    for k in a:
        assert np.array_equal(a[k].numpy(), b[k].numpy()), k


def test_sharded_output(tmp_path):
    out = convert("of9b_mpt7b", tmp_path / "m", **{"max-shard-size": "40KB"})
    cfg = json.loads((out / "config.json").read_text())
    assert len(cfg["weights"]) > 2 and cfg["weights"][0].startswith("model-00001-of-")
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted(cfg["weights"])
    ref = read(conv_dir() / "of9b_mpt7b" / "reference.safetensors")
    assert rel_err(model_logits(out, ref), ref["logits"].data) <= TOL


# ---- listing, CLI --------------------------------------------------------------


def test_list(capsys):
    assert cli_main(["--list"]) == 0
    out = capsys.readouterr().out
    for name, n in (("OpenFlamingo-3B-vitl-mpt1b", 1), ("OpenFlamingo-3B-vitl-mpt1b-langinstruct", 1),
                    ("OpenFlamingo-4B-vitl-rpj3b", 2), ("OpenFlamingo-4B-vitl-rpj3b-langinstruct", 2),
                    ("OpenFlamingo-9B-vitl-mpt7b", 4), ("OpenFlamingo-9B-deprecated", 4)):
        assert name in out
    for lm in ("anas-awadalla/mpt-1b-redpajama-200b", "anas-awadalla/mpt-1b-redpajama-200b-dolly",
               "togethercomputer/RedPajama-INCITE-Base-3B-v1", "togethercomputer/RedPajama-INCITE-Instruct-3B-v1",
               "anas-awadalla/mpt-7b", "ViT-L-14.pt", "--vision-arch ViT-L-14"):
        assert lm in out
    assert cli_main(["--list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["cross_attn_every_n_layers"] for r in data["releases"]] == [1, 1, 2, 2, 4, 4]


def test_cli_subprocess(tmp_path):
    env = subprocess_env()
    argv = [sys.executable, "-m", "flamingo.convert"] + args_for("of9b_mpt7b", tmp_path / "m")
    r = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "m" / "config.json").is_file()
    bad = subprocess.run(argv[:3] + args_for("of9b_mpt7b", tmp_path / "m2", **{"vision-arch": "ViT-Nope-99"}),
                         env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "error:" in bad.stderr and "ViT-Nope-99" in bad.stderr
    usage = subprocess.run(argv[:3] + ["openflamingo", "--lm", "x"], env=env, capture_output=True, text=True)
    assert usage.returncode == 2


def test_out_dir_not_empty(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "something").write_text("x")
    err = conversion_error("of9b_mpt7b", tmp_path, capsys)
    assert "not empty" in err
    convert("of9b_mpt7b", tmp_path / "out", force=True)
    assert (tmp_path / "out" / "config.json").is_file()


@pytest.mark.parametrize("kind,bits", [("q8", 8), ("q4", 4)])
def test_quantize_option(kind, bits, tmp_path, converted):
    """--quantize: the library's quantizer after conversion; logits stay near the float model's
    (q8 within 5 %, q4 within 35 % of max|logit| on these random tiny weights, as the Swift
    fixture tests bound them), and only the quantized directory is left behind."""
    out = convert("of3b_mpt1b", tmp_path / "q", quantize=kind, **{"group-size": 32})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q"]
    with flamingo.Model.load(out) as m:
        info = m.info
        assert (info.weight_type, info.quant_bits, info.quant_group_size) == (kind, bits, 32)
    ref = read(conv_dir() / "of3b_mpt1b" / "reference.safetensors")
    err = rel_err(model_logits(out, ref), model_logits(converted("of3b_mpt1b"), ref))
    assert err <= (0.05 if kind == "q8" else 0.35), err
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"]["bits"] == bits and config["quantization"]["group_size"] == 32
    assert (out / "conversion.json").is_file() and (out / "tokenizer.json").is_file()


def test_quantize_function(tmp_path, converted):
    src = converted("of9b_mpt7b")
    flamingo.quantize(src, tmp_path / "bf16", type="bf16")
    with flamingo.Model.load(tmp_path / "bf16") as m:
        assert m.info.weight_type == "bf16" and m.info.quant_bits == 0
    flamingo.quantize(src, tmp_path / "mixed", type="q4", group_size=32, keep=["*.wte=q8", "vision_encoder.*=f32"])
    config = json.loads((tmp_path / "mixed" / "config.json").read_text())
    assert config["quantization"]["lang_encoder.transformer.wte"] == {"bits": 8, "group_size": 32}
    with pytest.raises(flamingo.IoError, match="not empty"):
        flamingo.quantize(src, tmp_path / "mixed", type="q8")
    with pytest.raises(flamingo.InvalidArgumentError, match="q5"):
        flamingo.quantize(src, tmp_path / "x", type="q5")
    with pytest.raises(flamingo.InvalidArgumentError, match="PATTERN=TYPE"):
        flamingo.quantize(src, tmp_path / "y", keep=["vision_encoder.*"])


# ---- errors ---------------------------------------------------------------------


def test_missing_checkpoint_key(tmp_path, capsys):
    ck = read_checkpoint("of9b_mpt7b")
    victim = "perceiver.layers.1.0.to_kv.weight"
    del ck[victim]
    p = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=p)
    assert f"missing {victim}" in err


def test_missing_xattn_key(tmp_path, capsys):
    ck = read_checkpoint("of9b_mpt7b")
    victim = "lang_encoder.transformer.blocks.3.gated_cross_attn_layer.ff_gate"
    del ck[victim]
    p = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    assert victim in conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=p)


def test_unexpected_checkpoint_key(tmp_path, capsys):
    ck = read_checkpoint("of9b_mpt7b")
    ck["perceiver.bogus"] = Tensor.from_array(np.zeros(3, np.float32))
    ck["lang_encoder.transformer.blocks.0.decoder_layer.attn.Wqkv.weight"] = Tensor.from_array(np.zeros((96, 32), np.float32))
    p = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=p)
    assert "unexpected perceiver.bogus" in err
    assert "lang_encoder.transformer.blocks.0.decoder_layer.attn.Wqkv.weight" in err


def test_wrong_shape(tmp_path, capsys):
    ck = read_checkpoint("of9b_mpt7b")
    name = "lang_encoder.transformer.blocks.3.gated_cross_attn_layer.attn.to_q.weight"
    ck[name] = Tensor.from_array(np.zeros((16, 32), np.float32))
    p = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=p)
    assert name in err and "[16, 32]" in err and "[32, 32]" in err


def test_wrong_geometry_is_a_shape_error(tmp_path, capsys):
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, **{"xattn-geometry": None, "resampler-geometry": None})
    assert "shape" in err and "perceiver.latents" in err


def test_v1_duplicate_spellings_must_agree(tmp_path, capsys):
    ck = read_checkpoint("of9b_v1_llama")
    name = "lang_encoder.gated_cross_attn_layers.3.attn.to_q.weight"
    a = ck[name].numpy().copy()
    a[0, 0] += 1
    ck[name] = Tensor.from_array(a)
    p = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    err = conversion_error("of9b_v1_llama", tmp_path, capsys, checkpoint=p)
    assert name in err and "differ" in err


def test_v1_alias_spelling_alone_is_accepted(tmp_path):
    ck = read_checkpoint("of9b_v1_llama")
    ck = {k: v for k, v in ck.items() if ".gated_cross_attn_layer." not in k}  # keep only the v1 alias
    p = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    out = convert("of9b_v1_llama", tmp_path / "m", checkpoint=p)
    ref = read(conv_dir() / "of9b_v1_llama" / "reference.safetensors")
    assert rel_err(model_logits(out, ref), ref["logits"].data) <= TOL


def test_wrong_every_n(tmp_path, capsys):
    err = conversion_error("of4b_rpj3b", tmp_path, capsys, **{"cross-attn-every-n-layers": 1})
    assert "[1, 3]" in err and "--cross-attn-every-n-layers 2" in err


def test_unknown_arch(tmp_path, capsys):
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, **{"vision-arch": "ViT-Nope-99"})
    assert "ViT-Nope-99" in err and "ViT-L-14" in err


def test_builtin_arch_mismatch(tmp_path, capsys):
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, **{"vision-arch": "ViT-L-14"})
    assert "visual.conv1.weight" in err and "[1024, 3, 14, 14]" in err


def test_arch_table_has_vit_l_14():
    arch, _ = fconv.vision.load_arch("ViT-L-14")
    assert (arch["image_size"], arch["patch_size"], arch["width"], arch["layers"], arch["heads"], arch["mlp_dim"]) == \
        (224, 14, 1024, 24, 16, 4096)
    assert fconv.vision.BUILTIN_ARCHS["ViT-L-14"] == {"image_size": 224, "layers": 24, "width": 1024, "patch_size": 14}


def test_missing_lm_tensor(tmp_path, capsys):
    lm = tmp_path / "lm"
    shutil.copytree(conv_dir() / "of4b_rpj3b" / "lm", lm)
    t, _ = safetensors_io.read(lm / "model.safetensors")
    victim = "gpt_neox.layers.2.mlp.dense_4h_to_h.bias"
    safetensors_io.write(lm / "model.safetensors.new", [(k, arr(v)) for k, v in sorted(t.items()) if k != victim])
    os.replace(lm / "model.safetensors.new", lm / "model.safetensors")
    err = conversion_error("of4b_rpj3b", tmp_path, capsys, lm=lm)
    assert victim in err and "missing" in err


def test_transformers5_neox_checkpoint_without_head(tmp_path):
    """transformers >= 5 names the GPT-NeoX head lm_head, so open_flamingo's checkpoint lacks
    lang_encoder.embed_out.weight and the LM directory stores lm_head.weight: the head comes
    from --lm. Here the LM's head holds the release's trained rows, so logits still match."""
    ck = read_checkpoint("of4b_rpj3b")
    head = ck.pop("lang_encoder.embed_out.weight").numpy()
    p = write_checkpoint({k: arr(v) for k, v in ck.items()}, tmp_path / "ck.safetensors")
    lm = tmp_path / "lm"
    shutil.copytree(conv_dir() / "of4b_rpj3b" / "lm", lm)
    t, _ = safetensors_io.read(lm / "model.safetensors")
    base = t.pop("embed_out.weight").numpy().copy()
    base[: head.shape[0]] = head
    t["lm_head.weight"] = Tensor.from_array(base)
    safetensors_io.write(lm / "model.safetensors", [(k, arr(v) if k != "lm_head.weight" else v) for k, v in sorted(t.items())])
    out = convert("of4b_rpj3b", tmp_path / "m", checkpoint=p, lm=lm)
    notes = json.loads((out / "conversion.json").read_text())["notes"]
    assert any("no lang_encoder.embed_out.weight" in n and "transformers >= 5" in n for n in notes), notes
    ref = read(conv_dir() / "of4b_rpj3b" / "reference.safetensors")
    assert rel_err(model_logits(out, ref), ref["logits"].data) <= TOL


def test_pad_token_changes_vocabulary(tmp_path, capsys):
    """A tokenizer with a pad token gives V one smaller than the checkpoint's embedding rows."""
    lm = tmp_path / "lm"
    shutil.copytree(conv_dir() / "of9b_mpt7b" / "lm", lm)
    cfg = json.loads((lm / "tokenizer_config.json").read_text())
    cfg["pad_token"] = "<|padding|>"
    (lm / "tokenizer_config.json").write_text(json.dumps(cfg))
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, lm=lm)
    assert "403 rows" in err and "402" in err


def test_unsupported_lm_config(tmp_path, capsys):
    lm = tmp_path / "lm"
    shutil.copytree(conv_dir() / "of9b_mpt7b" / "lm", lm)
    cfg = json.loads((lm / "config.json").read_text())
    cfg["attn_config"]["clip_qkv"] = 6
    (lm / "config.json").write_text(json.dumps(cfg))
    assert "clip_qkv" in conversion_error("of9b_mpt7b", tmp_path, capsys, lm=lm)
    cfg["model_type"] = "bloom"
    cfg["architectures"] = ["BloomForCausalLM"]
    (lm / "config.json").write_text(json.dumps(cfg))
    assert "bloom" in conversion_error("of9b_mpt7b", tmp_path, capsys, lm=lm)


def test_corrupt_files(tmp_path, capsys):
    raw = (conv_dir() / "of9b_mpt7b" / "checkpoint.pt").read_bytes()
    cut = tmp_path / "truncated.pt"
    cut.write_bytes(raw[: len(raw) // 2])
    assert "truncated.pt" in conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=cut)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    assert "junk.pt" in conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=junk)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert "empty.pt" in conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=empty)
    # a zip whose storage is shorter than the tensor needs
    bad = tmp_path / "short_storage.pt"
    with zipfile.ZipFile(conv_dir() / "of9b_mpt7b" / "checkpoint.pt") as zin, \
            zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("/data/0"):
                data = data[:4]
            zout.writestr(info.filename, data)
    assert "storage" in conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=bad)
    # a safetensors file whose header points past the end
    t, _ = safetensors_io.read(conv_dir() / "of4b_rpj3b" / "lm" / "model.safetensors")
    lm = tmp_path / "lm"
    shutil.copytree(conv_dir() / "of4b_rpj3b" / "lm", lm)
    data = (lm / "model.safetensors").read_bytes()
    (lm / "model.safetensors").write_bytes(data[:-100])
    assert "model.safetensors" in conversion_error("of4b_rpj3b", tmp_path, capsys, lm=lm)


def _malicious_checkpoint(path: Path, marker: Path):
    """A torch-zip-shaped file whose data.pkl calls os.system (what torch.load without weights_only would run)."""
    cmd = f"touch {marker}".encode()
    pkl = b"\x80\x02cos\nsystem\nq\x00X" + struct.pack("<I", len(cmd)) + cmd + b"q\x01\x85q\x02Rq\x03."
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("checkpoint/data.pkl", pkl)
        z.writestr("checkpoint/version", "3\n")


def test_unsafe_pickle_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    _malicious_checkpoint(evil, marker)
    err = conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=evil)
    assert "refusing" in err and "os.system" in err
    assert not marker.exists()
    with pytest.raises(fconv.UnsafeFileError):
        torchpickle.load(evil)


def test_non_tensor_entries_are_refused(tmp_path, capsys):
    pkl = b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x05s."  # {"a": 5}
    p = tmp_path / "ints.pt"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
        z.writestr("ints/data.pkl", pkl)
    assert "not tensors" in conversion_error("of9b_mpt7b", tmp_path, capsys, checkpoint=p)


# ---- the building blocks ---------------------------------------------------------


def test_tokenizer_cases():
    """OpenFlamingo's additions on pad-token variants, as transformers does them (recorded by the generator)."""
    from flamingo.convert import tokenizer as ftok
    import tempfile

    cases = json.loads((conv_dir() / "tokenizer_cases.json").read_text())
    base = json.loads((conv_dir() / cases["base"]).read_text())
    for c in cases["cases"]:
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            doc = dict(base)
            doc["added_tokens"] = base["added_tokens"] + c.get("extra_added", [])
            (d / "tokenizer.json").write_text(json.dumps(doc))
            (d / "tokenizer_config.json").write_text(json.dumps(c["tokenizer_config"]))
            (d / "special_tokens_map.json").write_text(json.dumps(c["special_tokens_map"]))
            tj, special, _ = ftok.load_base(d, "gpt_neox", None)
            ids = ftok.add_openflamingo_tokens(tj, special)
            want = c["expected"]
            assert ids["vocab"] == want["vocab"], c["name"]
            assert (ids["image"], ids["endofchunk"], ids["pad"]) == (want["image"], want["endofchunk"], want["pad"])
            assert tj.to_doc()["added_tokens"] == want["added_tokens"], c["name"]


def test_bf16_rounding():
    x = np.array([1.0, 1.00390625, 1.005859375, -2.5e-3, 3.0e38, np.inf, np.nan], dtype=np.float32)
    b = float32_to_bf16(x)
    back = to_float32(b, "BF16")
    assert back[0] == 1.0 and back[1] == 1.0  # ties to even
    assert back[2] == np.float32(1.0078125)
    assert np.isinf(back[5]) and np.isnan(back[6])
    assert abs(back[3] - x[3]) / abs(x[3]) < 2 ** -8


def test_safetensors_round_trip(tmp_path):
    ts = {"a": Tensor.from_array(np.arange(6, dtype=np.float32).reshape(2, 3)),
          "b": Tensor("BF16", (2,), lambda: np.array([0x3F80, 0x4000], dtype=np.uint16)),
          "c": Tensor.from_array(np.array([1.5, -2], dtype=np.float16))}
    p = tmp_path / "x.safetensors"
    safetensors_io.write(p, list(ts.items()), {"k": "v"})
    got, meta = safetensors_io.read(p)
    assert meta == {"k": "v"}
    for k in ts:
        assert got[k].dtype == ts[k].dtype and np.array_equal(got[k].numpy(), ts[k].numpy())
    assert list(to_float32(got["b"].numpy(), "BF16")) == [1.0, 2.0]
    raw = p.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0


def test_reader_matches_torch():
    """With torch installed: the restricted unpickler reads exactly what torch.load(weights_only=True) and
    torch.jit.load read."""
    torch = pytest.importorskip("torch")
    root = conv_dir()
    for name in RELEASES:
        mine = read_checkpoint(name)
        ref = torch.load(root / name / "checkpoint.pt", map_location="cpu", weights_only=True)
        assert sorted(mine) == sorted(ref)
        for k, v in ref.items():
            got = mine[k]
            want = v.float().numpy() if v.is_floating_point() else v.numpy()
            g = got.float32() if got.is_float else got.numpy()
            assert np.array_equal(g, want), (name, k)
    obj, script = torchpickle.load(root / "vision" / "openai_tiny.pt")
    assert script
    mine = torchpickle.script_tensors(obj)
    ref = torch.jit.load(str(root / "vision" / "openai_tiny.pt"), map_location="cpu").state_dict()
    for k, v in ref.items():
        assert k in mine and np.array_equal(mine[k].float32(), v.float().numpy()), k


# ---- the Flamingo-paper configuration: a timm NFNet state dict -------------------


def paper_media(ref, frames_per_media):
    px = ref["input.pixels"]
    per = len(px) // px.shape[0]
    frames = [flamingo.Media.pixels(px.data[i * per:(i + 1) * per]) for i in range(px.shape[0])]
    items, at = [], 0
    for f in frames_per_media:
        items.append(frames[at] if f == 1 else flamingo.Media.frames(frames[at:at + f]))
        at += f
    return items


def test_nfnet_video_model_converts_and_matches_pytorch(tmp_path):
    e = expected("paper_nfnet")
    out = convert("paper_nfnet", tmp_path / "model")
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["vision"]["kind"] == "nfnet"
    assert cfg["preprocess"]["mean"] == [0.485, 0.456, 0.406]
    assert {k: cfg["resampler"][k] for k in e["resampler"]} == e["resampler"]
    names = safetensors_io.read(out / "model.safetensors")[0]
    assert not any(n.startswith("vision_encoder.head.") for n in names)
    ref = read(conv_dir() / "paper_nfnet" / "reference.safetensors")
    L = len(ref["input.input_ids"])
    with flamingo.Model(out) as m, m.session() as s:
        last = s.set_prompt(e["prompt"], paper_media(ref, e["frames_per_media"]))
        assert len(s) == L
        assert rel_err(last, ref["logits"].row(L - 1)) <= TOL


def test_nfnet_structure_mismatch(tmp_path, capsys):
    arch = json.loads((conv_dir() / "paper_nfnet" / "nfnet_arch.json").read_text())
    arch["depths"] = [1, 2, 2, 1]
    bad = tmp_path / "arch.json"
    bad.write_text(json.dumps(arch))
    err = conversion_error("paper_nfnet", tmp_path, capsys, **{"vision-arch": str(bad)})
    assert "blocks per stage [1, 2, 1, 1]" in err


def test_nfnet_variant_names_and_image_size():
    from flamingo.convert import nfnet
    assert nfnet.parse_arch("dm_nfnet_f6", 320) == {"kind": "nfnet", "variant": "f6", "image_size": 320}
    assert nfnet.parse_arch("f0", None)["image_size"] == 256
    assert nfnet.parse_arch("ViT-L-14", None) is None


def test_image_size_flag_is_nfnet_only(tmp_path, capsys):
    err = conversion_error("of3b_mpt1b", tmp_path, capsys, **{"vision-image-size": 64})
    assert "NFNet" in err


# ---- the restricted unpickler on hostile input (tools/fuzz/python/fuzz_unpickler.py) --------


def _pu(s: str) -> bytes:
    """BINUNICODE."""
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _pints(values) -> bytes:
    return b"(" + b"".join(b"J" + struct.pack("<i", v) for v in values) + b"t"


def _ptensor(size, stride, numel=16, size_ops=None) -> bytes:
    """Pickle ops pushing torch._utils._rebuild_tensor_v2(storage '0' (F32), 0, size, stride, False, OrderedDict())."""
    pid = b"(" + _pu("storage") + b"ctorch\nFloatStorage\n" + _pu("0") + _pu("cpu") + b"J" + struct.pack("<i", numel) + b"tQ"
    return (b"ctorch._utils\n_rebuild_tensor_v2\n(" + pid + b"K\x00" + (size_ops or _pints(size)) + _pints(stride)
            + b"\x89ccollections\nOrderedDict\n)Rt" + b"R")


def _pdict(**items) -> bytes:
    return b"\x80\x02}(" + b"".join(_pu(k) + v for k, v in items.items()) + b"u."


def _torch_zip(path: Path, pkl: bytes, storage: bytes = None, script: bool = False) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", b"little")
        z.writestr("archive/data/0", np.arange(16, dtype="<f4").tobytes() if storage is None else storage)
        if script:
            z.writestr("archive/constants.pkl", b"\x80\x02).")
    return path


def _read_tensors(path: Path) -> dict:
    obj, script = torchpickle.load(path)
    tensors = torchpickle.script_tensors(obj) if script else torchpickle.tensor_dict(obj, path)
    return {k: t.numpy() for k, t in tensors.items()}


def test_torchpickle_non_contiguous_tensor(tmp_path):
    """A transposed view: materialising it called a bool (a local shadowed tensors.contiguous)."""
    w = _read_tensors(_torch_zip(tmp_path / "t.pt", _pdict(w=_ptensor((4, 2), (1, 4)))))["w"]
    assert w.flags.c_contiguous
    assert w.tolist() == np.arange(8, dtype=np.float32).reshape(2, 4).T.tolist()


@pytest.mark.parametrize("pkl, error, message", [
    # BINBYTES8 / BYTEARRAY8 of 2**62 bytes: pickle allocated them before reading (MemoryError)
    (b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62) + b".", fconv.CorruptFileError, "truncated"),
    (b"\x80\x05\x96" + struct.pack("<Q", 1 << 62) + b".", fconv.UnsafeFileError, "BYTEARRAY8"),
    # a dict key of 300000 nested tuples: hashing it overflowed the C stack (segfault)
    (b"\x80\x02})" + b"\x85" * 300_000 + b"K\x01s.", fconv.CorruptFileError, "nested more than"),
    # a persistent id of 5000 nested lists: its repr in the message raised RecursionError
    (b"\x80\x02" + b"(" * 5000 + b"l" * 5000 + b"Q.", fconv.UnsafeFileError, "unexpected persistent id"),
    # tensor size (inf,): int(inf) raised OverflowError
    (_pdict(w=_ptensor(None, (1,), size_ops=b"(G" + struct.pack(">d", float("inf")) + b"t")), fconv.CorruptFileError,
     "not a tuple of at most 32 64-bit integers"),
    # an empty tensor of size (0, 2**62): np.zeros raised ValueError when it was read
    (_pdict(w=_ptensor(None, (1, 1), size_ops=b"(K\x00\x8a\x08" + (1 << 62).to_bytes(8, "little") + b"t")),
     fconv.CorruptFileError, "invalid tensor geometry"),
    # BUILD setting a tensor's loader (AttributeError when read) and shadowing OrderedDict.items
    (_pdict(w=_ptensor((2,), (1,)) + b"(N}" + _pu("_load") + b"ccollections\nOrderedDict\nstb"), fconv.UnsafeFileError,
     "BUILD"),
    (b"\x80\x02ccollections\nOrderedDict\n)R}" + _pu("items") + b"ctorch\nSize\nsb.", fconv.UnsafeFileError, "BUILD"),
    # a size of 32 references to one 512 kbit integer: minutes of big-number arithmetic
    (_pdict(w=_ptensor(None, (1,) * 32, size_ops=b"\x8b" + struct.pack("<i", 65536) + b"\x01" * 65536 + b"q\x070("
                       + b"h\x07" * 32 + b"t")), fconv.CorruptFileError, "64-bit integers"),
    # OrderedDict([(1, 2, 3)]): a ValueError from the allowed callable
    (b"\x80\x02ccollections\nOrderedDict\n(K\x01K\x02K\x03t\x85\x85R.", fconv.CorruptFileError,
     "calling collections.OrderedDict"),
], ids=["binbytes8-2^62", "bytearray8-2^62", "tuple-key-300000-deep", "pid-5000-deep-list", "size-inf",
        "empty-size-2^62", "build-tensor", "build-ordereddict-items", "size-huge-ints", "ordereddict-bad-pairs"])
def test_torchpickle_hostile_pickles_are_refused(tmp_path, pkl, error, message):
    with pytest.raises(error, match=message):
        _read_tensors(_torch_zip(tmp_path / "t.pt", pkl))


def test_torchpickle_overlapping_tensor_larger_than_storage(tmp_path):
    """A 1000 x 1000 view with strides (1, 1) of 2000 floats would materialise 500x its storage."""
    p = _torch_zip(tmp_path / "t.pt", _pdict(w=_ptensor((1000, 1000), (1, 1), numel=2000)), storage=bytes(8000))
    with pytest.raises(fconv.CorruptFileError, match="more than its storage of 2000"):
        _read_tensors(p)


def test_torchpickle_copy_budget(tmp_path):
    """3000 calls of build_intlist(*20000 items) from a 46 kB pickle: 60M copied references (500 MB) before."""
    pkl = (b"\x80\x02ctorch.jit._pickle\nbuild_intlist\nq\x00(" + b"K\x01" * 20000 + b"tq\x01"
           + b"h\x00h\x01R" * 3000 + b"l.")
    with pytest.raises(fconv.CorruptFileError, match="copies more data"):
        _read_tensors(_torch_zip(tmp_path / "t.pt", pkl, script=True))


def test_torchpickle_deep_torchscript_objects(tmp_path):
    """3000 nested TorchScript objects: script_tensors recursed (RecursionError)."""
    pkl = b"\x80\x02c__torch__.m\nM\nq\x00" + _ptensor((2,), (1,)) + b"q\x01"
    for _ in range(3000):
        pkl += b"0h\x00)\x81}" + _pu("c") + b"h\x01sbq\x01"
    tensors = _read_tensors(_torch_zip(tmp_path / "t.pt", pkl + b".", script=True))
    assert list(tensors) == [".".join(["c"] * 3000)]


def test_torchpickle_damaged_zip_entries(tmp_path):
    """An unsupported compression method (NotImplementedError, found by the fuzzer) and a corrupt
    deflate stream (zlib.error) escaped as raw exceptions."""
    p = _torch_zip(tmp_path / "method.pt", _pdict(w=_ptensor((2,), (1,))))
    b = bytearray(p.read_bytes())
    i = b.find(b"PK\x01\x02")
    while i >= 0:  # every central directory entry: compression method 99
        b[i + 10:i + 12] = struct.pack("<H", 99)
        i = b.find(b"PK\x01\x02", i + 4)
    p.write_bytes(bytes(b))
    with pytest.raises(fconv.CorruptFileError, match="compression method"):
        _read_tensors(p)
    p = tmp_path / "deflate.pt"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", _pdict(w=_ptensor((2,), (1,))) * 20)
        z.writestr("archive/data/0", bytes(64))
    b = bytearray(p.read_bytes())
    b[60:70] = b"\xff" * 10  # inside the deflated data.pkl
    p.write_bytes(bytes(b))
    with pytest.raises(fconv.CorruptFileError, match="cannot read data.pkl"):
        _read_tensors(p)
