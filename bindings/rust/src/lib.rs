//! Safe Rust bindings for libflamingo, an inference engine for OpenFlamingo
//! models with a C ABI (`include/flamingo.h`).
//!
//! ```no_run
//! let model = flamingo::Model::load("Tests/Fixtures/mpt_tiny", &flamingo::ModelParams::default())?;
//! println!("{} {}", flamingo::version(), model.info().lm_family);
//! # Ok::<(), flamingo::Error>(())
//! ```
//!
//! [`sys`] holds the raw declarations. The native library is linked at build
//! time (see `build.rs`: `FLAMINGO_LIB_DIR` or `pkg-config`).

pub mod sys;

use std::ffi::{CStr, CString, c_char, c_void};
use std::fmt;
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
}

impl Drop for Model {
    fn drop(&mut self) {
        unsafe { sys::flamingo_model_free(self.raw.as_ptr()) }
    }
}
