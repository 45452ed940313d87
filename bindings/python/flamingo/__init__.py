"""Python bindings for libflamingo (ctypes, standard library only).

    import flamingo
    print(flamingo.version(), flamingo.devices()[0].name)
    with flamingo.Model.load("Tests/Fixtures/mpt_tiny") as model:
        print(model.info.lm_family)
        visual = model.encode_images(pixels, n_images=2)   # float32 [2][3][S][S]
        with model.session() as s:
            s.set_media(visual)                 # or s.set_images(pixels)
            logits = s.eval(prompt_ids)         # array('f') of vocab_size floats
            tokens, reason = s.generate(max_new_tokens=8)

Float inputs (pixels, visual tokens) may be any buffer of float32 (array('f'),
a memoryview cast to 'f', a numpy float32 array: passed without a copy when
C-contiguous), any other numeric buffer (numpy float64, array('d'), ...:
converted, in C order) or a flat sequence of numbers. Raw bytes must be cast
first (``memoryview(b).cast('f')``): a bytes object is a buffer of uint8.
Token inputs are int32 buffers or sequences of ints. Float outputs are
``array('f')``.

The shared library is found through, in order: the environment variable
FLAMINGO_LIBRARY (the full path of the .so), ``<sys.prefix>/lib``,
``/usr/local/lib``, ``ctypes.util.find_library("flamingo")`` and the dynamic
loader's own search, trying ``libflamingo.so.1`` then ``libflamingo.so``.
It is loaded on first use; its ABI version must be 1.
"""

from __future__ import annotations

import ctypes
import enum
import os
import struct
import sys
import threading
from array import array
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, Union

from . import _lib
from ._lib import LibraryError

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "Backend", "BackendError", "BufferTooSmallError", "CancelledError", "Device",
    "DeviceType", "FlamingoError", "InternalError", "InvalidArgumentError", "InvalidFormatError",
    "IoError", "LibraryError", "LogLevel", "Model", "ModelInfo", "NotFoundError", "OutOfMemoryError",
    "Session", "Status", "StopReason", "UnsupportedError", "abi_version", "device", "device_count", "devices",
    "last_error", "load_library", "set_log_callback", "set_log_level", "status_string", "version",
]

ABI_VERSION = _lib.ABI_VERSION


# --------------------------------------------------------------------------
# Enums
# --------------------------------------------------------------------------


class Status(enum.IntEnum):
    OK = 0
    INVALID_ARGUMENT = 1
    IO = 2
    INVALID_FORMAT = 3
    UNSUPPORTED = 4
    OUT_OF_MEMORY = 5
    BACKEND = 6
    NOT_FOUND = 7
    BUFFER_TOO_SMALL = 8
    CANCELLED = 9
    INTERNAL = 10


class LogLevel(enum.IntEnum):
    DEBUG = 0
    INFO = 1
    WARN = 2
    ERROR = 3
    NONE = 4


class Backend(enum.IntEnum):
    CPU = 0
    OPENCL = 1


class DeviceType(enum.IntEnum):
    CPU = 0
    GPU = 1
    ACCELERATOR = 2
    OTHER = 3


class StopReason(enum.IntEnum):
    """Why :meth:`Session.generate` stopped (flamingo_stop_reason)."""

    MAX_TOKENS = 0  #: max_new_tokens reached
    TOKEN = 1  #: a stop token was generated (it is included)
    CANCELLED = 2  #: the callback asked to stop


def _enum_or_int(cls, value: int):
    try:
        return cls(value)
    except ValueError:
        return value


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class FlamingoError(Exception):
    """A failed libflamingo call: ``status`` (a :class:`Status`, or the raw
    int for a status this module does not know) and ``message`` (the
    library's flamingo_last_error())."""

    status: Union[Status, int] = -1

    def __init__(self, status: Union[Status, int], message: str):
        super().__init__(status, message)
        self.status = _enum_or_int(Status, int(status))
        self.message = message

    def __str__(self) -> str:
        return f"{status_string(self.status)}: {self.message}"


class InvalidArgumentError(FlamingoError):
    status = Status.INVALID_ARGUMENT


class IoError(FlamingoError):
    status = Status.IO


class InvalidFormatError(FlamingoError):
    status = Status.INVALID_FORMAT


class UnsupportedError(FlamingoError):
    status = Status.UNSUPPORTED


class OutOfMemoryError(FlamingoError):
    status = Status.OUT_OF_MEMORY


class BackendError(FlamingoError):
    status = Status.BACKEND


class NotFoundError(FlamingoError):
    status = Status.NOT_FOUND


class BufferTooSmallError(FlamingoError):
    status = Status.BUFFER_TOO_SMALL


class CancelledError(FlamingoError):
    status = Status.CANCELLED


class InternalError(FlamingoError):
    status = Status.INTERNAL


_ERRORS: Dict[int, Type[FlamingoError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError, IoError, InvalidFormatError, UnsupportedError, OutOfMemoryError,
        BackendError, NotFoundError, BufferTooSmallError, CancelledError, InternalError,
    )
}


def _error(status: int) -> FlamingoError:
    # Must run on the thread of the failed call: the message is per-thread.
    cls = _ERRORS.get(status, FlamingoError)
    return cls(status, last_error())


def _check(status: int) -> None:
    if status != Status.OK:
        raise _error(status)


def _str(raw: bytes) -> str:
    # Bytes that are not UTF-8 survive a round trip (surrogateescape).
    return raw.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------
# Buffers
# --------------------------------------------------------------------------

_LITTLE = sys.byteorder == "little"


def _native_format(mv: memoryview) -> Optional[str]:
    """The memoryview's format as one native struct character, or None
    (non-native byte order, or a compound format)."""
    fmt = mv.format
    if fmt[:1] in ("@", "="):
        fmt = fmt[1:]
    elif fmt[:1] == "<" and _LITTLE or fmt[:1] == ">" and not _LITTLE:
        if mv.itemsize != struct.calcsize(fmt):  # standard size must equal the native one
            return None
        fmt = fmt[1:]
    return fmt if len(fmt) == 1 and fmt in "bBhHiIlLqQnNefd?" else None


def _values(mv: memoryview) -> Iterable[Any]:
    """The elements of any buffer, flattened in C order."""
    fmt = _native_format(mv)
    if fmt is not None and fmt != "e":
        flat = mv if mv.c_contiguous else memoryview(mv.tobytes())
        return flat.cast("B").cast(fmt)
    return (v[0] for v in struct.iter_unpack(mv.format, mv.tobytes()))


def _typed(data: Any, code: str, ctype: Any, what: str) -> Tuple[Any, int]:
    """`data` as a ctypes array of `ctype` (array code `code`, 4-byte items):
    without a copy when it is a C-contiguous buffer of that type, else
    converted. Returns (ctypes array, number of items)."""
    try:
        mv = memoryview(data)
    except TypeError:
        mv = None
    if mv is not None:
        if mv.ndim == 0:
            raise TypeError(f"{what} must be a sequence or an array, not a scalar")
        if _native_format(mv) == code and mv.itemsize == 4 and mv.c_contiguous:
            raw = mv.cast("B")
            n = raw.nbytes // 4
            if raw.readonly:
                return (ctype * n).from_buffer_copy(raw), n
            return (ctype * n).from_buffer(raw), n
        items: Iterable[Any] = _values(mv)
    else:
        items = data
    try:
        a = array(code, items)
    except OverflowError:
        raise ValueError(f"{what}: a value does not fit a 32-bit {'int' if code == 'i' else 'float'}") from None
    except TypeError as e:
        raise TypeError(f"{what} must be a buffer or a flat sequence of numbers ({e})") from None
    n = len(a)
    if n == 0:
        return (ctype * 0)(), 0
    return (ctype * n).from_buffer(a), n


def _floats(data: Any, what: str) -> Tuple[Any, int]:
    return _typed(data, "f", ctypes.c_float, what)


def _int32s(data: Any, what: str) -> Tuple[Any, int]:
    return _typed(data, "i", ctypes.c_int32, what)


def _float_out(n: int) -> Tuple[array, Any]:
    """A zeroed array('f') of n floats and a c_float pointer to its data."""
    out = array("f", bytes(4 * n)) if n else array("f")
    ptr = ctypes.cast(out.buffer_info()[0], ctypes.POINTER(ctypes.c_float)) if n else None
    return out, ptr


def _count(data_len: int, per_item: int, n: Optional[int], what: str, item: str) -> int:
    """Checks that a buffer of data_len values holds n items of per_item
    values (n None: infers n)."""
    if n is None:
        if per_item == 0 or data_len % per_item:
            raise ValueError(f"{what} holds {data_len} values, not a whole number of {item}s of {per_item}")
        return data_len // per_item
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"the number of {item}s must be a non-negative int, not {n!r}")
    if data_len != n * per_item:
        raise ValueError(f"{what} holds {data_len} values; {n} {item}(s) need {n * per_item}")
    return n


# --------------------------------------------------------------------------
# Library-wide functions
# --------------------------------------------------------------------------


def load_library(path: Optional[str] = None) -> None:
    """Loads libflamingo now, from `path` or by the usual search order.
    Optional: every function loads it on first use."""
    with _lib._lock:
        if _lib._lib is None:
            _lib._lib = _lib.load(path)


def version() -> str:
    """The library's version string, e.g. "0.1.0"."""
    return _str(_lib.lib().flamingo_version())


def abi_version() -> int:
    """The library's ABI version (1)."""
    return int(_lib.lib().flamingo_abi_version())


def status_string(status: int) -> str:
    """The library's short description of a status ("invalid argument", ...)."""
    return _str(_lib.lib().flamingo_status_string(int(status)))


def last_error() -> str:
    """The message of the most recent failed call on this thread, or ""."""
    return _str(_lib.lib().flamingo_last_error())


# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------

LogCallback = Callable[[LogLevel, str], None]

_log_handler: Optional[LogCallback] = None
_log_lock = threading.Lock()


def _log_trampoline(level: int, message: Optional[bytes], _user_data: Optional[int]) -> None:
    handler = _log_handler
    if handler is None:
        return
    try:
        handler(_enum_or_int(LogLevel, level), _str(message or b""))
    except BaseException:  # an exception must not unwind into C
        import traceback

        traceback.print_exc()


# One C thunk for the life of the process: the library may still be calling
# the previous callback on another thread while it is being replaced, so the
# thunk is never freed; set_log_callback only swaps the Python handler.
_LOG_THUNK = _lib.flamingo_log_callback(_log_trampoline)


def set_log_callback(fn: Optional[LogCallback]) -> None:
    """Routes the library's log messages to ``fn(level, message)``; None
    restores the library's default sink (stderr). ``fn`` may be called from
    any thread the library uses; exceptions it raises are printed and dropped."""
    global _log_handler
    with _log_lock:
        _log_handler = fn
        if fn is None:
            _lib.lib().flamingo_log_set(_lib.flamingo_log_callback(), None)
        else:
            _lib.lib().flamingo_log_set(_LOG_THUNK, None)


def set_log_level(level: Union[LogLevel, int, str]) -> None:
    """Drops messages below `level` (default WARN). Accepts a LogLevel, an
    int or a name ("debug", "info", "warn", "error", "none")."""
    if isinstance(level, str):
        try:
            level = LogLevel[level.upper()]
        except KeyError:
            raise ValueError(f"unknown log level {level!r}") from None
    _lib.lib().flamingo_log_set_level(int(level))


# --------------------------------------------------------------------------
# Devices
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """One entry of :func:`devices` (flamingo_device_info)."""

    index: int
    backend: Union[Backend, int]
    type: Union[DeviceType, int]
    platform_index: int
    device_index: int
    compute_units: int
    memory_bytes: int
    name: str
    platform_name: str
    vendor: str
    driver_version: str


def device_count() -> int:
    n = ctypes.c_size_t(0)
    _check(_lib.lib().flamingo_device_count(ctypes.byref(n)))
    return n.value


def device(index: int) -> Device:
    """Describes device `index`; raises NotFoundError when out of range."""
    if index < 0:
        raise NotFoundError(Status.NOT_FOUND, f"device index {index} is negative")
    d = _lib.flamingo_device_info()
    d.struct_size = ctypes.sizeof(d)
    _check(_lib.lib().flamingo_device_get_info(index, ctypes.byref(d)))
    return Device(
        index=index,
        backend=_enum_or_int(Backend, d.backend),
        type=_enum_or_int(DeviceType, d.type),
        platform_index=d.platform_index,
        device_index=d.device_index,
        compute_units=d.compute_units,
        memory_bytes=d.memory_bytes,
        name=_str(d.name),
        platform_name=_str(d.platform_name),
        vendor=_str(d.vendor),
        driver_version=_str(d.driver_version),
    )


def devices() -> List[Device]:
    """Every usable device; device 0 is always the CPU backend."""
    return [device(i) for i in range(device_count())]


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """flamingo_model_info (every field but struct_size)."""

    architecture: str
    vision_kind: str
    lm_family: str
    image_size: int
    patch_size: int
    vision_width: int
    vision_layers: int
    vision_heads: int
    vision_tokens: int
    resampler_depth: int
    resampler_heads: int
    resampler_dim_head: int
    num_latents: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_seq_len: int
    vocab_size: int
    cross_attn_every_n_layers: int
    num_cross_attn_layers: int
    image_token_id: int
    endofchunk_token_id: int
    pad_token_id: int
    bos_token_id: int
    eos_token_id: int
    image_mean: Tuple[float, float, float]
    image_std: Tuple[float, float, float]
    num_parameters: int
    weight_bytes: int
    visual_dim: int

    @classmethod
    def _from_c(cls, c: "_lib.flamingo_model_info") -> "ModelInfo":
        kw = {}
        for name, _ in _lib.flamingo_model_info._fields_:
            if name == "struct_size":
                continue
            v = getattr(c, name)
            if isinstance(v, bytes):
                v = _str(v)
            elif name in ("image_mean", "image_std"):
                v = tuple(float(x) for x in v)
            kw[name] = v
        return cls(**kw)


def _backend(value: Union[Backend, int, str]) -> int:
    if isinstance(value, str):
        try:
            return Backend[value.upper()]
        except KeyError:
            raise ValueError(f"unknown backend {value!r} (use 'cpu' or 'opencl')") from None
    return int(value)


class Model:
    """A loaded model (immutable; may be shared between threads).

    Create with :meth:`Model.load`; release with :meth:`close` or a ``with``
    block (closing twice is fine). Do not close a model another thread is
    still using."""

    def __init__(self, handle: "_lib.flamingo_model_p", path: str):
        self._handle: Optional[_lib.flamingo_model_p] = handle
        self._free = _lib.lib().flamingo_model_free  # kept for __del__ at shutdown
        self._info: Optional[ModelInfo] = None
        self.path = path

    @classmethod
    def load(
        cls,
        path: Union[str, "os.PathLike[str]"],
        backend: Union[Backend, int, str] = "cpu",
        device_index: int = -1,
        n_threads: int = 0,
    ) -> "Model":
        """Loads the model directory `path`. `backend` is "cpu" or "opencl";
        `device_index` an index from :func:`devices` (-1 = the backend's
        default); `n_threads` the CPU threads (0 = one per core)."""
        lib = _lib.lib()
        if not -(2**31) <= device_index < 2**31:
            raise ValueError(f"device_index {device_index} out of range")
        if not 0 <= n_threads < 2**32:
            raise ValueError(f"n_threads {n_threads} out of range")
        params = _lib.flamingo_model_params()
        _check(lib.flamingo_model_default_params(ctypes.byref(params), ctypes.sizeof(params)))
        params.backend = _backend(backend)
        params.device_index = device_index
        params.n_threads = n_threads
        fspath = os.fspath(path)
        raw = os.fsencode(fspath)
        if b"\0" in raw:
            raise ValueError("path contains a NUL byte")
        handle = _lib.flamingo_model_p()
        _check(lib.flamingo_model_load(raw, ctypes.byref(params), ctypes.byref(handle)))
        return cls(handle, os.fsdecode(fspath))

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def handle(self) -> "_lib.flamingo_model_p":
        """The raw flamingo_model* (for use with the _lib declarations)."""
        if self._handle is None:
            raise ValueError("the model is closed")
        return self._handle

    @property
    def info(self) -> ModelInfo:
        """The model's configuration and totals (flamingo_model_get_info)."""
        if self._info is None:
            c = _lib.flamingo_model_info()
            c.struct_size = ctypes.sizeof(c)
            _check(_lib.lib().flamingo_model_get_info(self.handle, ctypes.byref(c)))
            self._info = ModelInfo._from_c(c)
        return self._info

    def encode_images(self, pixels: Any, n_images: Optional[int] = None) -> array:
        """Encodes images into visual tokens (vision encoder + Perceiver
        Resampler; flamingo_model_encode_images).

        `pixels` holds `n_images` preprocessed images as float32, planar
        [n_images][3][image_size][image_size] with the CLIP mean/std already
        applied (any float buffer or flat sequence; `n_images` None infers it
        from the length). Returns array('f') of
        n_images * num_latents * visual_dim floats, which
        :meth:`Session.set_media` accepts. Thread-safe."""
        info = self.info
        buf, n = _floats(pixels, "pixels")
        n_images = _count(n, 3 * info.image_size * info.image_size, n_images, "pixels", "image")
        count = n_images * info.num_latents * info.visual_dim
        out, ptr = _float_out(count)
        _check(_lib.lib().flamingo_model_encode_images(self.handle, buf, n_images, ptr, count))
        return out

    def session(self, n_ctx: int = 0) -> "Session":
        """A new, empty :class:`Session` on this model holding at most `n_ctx`
        tokens (0 = the model's max_seq_len). The session keeps the weights
        alive: it may outlive this Model object's :meth:`close`."""
        return Session(self, n_ctx)

    def close(self) -> None:
        """Releases the model; a second call does nothing."""
        handle, self._handle = self._handle, None
        if handle is not None:
            self._free(handle)

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # A copy would free the same handle twice.
    def __copy__(self):
        raise TypeError("flamingo.Model cannot be copied; share the object instead")

    def __deepcopy__(self, memo):
        raise TypeError("flamingo.Model cannot be copied; share the object instead")

    def __reduce__(self):
        raise TypeError("flamingo.Model cannot be pickled")

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<flamingo.Model {self.path!r} ({state})>"


# --------------------------------------------------------------------------
# Sessions and generation
# --------------------------------------------------------------------------

TokenCallback = Callable[[int], Any]

_U32 = 2**32


def _u32(value: Any, name: str) -> int:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int) or not 0 <= value < _U32:
        raise ValueError(f"{name} must be an int in [0, 2**32), not {value!r}")
    return value


class Session:
    """One token sequence with its KV cache and media (flamingo_session).

    Create with :meth:`Model.session` (or ``Session(model, n_ctx)``); release
    with :meth:`close` or a ``with`` block. A session keeps the model's
    weights alive, so it may outlive the :class:`Model` it came from. Calls
    on one session are serialised by a lock (the library allows one thread
    at a time per session); different sessions run concurrently. A closed
    session raises ValueError."""

    def __init__(self, model: Model, n_ctx: int = 0):
        lib = _lib.lib()
        params = _lib.flamingo_session_params()
        _check(lib.flamingo_session_default_params(ctypes.byref(params), ctypes.sizeof(params)))
        params.n_ctx = _u32(n_ctx, "n_ctx")
        info = model.info
        handle = _lib.flamingo_session_p()
        _check(lib.flamingo_session_init(model.handle, ctypes.byref(params), ctypes.byref(handle)))
        self._setup(handle, info, n_ctx or info.max_seq_len)

    def _setup(self, handle: "_lib.flamingo_session_p", info: ModelInfo, n_ctx: int) -> None:
        self._handle: Optional[_lib.flamingo_session_p] = handle
        self._free = _lib.lib().flamingo_session_free  # kept for __del__ at shutdown
        self._lock = threading.Lock()
        self._owner: Optional[int] = None
        self.info = info
        self.n_ctx = n_ctx

    # -- plumbing --------------------------------------------------------

    class _Use:
        __slots__ = ("s",)

        def __init__(self, s: "Session"):
            self.s = s

        def __enter__(self) -> "_lib.flamingo_session_p":
            s = self.s
            if s._owner == threading.get_ident():
                raise RuntimeError("a Session cannot be used from its own generate callback")
            s._lock.acquire()
            s._owner = threading.get_ident()
            if s._handle is None:
                s._owner = None
                s._lock.release()
                raise ValueError("the session is closed")
            return s._handle

        def __exit__(self, *exc) -> None:
            self.s._owner = None
            self.s._lock.release()

    def _use(self) -> "Session._Use":
        return Session._Use(self)

    @property
    def closed(self) -> bool:
        return self._handle is None

    @property
    def handle(self) -> "_lib.flamingo_session_p":
        """The raw flamingo_session* (for use with the _lib declarations)."""
        if self._handle is None:
            raise ValueError("the session is closed")
        return self._handle

    def close(self) -> None:
        """Releases the session; a second call does nothing."""
        if self._handle is None:
            return
        with self._use() as handle:
            self._handle = None
            self._free(handle)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            self._handle = None
            try:
                self._free(handle)
            except Exception:
                pass

    def __copy__(self) -> "Session":
        return self.copy()

    def __deepcopy__(self, memo) -> "Session":
        return self.copy()

    def __reduce__(self):
        raise TypeError("flamingo.Session cannot be pickled")

    def __repr__(self) -> str:
        if self.closed:
            return "<flamingo.Session (closed)>"
        return f"<flamingo.Session {len(self)}/{self.n_ctx} tokens>"

    # -- API -------------------------------------------------------------

    def __len__(self) -> int:
        """The number of tokens in the sequence (flamingo_session_length)."""
        n = ctypes.c_size_t(0)
        with self._use() as h:
            _check(_lib.lib().flamingo_session_length(h, ctypes.byref(n)))
        return n.value

    def copy(self) -> "Session":
        """An independent copy: tokens, KV cache, media and last logits."""
        out = _lib.flamingo_session_p()
        with self._use() as h:
            _check(_lib.lib().flamingo_session_copy(h, ctypes.byref(out)))
        s = Session.__new__(Session)
        s._setup(out, self.info, self.n_ctx)
        return s

    def set_images(self, pixels: Any, n_images: Optional[int] = None) -> None:
        """Encodes images (as :meth:`Model.encode_images`) and makes them the
        session's media; the k-th <image> token refers to image k-1."""
        info = self.info
        buf, n = _floats(pixels, "pixels")
        n_images = _count(n, 3 * info.image_size * info.image_size, n_images, "pixels", "image")
        if n_images == 0:
            raise ValueError("set_images needs at least one image (use set_media([]) to remove the media)")
        with self._use() as h:
            _check(_lib.lib().flamingo_session_set_images(h, buf, n_images))

    def set_media(self, visual_tokens: Any, n_media: Optional[int] = None) -> None:
        """Sets the media from visual tokens [n_media][num_latents][visual_dim]
        (as returned by :meth:`Model.encode_images`); the data is copied. None
        or an empty buffer (n_media 0) removes the media."""
        info = self.info
        buf, n = _floats(() if visual_tokens is None else visual_tokens, "visual_tokens")
        n_media = _count(n, info.num_latents * info.visual_dim, n_media, "visual_tokens", "media")
        with self._use() as h:
            _check(_lib.lib().flamingo_session_set_media(h, buf if n_media else None, n_media))

    def eval(self, tokens: Any, all_logits: bool = False, *, logits: bool = True) -> Optional[array]:
        """Appends `tokens` (ints, or an int32 buffer) to the sequence and
        evaluates them. Returns array('f') with the last position's logits
        (vocab_size floats) or, with `all_logits`, len(tokens) * vocab_size
        floats; ``logits=False`` only extends the cache and returns None. On
        error (an id outside the vocabulary, a full context) the session is
        unchanged."""
        buf, n = _int32s(tokens, "tokens")
        flags = _lib.FLAMINGO_EVAL_ALL_LOGITS if all_logits else 0
        count = (n if all_logits else 1) * self.info.vocab_size if logits else 0
        out, ptr = _float_out(count) if logits else (None, None)
        with self._use() as h:
            _check(_lib.lib().flamingo_session_eval(h, buf, n, flags, ptr, count))
        return out

    def truncate(self, length: int) -> None:
        """Rolls the sequence back to its first `length` tokens (the media is
        kept). Generation then needs a new :meth:`eval`."""
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise ValueError(f"length must be a non-negative int, not {length!r}")
        with self._use() as h:
            _check(_lib.lib().flamingo_session_truncate(h, length))

    def generate(
        self,
        max_new_tokens: int = 20,
        *,
        min_new_tokens: Optional[int] = None,
        do_sample: Optional[bool] = None,
        temperature: Optional[float] = None,
        top_k: Optional[int] = None,
        top_p: Optional[float] = None,
        num_beams: Optional[int] = None,
        length_penalty: Optional[float] = None,
        early_stopping: Optional[bool] = None,
        no_repeat_ngram_size: Optional[int] = None,
        repetition_penalty: Optional[float] = None,
        stop_at_endofchunk: Optional[bool] = None,
        stop_at_eos: Optional[bool] = None,
        seed: Optional[int] = None,
        callback: Optional[TokenCallback] = None,
    ) -> Tuple[List[int], Union[StopReason, int]]:
        """Generates a continuation of the evaluated sequence
        (flamingo_session_generate) and returns ``(tokens, reason)``.

        Options left as None keep the library's defaults (greedy;
        temperature 1, top_k 0, top_p 1, num_beams 1, length_penalty 1,
        repetition_penalty 1, stop at <|endofchunk|> and EOS, seed 0).
        ``callback(token)`` sees every generated token (beam search: the final
        tokens, in order); a true return value stops generation
        (:attr:`StopReason.CANCELLED`). An exception raised by the callback
        also stops it and is re-raised here (the session then holds the
        tokens generated so far). Afterwards the session holds the prompt
        plus the returned tokens; on error it is unchanged."""
        lib = _lib.lib()
        p = _lib.flamingo_generate_params()
        _check(lib.flamingo_generate_default_params(ctypes.byref(p), ctypes.sizeof(p)))
        p.max_new_tokens = _u32(max_new_tokens, "max_new_tokens")
        for name, value in (("min_new_tokens", min_new_tokens), ("top_k", top_k), ("num_beams", num_beams),
                            ("no_repeat_ngram_size", no_repeat_ngram_size), ("do_sample", do_sample),
                            ("early_stopping", early_stopping), ("stop_at_endofchunk", stop_at_endofchunk),
                            ("stop_at_eos", stop_at_eos)):
            if value is not None:
                setattr(p, name, _u32(value, name))
        for name, value in (("temperature", temperature), ("top_p", top_p), ("length_penalty", length_penalty),
                            ("repetition_penalty", repetition_penalty)):
            if value is not None:
                setattr(p, name, float(value))
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
                raise ValueError(f"seed must be an int in [0, 2**64), not {seed!r}")
            p.seed = seed

        raised: List[BaseException] = []
        thunk = None
        if callback is not None:
            if not callable(callback):
                raise TypeError("callback must be callable")

            def trampoline(token: int, _user_data: Optional[int]) -> int:
                if raised:
                    return 1
                try:
                    return 1 if callback(int(token)) else 0
                except BaseException as e:  # must not unwind into C
                    raised.append(e)
                    return 1

            thunk = _lib.flamingo_token_callback(trampoline)
            p.callback = thunk

        capacity = max(p.max_new_tokens, 1)
        out = (ctypes.c_int32 * capacity)()
        count = ctypes.c_size_t(0)
        reason = _lib.flamingo_stop_reason(-1)
        with self._use() as h:
            status = lib.flamingo_session_generate(h, ctypes.byref(p), out, capacity, ctypes.byref(count),
                                                   ctypes.byref(reason))
        del thunk  # only now: the library may call it until generate returns
        if raised:
            raise raised[0]
        _check(status)
        return list(out[:count.value]), _enum_or_int(StopReason, reason.value)
