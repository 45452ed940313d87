import ctypes
import gc
import json
import math
import struct
import threading
from pathlib import Path

import pytest

import flamingo
from conftest import require_fixture


# ---- error paths (no fixture needed) ---------------------------------------


def test_load_missing_dir(tmp_path):
    with pytest.raises(flamingo.IoError) as e:
        flamingo.Model.load(tmp_path / "does-not-exist")
    assert e.value.status == flamingo.Status.IO
    assert e.value.message
    assert isinstance(e.value, flamingo.FlamingoError)


def test_load_dir_without_config(tmp_path):
    with pytest.raises(flamingo.IoError):
        flamingo.Model.load(tmp_path)


def test_load_garbage_config(garbage_model_dir):
    with pytest.raises(flamingo.InvalidFormatError) as e:
        flamingo.Model.load(str(garbage_model_dir))
    assert e.value.status == flamingo.Status.INVALID_FORMAT and e.value.message


def test_load_bad_arguments(tmp_path):
    with pytest.raises(ValueError):
        flamingo.Model.load(tmp_path, backend="cuda")
    with pytest.raises(ValueError):
        flamingo.Model.load(tmp_path, n_threads=-1)
    with pytest.raises(ValueError):
        flamingo.Model.load(tmp_path, device_index=2**31)
    with pytest.raises(ValueError):
        flamingo.Model.load("a\0b")


# ---- fixtures ----------------------------------------------------------------


def _f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _weights_totals(d: Path, config: dict):
    files = config.get("weights") or sorted(p.name for p in d.glob("*.safetensors"))
    params = nbytes = 0
    for name in files:
        with open(d / name, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        for key, t in header.items():
            if key == "__metadata__":
                continue
            params += math.prod(t["shape"])
            nbytes += t["data_offsets"][1] - t["data_offsets"][0]
    return params, nbytes


def test_model_info_matches_config(fixture_dir):
    config = json.loads((fixture_dir / "config.json").read_text())
    v, r, x, lm = config["vision"], config["resampler"], config["cross_attention"], config["language_model"]
    tokens, pre = config["tokens"], config["preprocess"]
    with flamingo.Model.load(fixture_dir) as m:
        info = m.info
    assert isinstance(info, flamingo.ModelInfo)
    assert info.architecture == config["architecture"] == "openflamingo"
    assert info.vision_kind == v["kind"]
    assert info.lm_family == lm["family"]
    assert info.lm_family in ("mpt", "mosaic_gpt", "gpt_neox", "llama")
    assert (info.image_size, info.patch_size) == (v["image_size"], v["patch_size"])
    assert (info.vision_width, info.vision_layers, info.vision_heads) == (v["width"], v["layers"], v["heads"])
    grid = v["image_size"] // v["patch_size"]
    assert info.vision_tokens in (grid * grid, grid * grid + 1)
    assert (info.resampler_depth, info.resampler_heads, info.resampler_dim_head, info.num_latents) == (
        r["depth"], r["heads"], r["dim_head"], r["num_latents"])
    assert (info.hidden_size, info.num_layers, info.num_heads) == (lm["hidden_size"], lm["layers"], lm["heads"])
    assert (info.intermediate_size, info.max_seq_len, info.vocab_size) == (
        lm["intermediate_size"], lm["max_seq_len"], lm["vocab_size"])
    every = x.get("every_n_layers", 1)
    assert info.cross_attn_every_n_layers == every
    assert info.num_cross_attn_layers == sum(1 for i in range(lm["layers"]) if (i + 1) % every == 0)

    def tok(key):
        return -1 if tokens.get(key) is None else tokens[key]

    assert info.image_token_id == tok("image")
    assert info.endofchunk_token_id == tok("endofchunk")
    assert info.pad_token_id == tok("pad")
    assert info.bos_token_id == tok("bos")
    assert info.eos_token_id == tok("eos")
    mean = pre.get("mean", [0.48145466, 0.4578275, 0.40821073])
    std = pre.get("std", [0.26862954, 0.26130258, 0.27577711])
    assert info.image_mean == tuple(_f32(m) for m in mean)
    assert info.image_std == tuple(_f32(s) for s in std)
    params, nbytes = _weights_totals(fixture_dir, config)
    assert (info.num_parameters, info.weight_bytes) == (params, nbytes)


def test_model_info_is_frozen(any_fixture_dir):
    with flamingo.Model.load(any_fixture_dir) as m:
        info = m.info
        assert m.info is info  # cached: the model is immutable
    with pytest.raises(Exception):
        info.hidden_size = 1
    assert hash(info) == hash(flamingo.ModelInfo(**info.__dict__))


def test_load_with_explicit_params(any_fixture_dir):
    with flamingo.Model.load(any_fixture_dir, backend="cpu", device_index=-1, n_threads=1) as a:
        with flamingo.Model.load(any_fixture_dir, backend=flamingo.Backend.CPU, device_index=0) as b:
            assert a.info == b.info


def test_load_unknown_device(any_fixture_dir):
    with pytest.raises(flamingo.InvalidArgumentError):
        flamingo.Model.load(any_fixture_dir, device_index=10**6)
    with pytest.raises(flamingo.InvalidArgumentError):
        flamingo.Model.load(any_fixture_dir, backend=77)


def test_close_twice(any_fixture_dir):
    m = flamingo.Model.load(any_fixture_dir)
    assert not m.closed
    m.close()
    m.close()
    assert m.closed
    with pytest.raises(ValueError):
        m.info
    with m:  # entering a closed model is harmless, exiting closes again
        pass


def test_model_cannot_be_copied(any_fixture_dir):
    import copy
    import pickle

    with flamingo.Model.load(any_fixture_dir) as m:
        for f in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError):
                f(m)


def test_context_manager_and_del(any_fixture_dir):
    with flamingo.Model.load(any_fixture_dir) as m:
        assert m.info.architecture == "openflamingo"
    assert m.closed
    m2 = flamingo.Model.load(any_fixture_dir)
    del m2
    gc.collect()


def test_concurrent_loads(any_fixture_dir):
    with flamingo.Model.load(any_fixture_dir) as shared:
        expect = shared.info
        results, errors = [], []

        def worker():
            try:
                with flamingo.Model.load(any_fixture_dir, n_threads=1) as m:
                    results.append(m.info)
                c = flamingo._lib.flamingo_model_info()
                c.struct_size = ctypes.sizeof(c)
                flamingo._check(flamingo._lib.lib().flamingo_model_get_info(shared.handle, ctypes.byref(c)))
                results.append(flamingo.ModelInfo._from_c(c))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert results == [expect] * 8
