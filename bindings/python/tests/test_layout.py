"""The ctypes mirrors must match the C layout (see bindings/c/layout.c, which
prints the values asserted here; they are computed by hand in
bindings/rust/tests/layout.rs)."""

import ctypes

from flamingo import _lib


def test_device_info_layout():
    S = _lib.flamingo_device_info
    assert ctypes.sizeof(S) == 800
    assert ctypes.alignment(S) == 8
    offsets = dict(struct_size=0, backend=4, type=8, platform_index=12, device_index=16,
                   compute_units=20, memory_bytes=24, name=32, platform_name=288, vendor=544,
                   driver_version=672)
    for name, off in offsets.items():
        assert getattr(S, name).offset == off, name


def test_model_params_layout():
    S = _lib.flamingo_model_params
    assert ctypes.sizeof(S) == 16
    for name, off in dict(struct_size=0, backend=4, device_index=8, n_threads=12).items():
        assert getattr(S, name).offset == off, name


def test_model_info_layout():
    S = _lib.flamingo_model_info
    assert ctypes.sizeof(S) == 264
    assert ctypes.alignment(S) == 8
    u32 = ["image_size", "patch_size", "vision_width", "vision_layers", "vision_heads",
           "vision_tokens", "resampler_depth", "resampler_heads", "resampler_dim_head",
           "num_latents", "hidden_size", "num_layers", "num_heads", "intermediate_size",
           "max_seq_len", "vocab_size", "cross_attn_every_n_layers", "num_cross_attn_layers",
           "image_token_id", "endofchunk_token_id", "pad_token_id", "bos_token_id", "eos_token_id"]
    expect = dict(struct_size=0, architecture=4, vision_kind=36, lm_family=68)
    expect.update({name: 100 + 4 * i for i, name in enumerate(u32)})
    expect.update(image_mean=192, image_std=204, num_parameters=216, weight_bytes=224, visual_dim=232,
                  weight_type=236, quant_bits=252, quant_group_size=256)
    for name, off in expect.items():
        assert getattr(S, name).offset == off, name
    assert [f[0] for f in S._fields_] == ["struct_size", "architecture", "vision_kind", "lm_family"] + u32 + [
        "image_mean", "image_std", "num_parameters", "weight_bytes", "visual_dim", "weight_type", "quant_bits",
        "quant_group_size"]


def test_quantize_params_layout():
    S = _lib.flamingo_quantize_params
    assert ctypes.sizeof(S) == 32
    assert ctypes.alignment(S) == 8
    for name, off in dict(struct_size=0, type=4, group_size=12, search=16, overwrite=20, keep=24).items():
        assert getattr(S, name).offset == off, name


def test_session_params_layout():
    S = _lib.flamingo_session_params
    assert ctypes.sizeof(S) == 8
    assert ctypes.alignment(S) == 4
    assert S.struct_size.offset == 0 and S.n_ctx.offset == 4


def test_generate_params_layout():
    S = _lib.flamingo_generate_params
    assert ctypes.sizeof(S) == 80
    assert ctypes.alignment(S) == 8
    names = ["struct_size", "max_new_tokens", "min_new_tokens", "do_sample", "temperature", "top_k", "top_p",
             "num_beams", "length_penalty", "early_stopping", "no_repeat_ngram_size", "repetition_penalty",
             "stop_at_endofchunk", "stop_at_eos"]
    expect = {name: 4 * i for i, name in enumerate(names)}
    expect.update(seed=56, callback=64, callback_user_data=72)
    assert [f[0] for f in S._fields_] == list(expect)
    for name, off in expect.items():
        assert getattr(S, name).offset == off, name
    assert dict(S._fields_)["seed"] is ctypes.c_uint64
    for name in ("temperature", "top_p", "length_penalty", "repetition_penalty"):
        assert dict(S._fields_)[name] is ctypes.c_float, name


def test_callback_and_enum_sizes():
    assert ctypes.sizeof(_lib.flamingo_token_callback) == ctypes.sizeof(ctypes.c_void_p)
    assert ctypes.sizeof(_lib.flamingo_stop_reason) == 4
    assert ctypes.sizeof(_lib.flamingo_status) == 4
    assert _lib.flamingo_token_callback._restype_ is ctypes.c_int32
    assert _lib.flamingo_token_callback._argtypes_ == (ctypes.c_int32, ctypes.c_void_p)


def test_media_layout():
    S = _lib.flamingo_media
    assert ctypes.sizeof(S) == 48
    assert ctypes.alignment(S) == 8
    expect = dict(struct_size=0, kind=4, path=8, data=16, size=24, width=32, height=36, channels=40)
    assert [f[0] for f in S._fields_] == list(expect)
    for name, off in expect.items():
        assert getattr(S, name).offset == off, name
    assert dict(S._fields_)["size"] is ctypes.c_size_t
    assert ctypes.sizeof(_lib.flamingo_media_kind) == 4
    kinds = (_lib.FLAMINGO_MEDIA_FILE, _lib.FLAMINGO_MEDIA_ENCODED, _lib.FLAMINGO_MEDIA_RGB,
             _lib.FLAMINGO_MEDIA_PIXELS, _lib.FLAMINGO_MEDIA_VISUAL_TOKENS)
    assert kinds == (0, 1, 2, 3, 4)
    assert _lib.FLAMINGO_TOKENIZE_ADD_SPECIAL == 1 and _lib.FLAMINGO_DETOKENIZE_SKIP_SPECIAL == 1
