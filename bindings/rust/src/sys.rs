//! Raw declarations of `include/flamingo.h`, one to one.
//!
//! C enums are declared as `c_int` type aliases with constants rather than
//! Rust enums: a value the library adds later must not be undefined behaviour.
//! The structs are `#[repr(C)]` mirrors of the header (checked by
//! `tests/layout.rs`; `bindings/c/layout.c` prints the C values).

#![allow(non_camel_case_types)]

use core::ffi::{c_char, c_int, c_void};

pub const FLAMINGO_VERSION_MAJOR: u32 = 0;
pub const FLAMINGO_VERSION_MINOR: u32 = 1;
pub const FLAMINGO_VERSION_PATCH: u32 = 0;
pub const FLAMINGO_VERSION_STRING: &str = "0.1.0";
pub const FLAMINGO_ABI_VERSION: u32 = 1;

pub type flamingo_status = c_int;
pub const FLAMINGO_OK: flamingo_status = 0;
pub const FLAMINGO_ERROR_INVALID_ARGUMENT: flamingo_status = 1;
pub const FLAMINGO_ERROR_IO: flamingo_status = 2;
pub const FLAMINGO_ERROR_INVALID_FORMAT: flamingo_status = 3;
pub const FLAMINGO_ERROR_UNSUPPORTED: flamingo_status = 4;
pub const FLAMINGO_ERROR_OUT_OF_MEMORY: flamingo_status = 5;
pub const FLAMINGO_ERROR_BACKEND: flamingo_status = 6;
pub const FLAMINGO_ERROR_NOT_FOUND: flamingo_status = 7;
pub const FLAMINGO_ERROR_BUFFER_TOO_SMALL: flamingo_status = 8;
pub const FLAMINGO_ERROR_CANCELLED: flamingo_status = 9;
pub const FLAMINGO_ERROR_INTERNAL: flamingo_status = 10;

pub type flamingo_log_level = c_int;
pub const FLAMINGO_LOG_DEBUG: flamingo_log_level = 0;
pub const FLAMINGO_LOG_INFO: flamingo_log_level = 1;
pub const FLAMINGO_LOG_WARN: flamingo_log_level = 2;
pub const FLAMINGO_LOG_ERROR: flamingo_log_level = 3;
pub const FLAMINGO_LOG_NONE: flamingo_log_level = 4;

pub type flamingo_log_callback =
    Option<unsafe extern "C" fn(level: flamingo_log_level, message: *const c_char, user_data: *mut c_void)>;

pub type flamingo_backend = c_int;
pub const FLAMINGO_BACKEND_CPU: flamingo_backend = 0;
pub const FLAMINGO_BACKEND_OPENCL: flamingo_backend = 1;

pub type flamingo_device_type = c_int;
pub const FLAMINGO_DEVICE_CPU: flamingo_device_type = 0;
pub const FLAMINGO_DEVICE_GPU: flamingo_device_type = 1;
pub const FLAMINGO_DEVICE_ACCELERATOR: flamingo_device_type = 2;
pub const FLAMINGO_DEVICE_OTHER: flamingo_device_type = 3;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct flamingo_device_info {
    pub struct_size: u32,
    pub backend: flamingo_backend,
    pub type_: flamingo_device_type,
    pub platform_index: i32,
    pub device_index: i32,
    pub compute_units: u32,
    pub memory_bytes: u64,
    pub name: [c_char; 256],
    pub platform_name: [c_char; 256],
    pub vendor: [c_char; 128],
    pub driver_version: [c_char; 128],
}

/// Opaque model handle.
#[repr(C)]
pub struct flamingo_model {
    _private: [u8; 0],
    // Not Send/Sync/Unpin by itself; the safe wrapper decides.
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct flamingo_model_params {
    pub struct_size: u32,
    pub backend: flamingo_backend,
    pub device_index: i32,
    pub n_threads: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct flamingo_model_info {
    pub struct_size: u32,
    pub architecture: [c_char; 32],
    pub vision_kind: [c_char; 32],
    pub lm_family: [c_char; 32],
    pub image_size: u32,
    pub patch_size: u32,
    pub vision_width: u32,
    pub vision_layers: u32,
    pub vision_heads: u32,
    pub vision_tokens: u32,
    pub resampler_depth: u32,
    pub resampler_heads: u32,
    pub resampler_dim_head: u32,
    pub num_latents: u32,
    pub hidden_size: u32,
    pub num_layers: u32,
    pub num_heads: u32,
    pub intermediate_size: u32,
    pub max_seq_len: u32,
    pub vocab_size: u32,
    pub cross_attn_every_n_layers: u32,
    pub num_cross_attn_layers: u32,
    pub image_token_id: i32,
    pub endofchunk_token_id: i32,
    pub pad_token_id: i32,
    pub bos_token_id: i32,
    pub eos_token_id: i32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub num_parameters: u64,
    pub weight_bytes: u64,
    pub visual_dim: u32,
    pub weight_type: [c_char; 16],
    pub quant_bits: u32,
    pub quant_group_size: u32,
}

/// Opaque session handle.
#[repr(C)]
pub struct flamingo_session {
    _private: [u8; 0],
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct flamingo_session_params {
    pub struct_size: u32,
    pub n_ctx: u32,
}

/// `flamingo_session_eval` flag: return the logits of every new token.
pub const FLAMINGO_EVAL_ALL_LOGITS: u32 = 1;

pub type flamingo_token_callback = Option<unsafe extern "C" fn(token: i32, user_data: *mut c_void) -> i32>;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct flamingo_generate_params {
    pub struct_size: u32,
    pub max_new_tokens: u32,
    pub min_new_tokens: u32,
    pub do_sample: u32,
    pub temperature: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub num_beams: u32,
    pub length_penalty: f32,
    pub early_stopping: u32,
    pub no_repeat_ngram_size: u32,
    pub repetition_penalty: f32,
    pub stop_at_endofchunk: u32,
    pub stop_at_eos: u32,
    pub seed: u64,
    pub callback: flamingo_token_callback,
    pub callback_user_data: *mut c_void,
}

pub type flamingo_stop_reason = c_int;
pub const FLAMINGO_STOP_MAX_TOKENS: flamingo_stop_reason = 0;
pub const FLAMINGO_STOP_TOKEN: flamingo_stop_reason = 1;
pub const FLAMINGO_STOP_CANCELLED: flamingo_stop_reason = 2;

/// `flamingo_tokenize` flag: add BOS etc. as the tokenizer's post-processor does.
pub const FLAMINGO_TOKENIZE_ADD_SPECIAL: u32 = 1;
/// `flamingo_detokenize` / `flamingo_detokenizer_init` flag: leave out special tokens.
pub const FLAMINGO_DETOKENIZE_SKIP_SPECIAL: u32 = 1;

/// Opaque streaming detokenizer handle.
#[repr(C)]
pub struct flamingo_detokenizer {
    _private: [u8; 0],
    _marker: core::marker::PhantomData<(*mut u8, core::marker::PhantomPinned)>,
}

pub type flamingo_media_kind = i32;
pub const FLAMINGO_MEDIA_FILE: flamingo_media_kind = 0;
pub const FLAMINGO_MEDIA_ENCODED: flamingo_media_kind = 1;
pub const FLAMINGO_MEDIA_RGB: flamingo_media_kind = 2;
pub const FLAMINGO_MEDIA_PIXELS: flamingo_media_kind = 3;
pub const FLAMINGO_MEDIA_VISUAL_TOKENS: flamingo_media_kind = 4;

/// One media item of a prompt.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct flamingo_media {
    pub struct_size: u32,
    pub kind: flamingo_media_kind,
    /// FILE
    pub path: *const c_char,
    /// ENCODED, RGB, PIXELS, VISUAL_TOKENS
    pub data: *const c_void,
    /// Bytes (ENCODED, RGB) or floats (PIXELS, VISUAL_TOKENS).
    pub size: usize,
    pub width: u32,
    pub height: u32,
    pub channels: u32,
}

impl flamingo_media {
    /// All zero (NULL pointers), with `struct_size` set to `size_of::<Self>()`.
    pub fn new(kind: flamingo_media_kind) -> Self {
        flamingo_media {
            struct_size: core::mem::size_of::<Self>() as u32,
            kind,
            path: core::ptr::null(),
            data: core::ptr::null(),
            size: 0,
            width: 0,
            height: 0,
            channels: 0,
        }
    }
}

impl flamingo_device_info {
    /// All zero, with `struct_size` set to `size_of::<Self>()`.
    pub fn new() -> Self {
        // SAFETY: every field is an integer or an array of integers.
        let mut d: Self = unsafe { core::mem::zeroed() };
        d.struct_size = core::mem::size_of::<Self>() as u32;
        d
    }
}

impl Default for flamingo_device_info {
    fn default() -> Self {
        Self::new()
    }
}

impl Default for flamingo_model_info {
    fn default() -> Self {
        Self::new()
    }
}

impl flamingo_model_info {
    /// All zero, with `struct_size` set to `size_of::<Self>()`.
    pub fn new() -> Self {
        // SAFETY: every field is an integer, a float or an array of them.
        let mut i: Self = unsafe { core::mem::zeroed() };
        i.struct_size = core::mem::size_of::<Self>() as u32;
        i
    }
}

impl flamingo_session_params {
    /// All zero (n_ctx 0: the model's max_seq_len), with `struct_size` set.
    pub fn new() -> Self {
        Self { struct_size: core::mem::size_of::<Self>() as u32, n_ctx: 0 }
    }
}

impl flamingo_generate_params {
    /// All zero (no callback), with `struct_size` set to `size_of::<Self>()`.
    /// Not the library's defaults: use `flamingo_generate_default_params`.
    pub fn zeroed() -> Self {
        // SAFETY: integers, floats, a nullable function pointer (None) and a
        // raw pointer (NULL) are all valid as zero bytes.
        let mut p: Self = unsafe { core::mem::zeroed() };
        p.struct_size = core::mem::size_of::<Self>() as u32;
        p
    }
}

unsafe extern "C" {
    pub fn flamingo_version() -> *const c_char;
    pub fn flamingo_abi_version() -> u32;

    pub fn flamingo_status_string(status: flamingo_status) -> *const c_char;
    pub fn flamingo_last_error() -> *const c_char;

    pub fn flamingo_log_set(callback: flamingo_log_callback, user_data: *mut c_void);
    pub fn flamingo_log_set_level(level: flamingo_log_level);

    pub fn flamingo_device_count(out_count: *mut usize) -> flamingo_status;
    pub fn flamingo_device_get_info(index: usize, out: *mut flamingo_device_info) -> flamingo_status;

    pub fn flamingo_model_default_params(params: *mut flamingo_model_params, struct_size: usize) -> flamingo_status;
    pub fn flamingo_model_load(
        path: *const c_char,
        params: *const flamingo_model_params,
        out_model: *mut *mut flamingo_model,
    ) -> flamingo_status;
    pub fn flamingo_model_free(model: *mut flamingo_model);
    pub fn flamingo_model_get_info(model: *const flamingo_model, out: *mut flamingo_model_info) -> flamingo_status;

    pub fn flamingo_model_encode_images(
        model: *const flamingo_model,
        pixels: *const f32,
        n_images: usize,
        out: *mut f32,
        out_count: usize,
    ) -> flamingo_status;

    pub fn flamingo_session_default_params(params: *mut flamingo_session_params, struct_size: usize)
    -> flamingo_status;
    pub fn flamingo_session_init(
        model: *mut flamingo_model,
        params: *const flamingo_session_params,
        out_session: *mut *mut flamingo_session,
    ) -> flamingo_status;
    pub fn flamingo_session_free(session: *mut flamingo_session);
    pub fn flamingo_session_copy(
        session: *const flamingo_session,
        out_copy: *mut *mut flamingo_session,
    ) -> flamingo_status;
    pub fn flamingo_session_set_media(
        session: *mut flamingo_session,
        visual_tokens: *const f32,
        n_media: usize,
    ) -> flamingo_status;
    pub fn flamingo_session_set_images(
        session: *mut flamingo_session,
        pixels: *const f32,
        n_images: usize,
    ) -> flamingo_status;
    pub fn flamingo_session_eval(
        session: *mut flamingo_session,
        tokens: *const i32,
        n_tokens: usize,
        flags: u32,
        logits: *mut f32,
        logits_count: usize,
    ) -> flamingo_status;
    pub fn flamingo_session_length(session: *const flamingo_session, out_length: *mut usize) -> flamingo_status;
    pub fn flamingo_session_truncate(session: *mut flamingo_session, length: usize) -> flamingo_status;

    pub fn flamingo_generate_default_params(
        params: *mut flamingo_generate_params,
        struct_size: usize,
    ) -> flamingo_status;
    pub fn flamingo_session_generate(
        session: *mut flamingo_session,
        params: *const flamingo_generate_params,
        out_tokens: *mut i32,
        capacity: usize,
        out_count: *mut usize,
        out_reason: *mut flamingo_stop_reason,
    ) -> flamingo_status;
    pub fn flamingo_batch_generate(
        sessions: *const *mut flamingo_session,
        n_sessions: usize,
        params: *const flamingo_generate_params,
        out_tokens: *mut i32,
        capacity: usize,
        out_counts: *mut usize,
        out_reasons: *mut flamingo_stop_reason,
    ) -> flamingo_status;

    pub fn flamingo_tokenize(
        model: *const flamingo_model,
        text: *const c_char,
        text_len: usize,
        flags: u32,
        out_tokens: *mut i32,
        capacity: usize,
        out_count: *mut usize,
    ) -> flamingo_status;
    pub fn flamingo_detokenize(
        model: *const flamingo_model,
        tokens: *const i32,
        n_tokens: usize,
        flags: u32,
        out_text: *mut c_char,
        capacity: usize,
        out_len: *mut usize,
    ) -> flamingo_status;
    pub fn flamingo_detokenizer_init(
        model: *const flamingo_model,
        flags: u32,
        out_detokenizer: *mut *mut flamingo_detokenizer,
    ) -> flamingo_status;
    pub fn flamingo_detokenizer_free(detokenizer: *mut flamingo_detokenizer);
    pub fn flamingo_detokenizer_push(
        detokenizer: *mut flamingo_detokenizer,
        token: i32,
        out_text: *mut c_char,
        capacity: usize,
        out_len: *mut usize,
    ) -> flamingo_status;
    pub fn flamingo_detokenizer_flush(
        detokenizer: *mut flamingo_detokenizer,
        out_text: *mut c_char,
        capacity: usize,
        out_len: *mut usize,
    ) -> flamingo_status;

    pub fn flamingo_session_set_prompt(
        session: *mut flamingo_session,
        prompt: *const c_char,
        media: *const flamingo_media,
        n_media: usize,
        logits: *mut f32,
        logits_count: usize,
    ) -> flamingo_status;
    pub fn flamingo_model_preprocess_image(
        model: *const flamingo_model,
        image: *const flamingo_media,
        out_pixels: *mut f32,
        out_count: usize,
    ) -> flamingo_status;
}
