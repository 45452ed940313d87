//! Safe Rust bindings for libflamingo, an inference engine for OpenFlamingo
//! models with a C ABI (`include/flamingo.h`).
//!
//! High level: captions, VQA, text generation, logits and visual tokens from
//! images given as [`Media`] (files, encoded bytes, RGB pixels, preprocessed
//! pixels or visual tokens).
//!
//! ```no_run
//! use flamingo::{GenerateParams, Media, Model, ModelParams};
//! let model = Model::load("Tests/Fixtures/mpt_tiny", &ModelParams::default())?;
//! let cat = Media::file("cat.jpg");
//! // OpenFlamingo's prompts, beam search 3, length_penalty 0, at most 20 tokens.
//! println!("{}", model.caption(&cat, &[(Media::file("dog.jpg"), "A dog.")])?);
//! println!("{}", model.vqa(&cat, "What is it?", &[])?);
//! let mut print = |piece: &str| print!("{piece}");
//! let text = model.generate_text("<image>Output:", &[cat], &GenerateParams::captioning(), Some(&mut print))?;
//! let ids = model.tokenize("<image>Output:", true)?;
//! let logits = model.logits(&ids, &[cat])?; // ids.len() × vocab_size
//! let visual = model.encode_media(&[cat])?; // num_latents × visual_dim per image
//! # let _ = (text, logits, visual);
//! # Ok::<(), flamingo::Error>(())
//! ```
//!
//! Lower level: sessions, evaluation and generation.
//!
//! ```no_run
//! let model = flamingo::Model::load("Tests/Fixtures/mpt_tiny", &flamingo::ModelParams::default())?;
//! println!("{} {}", flamingo::version(), model.info().lm_family);
//! # let (pixels, prompt) = (vec![0.0f32; 2 * 3 * 32 * 32], vec![401i32, 34]);
//! // pixels: 2 preprocessed images, planar [2][3][image_size][image_size]
//! let mut session = model.session(&flamingo::SessionParams::default())?;
//! session.set_images(&pixels, 2)?;
//! let last_logits = session.eval(&prompt, false)?;
//! let params = flamingo::GenerateParams { max_new_tokens: 8, ..Default::default() };
//! let mut print = |token: i32| {
//!     println!("{token}");
//!     false // true stops generation
//! };
//! let out = session.generate(&params, Some(&mut print))?;
//! println!("{:?} ({:?})", out.tokens, out.stop_reason);
//! # let _ = last_logits;
//! # Ok::<(), flamingo::Error>(())
//! ```
//!
//! [`sys`] holds the raw declarations. The native library is linked at build
//! time (see `build.rs`: `FLAMINGO_LIB_DIR` or `pkg-config`).

pub mod sys;

use std::any::Any;
use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::{Arc, RwLock};

// ---------------------------------------------------------------------------
// Status and errors
// ---------------------------------------------------------------------------

/// The status of a failed call (`flamingo_status` without `FLAMINGO_OK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    InvalidArgument,
    Io,
    InvalidFormat,
    Unsupported,
    OutOfMemory,
    Backend,
    NotFound,
    BufferTooSmall,
    Cancelled,
    Internal,
    /// A status this crate does not know (from a newer library).
    Unknown(i32),
}

impl Status {
    /// The status for a raw code; `None` for `FLAMINGO_OK`.
    pub fn from_raw(raw: sys::flamingo_status) -> Option<Status> {
        Some(match raw {
            sys::FLAMINGO_OK => return None,
            sys::FLAMINGO_ERROR_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::FLAMINGO_ERROR_IO => Status::Io,
            sys::FLAMINGO_ERROR_INVALID_FORMAT => Status::InvalidFormat,
            sys::FLAMINGO_ERROR_UNSUPPORTED => Status::Unsupported,
            sys::FLAMINGO_ERROR_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::FLAMINGO_ERROR_BACKEND => Status::Backend,
            sys::FLAMINGO_ERROR_NOT_FOUND => Status::NotFound,
            sys::FLAMINGO_ERROR_BUFFER_TOO_SMALL => Status::BufferTooSmall,
            sys::FLAMINGO_ERROR_CANCELLED => Status::Cancelled,
            sys::FLAMINGO_ERROR_INTERNAL => Status::Internal,
            other => Status::Unknown(other),
        })
    }

    /// The raw `flamingo_status` code.
    pub fn raw(self) -> sys::flamingo_status {
        match self {
            Status::InvalidArgument => sys::FLAMINGO_ERROR_INVALID_ARGUMENT,
            Status::Io => sys::FLAMINGO_ERROR_IO,
            Status::InvalidFormat => sys::FLAMINGO_ERROR_INVALID_FORMAT,
            Status::Unsupported => sys::FLAMINGO_ERROR_UNSUPPORTED,
            Status::OutOfMemory => sys::FLAMINGO_ERROR_OUT_OF_MEMORY,
            Status::Backend => sys::FLAMINGO_ERROR_BACKEND,
            Status::NotFound => sys::FLAMINGO_ERROR_NOT_FOUND,
            Status::BufferTooSmall => sys::FLAMINGO_ERROR_BUFFER_TOO_SMALL,
            Status::Cancelled => sys::FLAMINGO_ERROR_CANCELLED,
            Status::Internal => sys::FLAMINGO_ERROR_INTERNAL,
            Status::Unknown(raw) => raw,
        }
    }

    /// The library's description (`flamingo_status_string`).
    pub fn description(self) -> String {
        status_string(self.raw())
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description())
    }
}

/// A failed call: its status and the library's message (`flamingo_last_error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    /// The error for `raw` with the calling thread's last-error message. Call
    /// it on the thread of the failed call, before any other failing call.
    fn last(raw: sys::flamingo_status) -> Error {
        Error { status: Status::from_raw(raw).unwrap_or(Status::Internal), message: last_error() }
    }

    fn invalid_argument(message: impl Into<String>) -> Error {
        Error { status: Status::InvalidArgument, message: message.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn check(raw: sys::flamingo_status) -> Result<()> {
    if raw == sys::FLAMINGO_OK { Ok(()) } else { Err(Error::last(raw)) }
}

/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn owned(p: *const c_char) -> String {
    if p.is_null() { String::new() } else { unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned() }
}

/// A fixed-size C string field: up to the first NUL (or the whole array).
fn field(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---------------------------------------------------------------------------
// Library-wide functions
// ---------------------------------------------------------------------------

/// The library's version string, e.g. "0.1.0".
pub fn version() -> String {
    unsafe { owned(sys::flamingo_version()) }
}

/// The library's ABI version (`FLAMINGO_ABI_VERSION` it was built with).
pub fn abi_version() -> u32 {
    unsafe { sys::flamingo_abi_version() }
}

/// `Err` unless the linked library has the ABI version of these bindings.
pub fn check_abi() -> Result<()> {
    let abi = abi_version();
    if abi == sys::FLAMINGO_ABI_VERSION {
        Ok(())
    } else {
        Err(Error {
            status: Status::Unsupported,
            message: format!("libflamingo ABI version {abi}, these bindings need {}", sys::FLAMINGO_ABI_VERSION),
        })
    }
}

/// The library's description of a raw status ("unknown status" if unknown).
pub fn status_string(raw: sys::flamingo_status) -> String {
    unsafe { owned(sys::flamingo_status_string(raw)) }
}

/// The message of the most recent failed call on this thread, or "".
pub fn last_error() -> String {
    unsafe { owned(sys::flamingo_last_error()) }
}

// ---------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------

/// Log levels (`flamingo_log_level`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
    /// As a minimum level: log nothing.
    None = 4,
}

impl LogLevel {
    fn from_raw(raw: sys::flamingo_log_level) -> LogLevel {
        match raw {
            sys::FLAMINGO_LOG_DEBUG => LogLevel::Debug,
            sys::FLAMINGO_LOG_INFO => LogLevel::Info,
            sys::FLAMINGO_LOG_WARN => LogLevel::Warn,
            sys::FLAMINGO_LOG_ERROR => LogLevel::Error,
            _ => LogLevel::None,
        }
    }
}

/// A log handler: `handler(level, message)`.
pub type LogHandler = dyn Fn(LogLevel, &str) + Send + Sync + 'static;

// The handler lives here rather than behind the C user_data pointer: the
// library may still be calling the previous callback on another thread when
// it is replaced, so the C side always gets the same static trampoline and
// each call clones the current Arc.
static LOG_HANDLER: RwLock<Option<Arc<LogHandler>>> = RwLock::new(None);

unsafe extern "C" fn log_trampoline(level: sys::flamingo_log_level, message: *const c_char, _user: *mut c_void) {
    let handler = match LOG_HANDLER.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    if let Some(handler) = handler {
        let text = unsafe { owned(message) };
        // A panic must not unwind into C.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(LogLevel::from_raw(level), &text)));
    }
}

/// Routes log messages to `handler(level, message)`; `None` restores the
/// library's default sink (stderr). The handler may be called from any
/// thread; a panic in it is caught and the message dropped.
pub fn set_log_callback(handler: Option<Box<LogHandler>>) {
    let mut slot = LOG_HANDLER.write().unwrap_or_else(|p| p.into_inner());
    let install = handler.is_some();
    *slot = handler.map(Arc::from);
    unsafe {
        if install {
            sys::flamingo_log_set(Some(log_trampoline), std::ptr::null_mut());
        } else {
            sys::flamingo_log_set(None, std::ptr::null_mut());
        }
    }
}

/// Drops messages below `level` (the library's default is [`LogLevel::Warn`]).
pub fn set_log_level(level: LogLevel) {
    unsafe { sys::flamingo_log_set_level(level as sys::flamingo_log_level) }
}

// ---------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------

/// A compute backend (`flamingo_backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Backend {
    #[default]
    Cpu,
    OpenCl,
    /// A backend this crate does not know.
    Unknown(i32),
}

impl Backend {
    pub fn from_raw(raw: sys::flamingo_backend) -> Backend {
        match raw {
            sys::FLAMINGO_BACKEND_CPU => Backend::Cpu,
            sys::FLAMINGO_BACKEND_OPENCL => Backend::OpenCl,
            other => Backend::Unknown(other),
        }
    }
    pub fn raw(self) -> sys::flamingo_backend {
        match self {
            Backend::Cpu => sys::FLAMINGO_BACKEND_CPU,
            Backend::OpenCl => sys::FLAMINGO_BACKEND_OPENCL,
            Backend::Unknown(raw) => raw,
        }
    }
}

/// A device type (`flamingo_device_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceType {
    Cpu,
    Gpu,
    Accelerator,
    Other,
    Unknown(i32),
}

impl DeviceType {
    pub fn from_raw(raw: sys::flamingo_device_type) -> DeviceType {
        match raw {
            sys::FLAMINGO_DEVICE_CPU => DeviceType::Cpu,
            sys::FLAMINGO_DEVICE_GPU => DeviceType::Gpu,
            sys::FLAMINGO_DEVICE_ACCELERATOR => DeviceType::Accelerator,
            sys::FLAMINGO_DEVICE_OTHER => DeviceType::Other,
            other => DeviceType::Unknown(other),
        }
    }
}

/// One usable device (`flamingo_device_info`); device 0 is always the CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub index: usize,
    pub backend: Backend,
    pub device_type: DeviceType,
    pub platform_index: i32,
    pub device_index: i32,
    pub compute_units: u32,
    pub memory_bytes: u64,
    pub name: String,
    pub platform_name: String,
    pub vendor: String,
    pub driver_version: String,
}

/// The number of usable devices.
pub fn device_count() -> Result<usize> {
    let mut n = 0usize;
    check(unsafe { sys::flamingo_device_count(&mut n) })?;
    Ok(n)
}

/// Describes device `index` ([`Status::NotFound`] when out of range).
pub fn device(index: usize) -> Result<Device> {
    let mut d = sys::flamingo_device_info::new();
    check(unsafe { sys::flamingo_device_get_info(index, &mut d) })?;
    Ok(Device {
        index,
        backend: Backend::from_raw(d.backend),
        device_type: DeviceType::from_raw(d.type_),
        platform_index: d.platform_index,
        device_index: d.device_index,
        compute_units: d.compute_units,
        memory_bytes: d.memory_bytes,
        name: field(&d.name),
        platform_name: field(&d.platform_name),
        vendor: field(&d.vendor),
        driver_version: field(&d.driver_version),
    })
}

/// Every usable device, in the library's order.
pub fn devices() -> Result<Vec<Device>> {
    (0..device_count()?).map(device).collect()
}

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

/// Load options (`flamingo_model_params`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelParams {
    pub backend: Backend,
    /// An index from [`devices`]; -1 = the backend's default device.
    pub device_index: i32,
    /// CPU threads; 0 = one per core.
    pub n_threads: u32,
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams { backend: Backend::Cpu, device_index: -1, n_threads: 0 }
    }
}

/// The model's configuration and totals (`flamingo_model_info` without
/// `struct_size`).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub architecture: String,
    pub vision_kind: String,
    pub lm_family: String,
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
    /// Token ids; -1 where the model has none.
    pub image_token_id: i32,
    pub endofchunk_token_id: i32,
    pub pad_token_id: i32,
    pub bos_token_id: i32,
    pub eos_token_id: i32,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub num_parameters: u64,
    pub weight_bytes: u64,
    /// Width of one visual token (the resampler's dim).
    pub visual_dim: u32,
}

impl ModelInfo {
    /// Floats per preprocessed image: 3 × image_size × image_size.
    pub fn image_floats(&self) -> usize {
        3 * self.image_size as usize * self.image_size as usize
    }

    /// Floats of visual tokens per image: num_latents × visual_dim.
    pub fn media_floats(&self) -> usize {
        self.num_latents as usize * self.visual_dim as usize
    }
}

impl From<&sys::flamingo_model_info> for ModelInfo {
    fn from(i: &sys::flamingo_model_info) -> Self {
        ModelInfo {
            architecture: field(&i.architecture),
            vision_kind: field(&i.vision_kind),
            lm_family: field(&i.lm_family),
            image_size: i.image_size,
            patch_size: i.patch_size,
            vision_width: i.vision_width,
            vision_layers: i.vision_layers,
            vision_heads: i.vision_heads,
            vision_tokens: i.vision_tokens,
            resampler_depth: i.resampler_depth,
            resampler_heads: i.resampler_heads,
            resampler_dim_head: i.resampler_dim_head,
            num_latents: i.num_latents,
            hidden_size: i.hidden_size,
            num_layers: i.num_layers,
            num_heads: i.num_heads,
            intermediate_size: i.intermediate_size,
            max_seq_len: i.max_seq_len,
            vocab_size: i.vocab_size,
            cross_attn_every_n_layers: i.cross_attn_every_n_layers,
            num_cross_attn_layers: i.num_cross_attn_layers,
            image_token_id: i.image_token_id,
            endofchunk_token_id: i.endofchunk_token_id,
            pad_token_id: i.pad_token_id,
            bos_token_id: i.bos_token_id,
            eos_token_id: i.eos_token_id,
            image_mean: i.image_mean,
            image_std: i.image_std,
            num_parameters: i.num_parameters,
            weight_bytes: i.weight_bytes,
            visual_dim: i.visual_dim,
        }
    }
}

/// A loaded model. Immutable once loaded, so it is `Send + Sync`: share it
/// between threads with `Arc<Model>`. Released on drop.
#[derive(Debug)]
pub struct Model {
    raw: NonNull<sys::flamingo_model>,
    info: ModelInfo,
}

// SAFETY: flamingo.h: "Immutable once loaded; one model may be shared by any
// number of threads and sessions", and flamingo_model_get_info is
// thread-safe. Freeing needs exclusive ownership, which Drop has.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

impl Model {
    /// Loads the model directory `path` (config.json, *.safetensors,
    /// tokenizer.json).
    pub fn load(path: impl AsRef<Path>, params: &ModelParams) -> Result<Model> {
        use std::os::unix::ffi::OsStrExt;
        let cpath = CString::new(path.as_ref().as_os_str().as_bytes())
            .map_err(|_| Error::invalid_argument("the model path contains a NUL byte"))?;
        let mut p = sys::flamingo_model_params::default();
        check(unsafe {
            sys::flamingo_model_default_params(&mut p, std::mem::size_of::<sys::flamingo_model_params>())
        })?;
        p.backend = params.backend.raw();
        p.device_index = params.device_index;
        p.n_threads = params.n_threads;
        check_abi()?;
        let mut out: *mut sys::flamingo_model = std::ptr::null_mut();
        check(unsafe { sys::flamingo_model_load(cpath.as_ptr(), &p, &mut out) })?;
        let raw = NonNull::new(out)
            .ok_or_else(|| Error { status: Status::Internal, message: "flamingo_model_load returned NULL".into() })?;
        let mut i = sys::flamingo_model_info::new();
        let st = unsafe { sys::flamingo_model_get_info(raw.as_ptr(), &mut i) };
        if st != sys::FLAMINGO_OK {
            let e = Error::last(st);
            unsafe { sys::flamingo_model_free(raw.as_ptr()) };
            return Err(e);
        }
        Ok(Model { raw, info: ModelInfo::from(&i) })
    }

    /// The model's configuration and totals (read once at load: the model is
    /// immutable).
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Asks the library again (`flamingo_model_get_info`).
    pub fn query_info(&self) -> Result<ModelInfo> {
        let mut i = sys::flamingo_model_info::new();
        check(unsafe { sys::flamingo_model_get_info(self.raw.as_ptr(), &mut i) })?;
        Ok(ModelInfo::from(&i))
    }

    /// The raw handle, for use with [`sys`]. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::flamingo_model {
        self.raw.as_ptr()
    }

    /// Encodes images into visual tokens (vision encoder + Perceiver
    /// Resampler; `flamingo_model_encode_images`). `pixels` holds `n_images`
    /// preprocessed images, planar `[n_images][3][image_size][image_size]`
    /// with the CLIP mean/std already applied; its length must be exactly
    /// `n_images * 3 * image_size²`. Returns
    /// `n_images * num_latents * visual_dim` floats, which
    /// [`Session::set_media`] accepts. Thread-safe.
    pub fn encode_images(&self, pixels: &[f32], n_images: usize) -> Result<Vec<f32>> {
        let count = n_images
            .checked_mul(self.info.media_floats())
            .ok_or_else(|| Error::invalid_argument("n_images is too large"))?;
        let mut out = vec![0.0f32; count];
        self.encode_images_into(pixels, n_images, &mut out)?;
        Ok(out)
    }

    /// As [`encode_images`](Self::encode_images), into `out` (which needs at
    /// least `n_images * num_latents * visual_dim` floats, else
    /// [`Status::BufferTooSmall`]; only that many are written).
    pub fn encode_images_into(&self, pixels: &[f32], n_images: usize, out: &mut [f32]) -> Result<()> {
        check_len(pixels.len(), n_images, self.info.image_floats(), "pixels", "image")?;
        check(unsafe {
            sys::flamingo_model_encode_images(self.raw.as_ptr(), pixels.as_ptr(), n_images, out.as_mut_ptr(), out.len())
        })
    }

    /// A new, empty session on this model ([`Session::new`]).
    pub fn session(&self, params: &SessionParams) -> Result<Session> {
        Session::new(self, params)
    }
}

/// Checks that a slice of `len` values holds `n` items of `per_item` values
/// (the library reads exactly that many).
fn check_len(len: usize, n: usize, per_item: usize, what: &str, item: &str) -> Result<()> {
    match n.checked_mul(per_item) {
        Some(want) if want == len => Ok(()),
        _ => Err(Error::invalid_argument(format!(
            "{what} holds {len} values; {n} {item}(s) of {per_item} values are needed"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------

/// Session options (`flamingo_session_params`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionParams {
    /// Maximum tokens; 0 = the model's max_seq_len.
    pub n_ctx: u32,
}

/// Generation options (`flamingo_generate_params` without the callback,
/// which [`Session::generate`] takes separately). `Default` is the header's
/// defaults, the same as [`GenerateParams::library_defaults`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GenerateParams {
    pub max_new_tokens: u32,
    /// Stop tokens are banned before this many new tokens.
    pub min_new_tokens: u32,
    /// false: greedy / beam search; true: sampling.
    pub do_sample: bool,
    /// Sampling temperature, > 0.
    pub temperature: f32,
    /// Keep the k most likely tokens; 0 = off.
    pub top_k: u32,
    /// Nucleus sampling mass in (0, 1]; 1 = off.
    pub top_p: f32,
    /// Beam search when > 1.
    pub num_beams: u32,
    /// Beam score = sum log p / length^penalty.
    pub length_penalty: f32,
    /// Beam search stops once num_beams hypotheses are finished.
    pub early_stopping: bool,
    /// Ban repeating n-grams of this size; 0 = off.
    pub no_repeat_ngram_size: u32,
    /// > 1 discourages repeated tokens; 1 = off.
    pub repetition_penalty: f32,
    /// Stop after `<|endofchunk|>` (included in the output).
    pub stop_at_endofchunk: bool,
    /// Stop after the model's EOS token (included in the output).
    pub stop_at_eos: bool,
    /// Sampling seed.
    pub seed: u64,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_new_tokens: 20,
            min_new_tokens: 0,
            do_sample: false,
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            num_beams: 1,
            length_penalty: 1.0,
            early_stopping: false,
            no_repeat_ngram_size: 0,
            repetition_penalty: 1.0,
            stop_at_endofchunk: true,
            stop_at_eos: true,
            seed: 0,
        }
    }
}

impl GenerateParams {
    /// The library's defaults (`flamingo_generate_default_params`).
    pub fn library_defaults() -> Result<GenerateParams> {
        let p = raw_generate_defaults()?;
        Ok(GenerateParams {
            max_new_tokens: p.max_new_tokens,
            min_new_tokens: p.min_new_tokens,
            do_sample: p.do_sample != 0,
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            num_beams: p.num_beams,
            length_penalty: p.length_penalty,
            early_stopping: p.early_stopping != 0,
            no_repeat_ngram_size: p.no_repeat_ngram_size,
            repetition_penalty: p.repetition_penalty,
            stop_at_endofchunk: p.stop_at_endofchunk != 0,
            stop_at_eos: p.stop_at_eos != 0,
            seed: p.seed,
        })
    }

    /// The raw struct (library defaults for anything this crate does not
    /// set), without a callback.
    pub fn to_raw(&self) -> Result<sys::flamingo_generate_params> {
        let mut p = raw_generate_defaults()?;
        p.max_new_tokens = self.max_new_tokens;
        p.min_new_tokens = self.min_new_tokens;
        p.do_sample = self.do_sample.into();
        p.temperature = self.temperature;
        p.top_k = self.top_k;
        p.top_p = self.top_p;
        p.num_beams = self.num_beams;
        p.length_penalty = self.length_penalty;
        p.early_stopping = self.early_stopping.into();
        p.no_repeat_ngram_size = self.no_repeat_ngram_size;
        p.repetition_penalty = self.repetition_penalty;
        p.stop_at_endofchunk = self.stop_at_endofchunk.into();
        p.stop_at_eos = self.stop_at_eos.into();
        p.seed = self.seed;
        Ok(p)
    }
}

fn raw_generate_defaults() -> Result<sys::flamingo_generate_params> {
    let mut p = sys::flamingo_generate_params::zeroed();
    check(unsafe {
        sys::flamingo_generate_default_params(&mut p, std::mem::size_of::<sys::flamingo_generate_params>())
    })?;
    Ok(p)
}

/// Why generation stopped (`flamingo_stop_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StopReason {
    /// `max_new_tokens` reached.
    MaxTokens,
    /// A stop token was generated (it is included).
    Token,
    /// The callback asked to stop.
    Cancelled,
    /// A reason this crate does not know.
    Unknown(i32),
}

impl StopReason {
    pub fn from_raw(raw: sys::flamingo_stop_reason) -> StopReason {
        match raw {
            sys::FLAMINGO_STOP_MAX_TOKENS => StopReason::MaxTokens,
            sys::FLAMINGO_STOP_TOKEN => StopReason::Token,
            sys::FLAMINGO_STOP_CANCELLED => StopReason::Cancelled,
            other => StopReason::Unknown(other),
        }
    }
}

/// The result of [`Session::generate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The new tokens (also appended to the session).
    pub tokens: Vec<i32>,
    pub stop_reason: StopReason,
}

/// One token sequence with its KV cache and media (`flamingo_session`).
///
/// A session keeps the model's weights alive, so it may outlive the
/// [`Model`] it was created from. It is `Send` (it may move to another
/// thread) but not `Sync`: the library allows one thread at a time per
/// session, which `&mut self` on every mutating method enforces. Different
/// sessions of one model run concurrently. Released on drop.
#[derive(Debug)]
pub struct Session {
    raw: NonNull<sys::flamingo_session>,
    vocab_size: usize,
    image_floats: usize,
    media_floats: usize,
    n_ctx: usize,
}

// SAFETY: flamingo.h: "A session is used by one thread at a time; different
// sessions of one model may run on different threads concurrently." Moving
// a session to another thread is fine; sharing it is not (no Sync).
unsafe impl Send for Session {}

struct CallbackState<'a> {
    f: &'a mut dyn FnMut(i32) -> bool,
    panic: Option<Box<dyn Any + Send + 'static>>,
}

unsafe extern "C" fn token_trampoline(token: i32, user_data: *mut c_void) -> i32 {
    // SAFETY: user_data is the &mut CallbackState that generate() passed,
    // alive for the whole call, and the library calls back on that thread.
    let state = unsafe { &mut *(user_data as *mut CallbackState<'_>) };
    if state.panic.is_some() {
        return 1;
    }
    // A panic must not unwind into C: stop, and re-raise after the call.
    match catch_unwind(AssertUnwindSafe(|| (state.f)(token))) {
        Ok(stop) => i32::from(stop),
        Err(payload) => {
            state.panic = Some(payload);
            1
        }
    }
}

impl Session {
    /// Creates an empty session on `model` (`flamingo_session_init`).
    pub fn new(model: &Model, params: &SessionParams) -> Result<Session> {
        let mut p = sys::flamingo_session_params::new();
        check(unsafe {
            sys::flamingo_session_default_params(&mut p, std::mem::size_of::<sys::flamingo_session_params>())
        })?;
        p.n_ctx = params.n_ctx;
        let mut out: *mut sys::flamingo_session = std::ptr::null_mut();
        check(unsafe { sys::flamingo_session_init(model.as_ptr(), &p, &mut out) })?;
        let raw = NonNull::new(out)
            .ok_or_else(|| Error { status: Status::Internal, message: "flamingo_session_init returned NULL".into() })?;
        let info = model.info();
        Ok(Session {
            raw,
            vocab_size: info.vocab_size as usize,
            image_floats: info.image_floats(),
            media_floats: info.media_floats(),
            n_ctx: if params.n_ctx == 0 { info.max_seq_len as usize } else { params.n_ctx as usize },
        })
    }

    /// The raw handle, for use with [`sys`]. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::flamingo_session {
        self.raw.as_ptr()
    }

    /// The maximum number of tokens.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The model's vocabulary size (floats per logits row).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The number of tokens in the sequence (`flamingo_session_length`).
    pub fn len(&self) -> usize {
        let mut n = 0usize;
        let st = unsafe { sys::flamingo_session_length(self.raw.as_ptr(), &mut n) };
        // Only a NULL or stale handle fails, which a Session never holds.
        assert_eq!(st, sys::FLAMINGO_OK, "flamingo_session_length failed: {}", last_error());
        n
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An independent copy: tokens, KV cache, media and last logits
    /// (`flamingo_session_copy`).
    pub fn copy(&self) -> Result<Session> {
        let mut out: *mut sys::flamingo_session = std::ptr::null_mut();
        check(unsafe { sys::flamingo_session_copy(self.raw.as_ptr(), &mut out) })?;
        let raw = NonNull::new(out)
            .ok_or_else(|| Error { status: Status::Internal, message: "flamingo_session_copy returned NULL".into() })?;
        Ok(Session { raw, ..*self })
    }

    /// Encodes `n_images` images (as [`Model::encode_images`]; `pixels` has
    /// exactly `n_images * 3 * image_size²` floats) and makes them the
    /// session's media: the k-th `<image>` token refers to image k-1.
    pub fn set_images(&mut self, pixels: &[f32], n_images: usize) -> Result<()> {
        check_len(pixels.len(), n_images, self.image_floats, "pixels", "image")?;
        check(unsafe { sys::flamingo_session_set_images(self.raw.as_ptr(), pixels.as_ptr(), n_images) })
    }

    /// Sets the media from visual tokens `[n_media][num_latents][visual_dim]`
    /// (as from [`Model::encode_images`]; exactly that many floats); the data
    /// is copied. `n_media` 0 (with an empty slice) removes the media.
    pub fn set_media(&mut self, visual_tokens: &[f32], n_media: usize) -> Result<()> {
        check_len(visual_tokens.len(), n_media, self.media_floats, "visual_tokens", "media")?;
        let ptr = if n_media == 0 { std::ptr::null() } else { visual_tokens.as_ptr() };
        check(unsafe { sys::flamingo_session_set_media(self.raw.as_ptr(), ptr, n_media) })
    }

    /// Appends `tokens` and evaluates them (`flamingo_session_eval`). Returns
    /// the last position's logits (vocab_size floats) or, with `all_logits`,
    /// `tokens.len() * vocab_size` floats. On error (no tokens, an id outside
    /// the vocabulary, a full context) the session is unchanged.
    pub fn eval(&mut self, tokens: &[i32], all_logits: bool) -> Result<Vec<f32>> {
        let rows = if all_logits { tokens.len() } else { 1 };
        let mut out = vec![0.0f32; rows * self.vocab_size];
        self.eval_into(tokens, all_logits, Some(&mut out))?;
        Ok(out)
    }

    /// As [`eval`](Self::eval), writing the logits into `logits` (`None`: only
    /// extend the cache). A buffer that is too small is
    /// [`Status::BufferTooSmall`], with the session unchanged.
    pub fn eval_into(&mut self, tokens: &[i32], all_logits: bool, logits: Option<&mut [f32]>) -> Result<()> {
        let flags = if all_logits { sys::FLAMINGO_EVAL_ALL_LOGITS } else { 0 };
        let (ptr, count) = match logits {
            Some(buf) => (buf.as_mut_ptr(), buf.len()),
            None => (std::ptr::null_mut(), 0),
        };
        check(unsafe {
            sys::flamingo_session_eval(self.raw.as_ptr(), tokens.as_ptr(), tokens.len(), flags, ptr, count)
        })
    }

    /// Rolls the sequence back to its first `length` tokens (the media is
    /// kept); generation then needs a new [`eval`](Self::eval).
    pub fn truncate(&mut self, length: usize) -> Result<()> {
        check(unsafe { sys::flamingo_session_truncate(self.raw.as_ptr(), length) })
    }

    /// Generates a continuation of the evaluated sequence
    /// (`flamingo_session_generate`); the session then holds the prompt plus
    /// the returned tokens (on error it is unchanged).
    ///
    /// `callback` sees every generated token (beam search: the final tokens,
    /// in order) and returns `true` to stop generation
    /// ([`StopReason::Cancelled`]), like the C callback's non-zero. A panic
    /// in the callback stops generation and is resumed once the library has
    /// returned.
    pub fn generate(
        &mut self,
        params: &GenerateParams,
        callback: Option<&mut dyn FnMut(i32) -> bool>,
    ) -> Result<Generation> {
        let mut p = params.to_raw()?;
        let mut state = callback.map(|f| CallbackState { f, panic: None });
        if let Some(state) = state.as_mut() {
            p.callback = Some(token_trampoline);
            p.callback_user_data = state as *mut CallbackState<'_> as *mut c_void;
        }
        let capacity = (p.max_new_tokens as usize).max(1);
        let mut tokens = vec![0i32; capacity];
        let mut count = 0usize;
        let mut reason: sys::flamingo_stop_reason = -1;
        let st = unsafe {
            sys::flamingo_session_generate(
                self.raw.as_ptr(),
                &p,
                tokens.as_mut_ptr(),
                capacity,
                &mut count,
                &mut reason,
            )
        };
        let result = check(st);
        if let Some(payload) = state.and_then(|s| s.panic) {
            resume_unwind(payload);
        }
        result?;
        tokens.truncate(count.min(capacity));
        Ok(Generation { tokens, stop_reason: StopReason::from_raw(reason) })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        unsafe { sys::flamingo_session_free(self.raw.as_ptr()) }
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::flamingo_model_free(self.raw.as_ptr()) }
    }
}

// ---------------------------------------------------------------------------
// Batch generation
// ---------------------------------------------------------------------------

/// Generates continuations of several evaluated sessions together
/// (`flamingo_batch_generate`): each step evaluates the next token of every
/// unfinished session in one batched forward pass. The sessions must belong
/// to the same model (distinct: `&mut` guarantees it); their prompts may
/// differ in length. With `do_sample`, session i uses `seed + i`; with
/// `num_beams > 1` they are searched one after the other. Returns one
/// [`Generation`] per session, in order; on error every session is
/// unchanged.
pub fn batch_generate(sessions: &mut [&mut Session], params: &GenerateParams) -> Result<Vec<Generation>> {
    if sessions.is_empty() {
        return Err(Error::invalid_argument("batch_generate needs at least one session"));
    }
    let p = params.to_raw()?;
    let n = sessions.len();
    let capacity = (p.max_new_tokens as usize).max(1);
    let raws: Vec<*mut sys::flamingo_session> = sessions.iter().map(|s| s.raw.as_ptr()).collect();
    let mut tokens = vec![0i32; n * capacity];
    let mut counts = vec![0usize; n];
    let mut reasons: Vec<sys::flamingo_stop_reason> = vec![-1; n];
    check(unsafe {
        sys::flamingo_batch_generate(
            raws.as_ptr(),
            n,
            &p,
            tokens.as_mut_ptr(),
            capacity,
            counts.as_mut_ptr(),
            reasons.as_mut_ptr(),
        )
    })?;
    Ok((0..n)
        .map(|i| Generation {
            tokens: tokens[i * capacity..i * capacity + counts[i].min(capacity)].to_vec(),
            stop_reason: StopReason::from_raw(reasons[i]),
        })
        .collect())
}

// ---------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------

/// One image of a prompt (`flamingo_media`). Images are decoded (EXIF
/// orientation applied, grayscale/CMYK/alpha converted as Pillow does),
/// resized and normalised exactly as the reference's CLIP preprocessing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Media<'a> {
    /// A JPEG or PNG file.
    File(&'a Path),
    /// A JPEG or PNG in memory.
    Encoded(&'a [u8]),
    /// 8-bit pixels, `width × height × channels` bytes, channels 3 (RGB) or
    /// 4 (RGBA), rows top to bottom.
    Rgb { data: &'a [u8], width: u32, height: u32, channels: u32 },
    /// A preprocessed image `[3][image_size][image_size]` (as from
    /// [`Model::preprocess_image`]).
    Pixels(&'a [f32]),
    /// Visual tokens `[num_latents][visual_dim]` of one image (as from
    /// [`Model::encode_images`]).
    VisualTokens(&'a [f32]),
}

impl<'a> Media<'a> {
    /// A JPEG or PNG file.
    pub fn file<P: AsRef<Path> + ?Sized>(path: &'a P) -> Media<'a> {
        Media::File(path.as_ref())
    }

    /// RGB pixels (3 channels).
    pub fn rgb(data: &'a [u8], width: u32, height: u32) -> Media<'a> {
        Media::Rgb { data, width, height, channels: 3 }
    }
}

/// The C structs of some media and the path strings they point to.
struct RawMedia {
    items: Vec<sys::flamingo_media>,
    _paths: Vec<CString>,
}

impl RawMedia {
    fn new(media: &[Media<'_>]) -> Result<RawMedia> {
        use std::os::unix::ffi::OsStrExt;
        let mut paths = Vec::new();
        let mut items = Vec::with_capacity(media.len());
        for m in media {
            let item = match *m {
                Media::File(path) => {
                    let c = CString::new(path.as_os_str().as_bytes())
                        .map_err(|_| Error::invalid_argument("an image path contains a NUL byte"))?;
                    let mut item = sys::flamingo_media::new(sys::FLAMINGO_MEDIA_FILE);
                    item.path = c.as_ptr(); // the CString's buffer does not move with it
                    paths.push(c);
                    item
                }
                Media::Encoded(data) => {
                    let mut item = sys::flamingo_media::new(sys::FLAMINGO_MEDIA_ENCODED);
                    item.data = data.as_ptr().cast();
                    item.size = data.len();
                    item
                }
                Media::Rgb { data, width, height, channels } => {
                    let mut item = sys::flamingo_media::new(sys::FLAMINGO_MEDIA_RGB);
                    item.data = data.as_ptr().cast();
                    item.size = data.len();
                    item.width = width;
                    item.height = height;
                    item.channels = channels;
                    item
                }
                Media::Pixels(data) => {
                    let mut item = sys::flamingo_media::new(sys::FLAMINGO_MEDIA_PIXELS);
                    item.data = data.as_ptr().cast();
                    item.size = data.len();
                    item
                }
                Media::VisualTokens(data) => {
                    let mut item = sys::flamingo_media::new(sys::FLAMINGO_MEDIA_VISUAL_TOKENS);
                    item.data = data.as_ptr().cast();
                    item.size = data.len();
                    item
                }
            };
            items.push(item);
        }
        Ok(RawMedia { items, _paths: paths })
    }

    fn as_ptr(&self) -> *const sys::flamingo_media {
        if self.items.is_empty() { std::ptr::null() } else { self.items.as_ptr() }
    }
}

impl Session {
    /// Replaces the sequence with `prompt` (one `<image>` marker per media
    /// item, e.g. `"<image>Output:a cat<|endofchunk|>\n<image>Output:"`) and
    /// its `media`, in order, then evaluates it
    /// (`flamingo_session_set_prompt`; the prompt is tokenized with special
    /// tokens added). Returns the last position's logits (vocab_size
    /// floats). [`generate`](Self::generate) then continues the prompt. On
    /// error the session is unchanged: [`Status::InvalidArgument`] (marker
    /// count different from the number of media, bad sizes, a prompt longer
    /// than the context), [`Status::Io`], [`Status::InvalidFormat`]
    /// (undecodable image), [`Status::Unsupported`].
    pub fn set_prompt(&mut self, prompt: &str, media: &[Media<'_>]) -> Result<Vec<f32>> {
        let mut logits = vec![0.0f32; self.vocab_size];
        self.set_prompt_into(prompt.as_bytes(), media, Some(&mut logits))?;
        Ok(logits)
    }

    /// As [`set_prompt`](Self::set_prompt) with the prompt as bytes (which
    /// the library checks are UTF-8), writing the last logits into `logits`
    /// (`None`: not at all; too small: [`Status::BufferTooSmall`]).
    pub fn set_prompt_into(&mut self, prompt: &[u8], media: &[Media<'_>], logits: Option<&mut [f32]>) -> Result<()> {
        let prompt = CString::new(prompt).map_err(|_| Error::invalid_argument("the prompt contains a NUL byte"))?;
        let raw = RawMedia::new(media)?;
        let (ptr, count) = match logits {
            Some(buf) => (buf.as_mut_ptr(), buf.len()),
            None => (std::ptr::null_mut(), 0),
        };
        check(unsafe {
            sys::flamingo_session_set_prompt(self.raw.as_ptr(), prompt.as_ptr(), raw.as_ptr(), media.len(), ptr, count)
        })
    }
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

/// Incremental decoding for streaming (`flamingo_detokenizer`): push tokens
/// one at a time and receive only newly completed text, never half a UTF-8
/// character. [`finish`](Self::finish) returns what the last tokens still
/// hold back (an incomplete UTF-8 sequence at the end, U+FFFD in a full
/// decode), so that everything pushed plus `finish()` is the full decode
/// ([`Model::detokenize`]). Create with [`Model::detokenizer`]; released on
/// drop. `Send`, not `Sync`: one stream, one thread at a time.
pub struct Detokenizer<'m> {
    raw: NonNull<sys::flamingo_detokenizer>,
    /// The library keeps the tokenizer alive; the borrow keeps the API honest.
    _model: std::marker::PhantomData<&'m Model>,
    skip_special: bool,
    tokens: Vec<i32>,
    emitted: Vec<u8>,
    buf: Vec<u8>,
    finished: bool,
}

// SAFETY: a detokenizer is used by one thread at a time (`&mut self`); it
// may move between threads. The model is Sync.
unsafe impl Send for Detokenizer<'_> {}

impl fmt::Debug for Detokenizer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detokenizer").field("tokens", &self.tokens).field("finished", &self.finished).finish()
    }
}

impl<'m> Detokenizer<'m> {
    /// A detokenizer for `model` (`flamingo_detokenizer_init`).
    pub fn new(model: &'m Model, skip_special: bool) -> Result<Detokenizer<'m>> {
        let flags = if skip_special { sys::FLAMINGO_DETOKENIZE_SKIP_SPECIAL } else { 0 };
        let mut out: *mut sys::flamingo_detokenizer = std::ptr::null_mut();
        check(unsafe { sys::flamingo_detokenizer_init(model.raw.as_ptr(), flags, &mut out) })?;
        let raw = NonNull::new(out).ok_or_else(|| Error {
            status: Status::Internal,
            message: "flamingo_detokenizer_init returned NULL".into(),
        })?;
        Ok(Detokenizer {
            raw,
            _model: std::marker::PhantomData,
            skip_special,
            tokens: Vec::new(),
            emitted: Vec::new(),
            buf: vec![0u8; 64],
            finished: false,
        })
    }

    /// Whether special tokens are left out of the text.
    pub fn skip_special(&self) -> bool {
        self.skip_special
    }

    /// The raw handle, for use with [`sys`]. It stays owned by `self`.
    pub fn as_ptr(&self) -> *mut sys::flamingo_detokenizer {
        self.raw.as_ptr()
    }

    /// Feeds one token and returns the UTF-8 bytes it completes (often
    /// none). A token that needs more than the internal buffer is pushed
    /// again with a larger one (BUFFER_TOO_SMALL does not consume it).
    pub fn push_bytes(&mut self, token: i32) -> Result<Vec<u8>> {
        if self.finished {
            return Err(Error::invalid_argument("the detokenizer is finished"));
        }
        let raw = self.raw.as_ptr();
        let piece = self.call(|buf, cap, len| unsafe { sys::flamingo_detokenizer_push(raw, token, buf, cap, len) })?;
        self.tokens.push(token);
        self.emitted.extend_from_slice(&piece);
        Ok(piece)
    }

    /// Runs a push or flush into the output buffer, growing it on
    /// BUFFER_TOO_SMALL (which consumes nothing); returns the bytes.
    fn call(&mut self, f: impl Fn(*mut c_char, usize, *mut usize) -> sys::flamingo_status) -> Result<Vec<u8>> {
        let mut len = 0usize;
        loop {
            let st = f(self.buf.as_mut_ptr().cast(), self.buf.len(), &mut len);
            if st == sys::FLAMINGO_ERROR_BUFFER_TOO_SMALL && self.buf.len() < 1 << 24 {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
                continue;
            }
            check(st)?;
            return Ok(self.buf[..len].to_vec());
        }
    }

    /// Feeds one token and returns the text it completes (often "").
    pub fn push(&mut self, token: i32) -> Result<String> {
        self.push_bytes(token).map(|b| String::from_utf8(b).unwrap_or_else(|e| lossy(e.as_bytes())))
    }

    /// Ends the stream and returns the bytes still held back
    /// (flamingo_detokenizer_flush): with everything pushed before, exactly
    /// the full decode of the pushed tokens. Afterwards [`push`](Self::push) fails.
    pub fn finish_bytes(&mut self) -> Result<Vec<u8>> {
        if self.finished {
            return Err(Error::invalid_argument("the detokenizer is finished"));
        }
        self.finished = true;
        let raw = self.raw.as_ptr();
        let rest = self.call(|buf, cap, len| unsafe { sys::flamingo_detokenizer_flush(raw, buf, cap, len) })?;
        self.emitted.extend_from_slice(&rest);
        Ok(rest)
    }

    /// As [`finish_bytes`](Self::finish_bytes), as text.
    pub fn finish(&mut self) -> Result<String> {
        self.finish_bytes().map(|b| String::from_utf8(b).unwrap_or_else(|e| lossy(e.as_bytes())))
    }

    /// The tokens pushed so far.
    pub fn tokens(&self) -> &[i32] {
        &self.tokens
    }

    /// Everything [`push`](Self::push) returned so far.
    pub fn text(&self) -> String {
        lossy(&self.emitted)
    }
}

impl Drop for Detokenizer<'_> {
    fn drop(&mut self) {
        unsafe { sys::flamingo_detokenizer_free(self.raw.as_ptr()) }
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Model {
    /// Token ids of `text` with the model's tokenizer.json, as Hugging Face
    /// tokenizers (`flamingo_tokenize`): special tokens such as `<image>` and
    /// `<|endofchunk|>` in the text become their ids; `add_special` adds BOS
    /// etc. as the tokenizer's post-processor does. [`Status::Unsupported`]
    /// for a model without a tokenizer. Thread-safe.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<i32>> {
        let flags = if add_special { sys::FLAMINGO_TOKENIZE_ADD_SPECIAL } else { 0 };
        self.tokenize_bytes(text.as_bytes(), flags)
    }

    /// As [`tokenize`](Self::tokenize) with raw bytes (the library rejects
    /// invalid UTF-8 with [`Status::InvalidArgument`]) and raw flags.
    pub fn tokenize_bytes(&self, text: &[u8], flags: u32) -> Result<Vec<i32>> {
        let mut out = vec![0i32; text.len() + 8];
        loop {
            let mut count = 0usize;
            check(unsafe {
                sys::flamingo_tokenize(
                    self.raw.as_ptr(),
                    text.as_ptr().cast(),
                    text.len(),
                    flags,
                    out.as_mut_ptr(),
                    out.len(),
                    &mut count,
                )
            })?;
            if count <= out.len() {
                out.truncate(count);
                return Ok(out);
            }
            out.resize(count, 0); // the snprintf rule: again with the full size
        }
    }

    /// The text of token ids (`flamingo_detokenize`), as Hugging Face's
    /// decode; `skip_special` leaves out special tokens. Thread-safe.
    pub fn detokenize(&self, ids: &[i32], skip_special: bool) -> Result<String> {
        self.detokenize_bytes(ids, skip_special).map(|b| String::from_utf8(b).unwrap_or_else(|e| lossy(e.as_bytes())))
    }

    /// As [`detokenize`](Self::detokenize), the UTF-8 bytes.
    pub fn detokenize_bytes(&self, ids: &[i32], skip_special: bool) -> Result<Vec<u8>> {
        let flags = if skip_special { sys::FLAMINGO_DETOKENIZE_SKIP_SPECIAL } else { 0 };
        let mut out = vec![0u8; 16 * ids.len() + 16];
        loop {
            let mut len = 0usize;
            let ptr = if ids.is_empty() { std::ptr::null() } else { ids.as_ptr() };
            check(unsafe {
                sys::flamingo_detokenize(
                    self.raw.as_ptr(),
                    ptr,
                    ids.len(),
                    flags,
                    out.as_mut_ptr().cast(),
                    out.len(),
                    &mut len,
                )
            })?;
            if len < out.len() {
                out.truncate(len);
                return Ok(out);
            }
            out.resize(len + 1, 0); // room for the NUL
        }
    }

    /// A streaming [`Detokenizer`] for this model.
    pub fn detokenizer(&self, skip_special: bool) -> Result<Detokenizer<'_>> {
        Detokenizer::new(self, skip_special)
    }

    /// Decodes and preprocesses one image ([`Media::File`],
    /// [`Media::Encoded`] or [`Media::Rgb`]) exactly as the reference's CLIP
    /// preprocessing (`flamingo_model_preprocess_image`): `3 × image_size²`
    /// floats, planar, normalised, the input of
    /// [`encode_images`](Self::encode_images). Thread-safe.
    pub fn preprocess_image(&self, image: &Media<'_>) -> Result<Vec<f32>> {
        let raw = RawMedia::new(std::slice::from_ref(image))?;
        let mut out = vec![0.0f32; self.info.image_floats()];
        check(unsafe {
            sys::flamingo_model_preprocess_image(self.raw.as_ptr(), raw.as_ptr(), out.as_mut_ptr(), out.len())
        })?;
        Ok(out)
    }

    /// Visual tokens `[images.len()][num_latents][visual_dim]` of images of
    /// any kind: decoded and preprocessed (File, Encoded, Rgb), encoded
    /// (those and Pixels) or taken as given (VisualTokens), as
    /// [`Session::set_prompt`] does. (The high-level counterpart of
    /// [`encode_images`](Self::encode_images), which takes preprocessed
    /// pixels.)
    pub fn encode_media(&self, images: &[Media<'_>]) -> Result<Vec<f32>> {
        let per = self.info.media_floats();
        let mut out = Vec::with_capacity(images.len() * per);
        for image in images {
            match image {
                Media::VisualTokens(v) => {
                    check_len(v.len(), 1, per, "visual tokens", "image")?;
                    out.extend_from_slice(v);
                }
                Media::Pixels(p) => out.extend(self.encode_images(p, 1)?),
                _ => out.extend(self.encode_images(&self.preprocess_image(image)?, 1)?),
            }
        }
        Ok(out)
    }

    /// The logits of every position of `ids` attending to `images` (the k-th
    /// `<image>` token refers to `images[k]`): `ids.len() × vocab_size`
    /// floats, row-major.
    pub fn logits(&self, ids: &[i32], images: &[Media<'_>]) -> Result<Vec<f32>> {
        let visual = self.encode_media(images)?;
        let mut s = self.session(&SessionParams::default())?;
        if !images.is_empty() {
            s.set_media(&visual, images.len())?;
        }
        s.eval(ids, true)
    }

    /// Evaluates `prompt` (one `<image>` marker per image) with `images` in a
    /// new session and generates (`params`; [`GenerateParams::captioning`]
    /// is OpenFlamingo's beam search). `callback` sees every new token (beam
    /// search: the final ones, at the end) and returns `true` to stop.
    pub fn generate_tokens(
        &self,
        prompt: &str,
        images: &[Media<'_>],
        params: &GenerateParams,
        callback: Option<&mut dyn FnMut(i32) -> bool>,
    ) -> Result<Generation> {
        let mut s = self.session(&SessionParams::default())?;
        s.set_prompt_into(prompt.as_bytes(), images, None)?;
        s.generate(params, callback)
    }

    /// As [`generate_tokens`](Self::generate_tokens), returning the text of
    /// the new tokens (special tokens such as `<|endofchunk|>` left out).
    /// `stream` receives the text as it is completed, through the streaming
    /// [`Detokenizer`] (beam search: at the end); the result is the
    /// concatenation of what it received.
    pub fn generate_text(
        &self,
        prompt: &str,
        images: &[Media<'_>],
        params: &GenerateParams,
        mut stream: Option<&mut dyn FnMut(&str)>,
    ) -> Result<String> {
        let mut detok = self.detokenizer(true)?;
        let mut text = String::new();
        let mut failed: Option<Error> = None;
        {
            let mut on_token = |token: i32| -> bool {
                match detok.push(token) {
                    Ok(piece) => {
                        if !piece.is_empty() {
                            if let Some(f) = stream.as_mut() {
                                f(&piece);
                            }
                            text.push_str(&piece);
                        }
                        false
                    }
                    Err(e) => {
                        failed = Some(e);
                        true
                    }
                }
            };
            self.generate_tokens(prompt, images, params, Some(&mut on_token))?;
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let tail = detok.finish()?;
        if !tail.is_empty() {
            if let Some(f) = stream.as_mut() {
                f(&tail);
            }
            text.push_str(&tail);
        }
        Ok(text)
    }

    /// A caption of `image` with OpenFlamingo's captioning prompt
    /// ([`caption_prompt`]) and post-processing ([`postprocess_caption`]),
    /// optionally few-shot (`shots`: (image, caption) pairs), with
    /// [`GenerateParams::captioning`]: 3 beams, length_penalty 0, at most 20
    /// new tokens.
    pub fn caption(&self, image: &Media<'_>, shots: &[(Media<'_>, &str)]) -> Result<String> {
        self.caption_with(image, shots, &GenerateParams::captioning(), None)
    }

    /// As [`caption`](Self::caption) with other generation parameters and a
    /// `stream` for the raw generated text.
    pub fn caption_with(
        &self,
        image: &Media<'_>,
        shots: &[(Media<'_>, &str)],
        params: &GenerateParams,
        stream: Option<&mut dyn FnMut(&str)>,
    ) -> Result<String> {
        let captions: Vec<&str> = shots.iter().map(|(_, c)| *c).collect();
        let mut images: Vec<Media<'_>> = shots.iter().map(|(m, _)| *m).collect();
        images.push(*image);
        let text = self.generate_text(&caption_prompt(&captions), &images, params, stream)?;
        Ok(postprocess_caption(&text))
    }

    /// A short answer to `question` about `image` with OpenFlamingo's VQA
    /// prompt ([`vqa_prompt`]) and post-processing ([`postprocess_vqa`]),
    /// optionally few-shot (`shots`: (image, question, answer)), with
    /// [`GenerateParams::vqa`]: 3 beams, length_penalty 0, at most 5 new
    /// tokens.
    pub fn vqa(&self, image: &Media<'_>, question: &str, shots: &[(Media<'_>, &str, &str)]) -> Result<String> {
        self.vqa_with(image, question, shots, &GenerateParams::vqa(), None)
    }

    /// As [`vqa`](Self::vqa) with other generation parameters and a `stream`.
    pub fn vqa_with(
        &self,
        image: &Media<'_>,
        question: &str,
        shots: &[(Media<'_>, &str, &str)],
        params: &GenerateParams,
        stream: Option<&mut dyn FnMut(&str)>,
    ) -> Result<String> {
        let qa: Vec<(&str, &str)> = shots.iter().map(|(_, q, a)| (*q, *a)).collect();
        let mut images: Vec<Media<'_>> = shots.iter().map(|(m, _, _)| *m).collect();
        images.push(*image);
        let text = self.generate_text(&vqa_prompt(question, &qa), &images, params, stream)?;
        Ok(postprocess_vqa(&text))
    }
}

impl GenerateParams {
    /// OpenFlamingo's captioning settings: beam search with 3 beams,
    /// length_penalty 0, at most 20 new tokens (the rest as
    /// [`Default`]).
    pub fn captioning() -> GenerateParams {
        GenerateParams { max_new_tokens: 20, num_beams: 3, length_penalty: 0.0, ..GenerateParams::default() }
    }

    /// OpenFlamingo's VQA settings: as [`captioning`](Self::captioning) with
    /// at most 5 new tokens.
    pub fn vqa() -> GenerateParams {
        GenerateParams { max_new_tokens: 5, ..GenerateParams::captioning() }
    }
}

// ---------------------------------------------------------------------------
// OpenFlamingo prompts and post-processing
// ---------------------------------------------------------------------------

/// OpenFlamingo's captioning prompt: one
/// `<image>Output:{caption}<|endofchunk|>` per few-shot caption, then
/// `<image>Output:`, joined with `"\n"`.
pub fn caption_prompt(captions: &[&str]) -> String {
    let mut parts: Vec<String> = captions.iter().map(|c| format!("<image>Output:{c}<|endofchunk|>")).collect();
    parts.push("<image>Output:".into());
    parts.join("\n")
}

/// OpenFlamingo's VQA prompt: one
/// `<image>Question:{q} Short answer:{a}<|endofchunk|>` per few-shot pair,
/// then `<image>Question:{question} Short answer:`, joined with `"\n"`.
pub fn vqa_prompt(question: &str, shots: &[(&str, &str)]) -> String {
    let mut parts: Vec<String> =
        shots.iter().map(|(q, a)| format!("<image>Question:{q} Short answer:{a}<|endofchunk|>")).collect();
    parts.push(format!("<image>Question:{question} Short answer:"));
    parts.join("\n")
}

/// Python's `str.isspace()` (which `str.strip()` removes): unlike
/// `char::is_whitespace` it includes U+001C..U+001F.
fn py_space(c: char) -> bool {
    matches!(c, '\u{9}'..='\u{d}' | '\u{1c}'..='\u{20}' | '\u{85}' | '\u{a0}' | '\u{1680}' | '\u{2000}'..='\u{200a}'
        | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// OpenFlamingo's caption post-processing: cut at the first `"Output"`,
/// remove `'"'`, strip (as Python's `str.strip()`).
pub fn postprocess_caption(text: &str) -> String {
    let cut = text.split("Output").next().unwrap_or("");
    cut.replace('"', "").trim_matches(py_space).to_string()
}

/// OpenFlamingo's VQA post-processing: cut at the first of `"Question"`,
/// `"Answer"` or `"Short"`, then at the first `", "`, strip.
pub fn postprocess_vqa(text: &str) -> String {
    let end = ["Question", "Answer", "Short"].iter().filter_map(|w| text.find(w)).min().unwrap_or(text.len());
    let answer = &text[..end];
    answer.split(", ").next().unwrap_or("").trim_matches(py_space).to_string()
}
