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
//!   visual_dim at 232, weight_type[16] at 236, quant_bits at 252,
//!   quant_group_size at 256, end 260, padded to the 8-byte alignment: 264.
//! flamingo_session_params: two 4-byte fields: 8 (align 4).
//! flamingo_generate_params: 14 4-byte fields (uint32_t or float) at 0..56,
//!   seed (uint64_t) at 56 (8-aligned), callback (a function pointer) at 64,
//!   callback_user_data at 72, end 80 (align 8).
//! flamingo_media: struct_size and kind at 0 and 4, path at 8, data at 16,
//!   size (size_t) at 24, width, height, channels at 32, 36, 40, end 44,
//!   padded to 48 (align 8).

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
    assert_eq!(size_of::<flamingo_model_info>(), 264);
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
    assert_eq!(offset_of!(flamingo_model_info, visual_dim), 232);
    assert_eq!(offset_of!(flamingo_model_info, weight_type), 236);
    assert_eq!(offset_of!(flamingo_model_info, quant_bits), 252);
    assert_eq!(offset_of!(flamingo_model_info, quant_group_size), 256);
}

#[test]
fn session_params() {
    assert_eq!(size_of::<flamingo_session_params>(), 8);
    assert_eq!(align_of::<flamingo_session_params>(), 4);
    assert_eq!(offset_of!(flamingo_session_params, struct_size), 0);
    assert_eq!(offset_of!(flamingo_session_params, n_ctx), 4);
    assert_eq!(flamingo_session_params::new().struct_size, 8);
}

#[test]
fn generate_params() {
    assert_eq!(size_of::<flamingo_generate_params>(), 80);
    assert_eq!(align_of::<flamingo_generate_params>(), 8);
    assert_eq!(offset_of!(flamingo_generate_params, struct_size), 0);
    assert_eq!(offset_of!(flamingo_generate_params, max_new_tokens), 4);
    assert_eq!(offset_of!(flamingo_generate_params, min_new_tokens), 8);
    assert_eq!(offset_of!(flamingo_generate_params, do_sample), 12);
    assert_eq!(offset_of!(flamingo_generate_params, temperature), 16);
    assert_eq!(offset_of!(flamingo_generate_params, top_k), 20);
    assert_eq!(offset_of!(flamingo_generate_params, top_p), 24);
    assert_eq!(offset_of!(flamingo_generate_params, num_beams), 28);
    assert_eq!(offset_of!(flamingo_generate_params, length_penalty), 32);
    assert_eq!(offset_of!(flamingo_generate_params, early_stopping), 36);
    assert_eq!(offset_of!(flamingo_generate_params, no_repeat_ngram_size), 40);
    assert_eq!(offset_of!(flamingo_generate_params, repetition_penalty), 44);
    assert_eq!(offset_of!(flamingo_generate_params, stop_at_endofchunk), 48);
    assert_eq!(offset_of!(flamingo_generate_params, stop_at_eos), 52);
    assert_eq!(offset_of!(flamingo_generate_params, seed), 56);
    assert_eq!(offset_of!(flamingo_generate_params, callback), 64);
    assert_eq!(offset_of!(flamingo_generate_params, callback_user_data), 72);
    assert_eq!(size_of::<flamingo_token_callback>(), size_of::<usize>());
    assert_eq!(size_of::<flamingo_stop_reason>(), 4);
    let z = flamingo_generate_params::zeroed();
    assert_eq!(z.struct_size, 80);
    assert!(z.callback.is_none() && z.callback_user_data.is_null());
}

#[test]
fn enums_are_c_int() {
    assert_eq!(size_of::<flamingo_status>(), 4);
    assert_eq!(size_of::<flamingo_backend>(), 4);
    assert_eq!(size_of::<flamingo_log_callback>(), size_of::<usize>());
}

#[test]
fn media() {
    assert_eq!(size_of::<flamingo_media>(), 48);
    assert_eq!(align_of::<flamingo_media>(), 8);
    assert_eq!(offset_of!(flamingo_media, struct_size), 0);
    assert_eq!(offset_of!(flamingo_media, kind), 4);
    assert_eq!(offset_of!(flamingo_media, path), 8);
    assert_eq!(offset_of!(flamingo_media, data), 16);
    assert_eq!(offset_of!(flamingo_media, size), 24);
    assert_eq!(offset_of!(flamingo_media, width), 32);
    assert_eq!(offset_of!(flamingo_media, height), 36);
    assert_eq!(offset_of!(flamingo_media, channels), 40);
    assert_eq!(size_of::<flamingo_media_kind>(), 4);
    let m = flamingo_media::new(FLAMINGO_MEDIA_RGB);
    assert_eq!((m.struct_size, m.kind), (48, 2));
    assert!(m.path.is_null() && m.data.is_null());
    assert_eq!(
        [
            FLAMINGO_MEDIA_FILE,
            FLAMINGO_MEDIA_ENCODED,
            FLAMINGO_MEDIA_RGB,
            FLAMINGO_MEDIA_PIXELS,
            FLAMINGO_MEDIA_VISUAL_TOKENS
        ],
        [0, 1, 2, 3, 4]
    );
    assert_eq!((FLAMINGO_TOKENIZE_ADD_SPECIAL, FLAMINGO_DETOKENIZE_SKIP_SPECIAL), (1, 1));
}
