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
    assert ctypes.sizeof(S) == 232
    assert ctypes.alignment(S) == 8
    u32 = ["image_size", "patch_size", "vision_width", "vision_layers", "vision_heads",
           "vision_tokens", "resampler_depth", "resampler_heads", "resampler_dim_head",
           "num_latents", "hidden_size", "num_layers", "num_heads", "intermediate_size",
           "max_seq_len", "vocab_size", "cross_attn_every_n_layers", "num_cross_attn_layers",
           "image_token_id", "endofchunk_token_id", "pad_token_id", "bos_token_id", "eos_token_id"]
    expect = dict(struct_size=0, architecture=4, vision_kind=36, lm_family=68)
    expect.update({name: 100 + 4 * i for i, name in enumerate(u32)})
    expect.update(image_mean=192, image_std=204, num_parameters=216, weight_bytes=224)
    for name, off in expect.items():
        assert getattr(S, name).offset == off, name
