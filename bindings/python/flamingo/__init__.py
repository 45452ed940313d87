"""Python bindings for libflamingo (ctypes, standard library only).

    import flamingo
    print(flamingo.version(), flamingo.devices()[0].name)
    with flamingo.Model.load("Tests/Fixtures/mpt_tiny") as model:
        print(model.info.lm_family)

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
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, Type, Union

from . import _lib
from ._lib import LibraryError

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "Backend", "BackendError", "BufferTooSmallError", "CancelledError", "Device",
    "DeviceType", "FlamingoError", "InternalError", "InvalidArgumentError", "InvalidFormatError",
    "IoError", "LibraryError", "LogLevel", "Model", "ModelInfo", "NotFoundError", "OutOfMemoryError",
    "Status", "UnsupportedError", "abi_version", "device", "device_count", "devices", "last_error", "load_library",
    "set_log_callback", "set_log_level", "status_string", "version",
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
