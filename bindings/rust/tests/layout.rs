//! The `#[repr(C)]` mirrors must match the C layout of flamingo.h on every
//! 64-bit Linux target (LP64: enums are 4-byte ints, uint64_t is 8-aligned).
//! Computed by hand, and printed by `bindings/c/layout.c` for a cross-check:
//!
//! flamingo_device_info: six 4-byte fields (struct_size, backend, type,
//!   platform_index, device_index, compute_units) = 24 bytes, memory_bytes
//!   at 24 (already 8-aligned), name[256] at 32, platform_name[256] at 288,
//!   vendor[128] at 544, driver_version[128] at 672, end 800; 800 % 8 == 0,
//!   so no tail padding: 800.
//! flamingo_model_params: four 4-byte fields: 16 (align 4).
//! flamingo_model_info: struct_size at 0, three char[32] at 4, 36, 68 (end
//!   100), 23 4-byte integers at 100..192, image_mean[3] at 192, image_std[3]
//!   at 204 (end 216, 8-aligned), num_parameters at 216, weight_bytes at 224,
//!   end 232 (8-aligned): 232.

use flamingo::sys::*;
use std::mem::{align_of, offset_of, size_of};

#[test]
fn device_info() {
    assert_eq!(size_of::<flamingo_device_info>(), 800);
    assert_eq!(align_of::<flamingo_device_info>(), 8);
    assert_eq!(offset_of!(flamingo_device_info, struct_size), 0);
    assert_eq!(offset_of!(flamingo_device_info, backend), 4);
    assert_eq!(offset_of!(flamingo_device_info, type_), 8);
    assert_eq!(offset_of!(flamingo_device_info, platform_index), 12);
    assert_eq!(offset_of!(flamingo_device_info, device_index), 16);
    assert_eq!(offset_of!(flamingo_device_info, compute_units), 20);
    assert_eq!(offset_of!(flamingo_device_info, memory_bytes), 24);
    assert_eq!(offset_of!(flamingo_device_info, name), 32);
    assert_eq!(offset_of!(flamingo_device_info, platform_name), 288);
    assert_eq!(offset_of!(flamingo_device_info, vendor), 544);
    assert_eq!(offset_of!(flamingo_device_info, driver_version), 672);
}

#[test]
fn model_params() {
    assert_eq!(size_of::<flamingo_model_params>(), 16);
    assert_eq!(align_of::<flamingo_model_params>(), 4);
    assert_eq!(offset_of!(flamingo_model_params, backend), 4);
    assert_eq!(offset_of!(flamingo_model_params, device_index), 8);
    assert_eq!(offset_of!(flamingo_model_params, n_threads), 12);
}

#[test]
fn model_info() {
    assert_eq!(size_of::<flamingo_model_info>(), 232);
    assert_eq!(align_of::<flamingo_model_info>(), 8);
    assert_eq!(offset_of!(flamingo_model_info, architecture), 4);
    assert_eq!(offset_of!(flamingo_model_info, vision_kind), 36);
    assert_eq!(offset_of!(flamingo_model_info, lm_family), 68);
    assert_eq!(offset_of!(flamingo_model_info, image_size), 100);
    assert_eq!(offset_of!(flamingo_model_info, vision_tokens), 120);
    assert_eq!(offset_of!(flamingo_model_info, num_latents), 136);
    assert_eq!(offset_of!(flamingo_model_info, hidden_size), 140);
    assert_eq!(offset_of!(flamingo_model_info, vocab_size), 160);
    assert_eq!(offset_of!(flamingo_model_info, num_cross_attn_layers), 168);
    assert_eq!(offset_of!(flamingo_model_info, image_token_id), 172);
    assert_eq!(offset_of!(flamingo_model_info, eos_token_id), 188);
    assert_eq!(offset_of!(flamingo_model_info, image_mean), 192);
    assert_eq!(offset_of!(flamingo_model_info, image_std), 204);
    assert_eq!(offset_of!(flamingo_model_info, num_parameters), 216);
    assert_eq!(offset_of!(flamingo_model_info, weight_bytes), 224);
}

#[test]
fn enums_are_c_int() {
    assert_eq!(size_of::<flamingo_status>(), 4);
    assert_eq!(size_of::<flamingo_backend>(), 4);
    assert_eq!(size_of::<flamingo_log_callback>(), size_of::<usize>());
}
