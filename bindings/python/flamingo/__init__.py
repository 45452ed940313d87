"""Python bindings for libflamingo (ctypes, standard library only; numpy for
the functions that return arrays, PIL images accepted when PIL is installed).

High-level API:

    import flamingo
    model = flamingo.Model("Tests/Fixtures/mpt_tiny", backend="cpu", threads=None)
    print(model.caption("cat.jpg"))                              # beam 3, lp 0, max 20
    print(model.caption("cat.jpg", shots=[("dog.jpg", "A dog.")]))
    print(model.vqa("cat.jpg", "What is it?", shots=[("dog.jpg", "What is it?", "a dog")]))
    text = model.generate("<image>Output:", ["cat.jpg"], max_new_tokens=20, stream=print)
    ids = model.tokenize("<image>Output:")
    logits = model.logits(ids, ["cat.jpg"])                      # numpy float32 [L, V]
    visual = model.encode_images(["cat.jpg", "dog.jpg"])         # numpy [2, latents, dim]

Images: file paths, encoded bytes, numpy uint8 HxWx3 arrays, PIL images,
preprocessed float32 [3, S, S] arrays, visual-token arrays [latents, dim],
or flamingo.Media items.

Lower-level API:

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
import queue
import struct
import sys
import threading
from array import array
from dataclasses import dataclass
from typing import Iterator, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Type, Union

from . import _lib
from ._lib import LibraryError

__version__ = "0.1.0"

__all__ = [
    "ABI_VERSION", "Backend", "BackendError", "BufferTooSmallError", "CancelledError", "Detokenizer", "Device",
    "DeviceType", "FlamingoError", "InternalError", "InvalidArgumentError", "InvalidFormatError",
    "IoError", "LibraryError", "LogLevel", "Media", "Model", "ModelInfo", "NotFoundError", "OutOfMemoryError",
    "Session", "Status", "StopReason", "UnsupportedError", "abi_version", "batch_generate", "caption_prompt",
    "device", "device_count", "devices", "last_error", "load_library", "postprocess_caption", "postprocess_vqa",
    "quantize",
    "set_log_callback", "set_log_level", "status_string", "version", "vqa_prompt",
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


def quantize(input_dir: Union[str, os.PathLike], output_dir: Union[str, os.PathLike], type: str = "q4",
             group_size: int = 64, keep: Optional[Sequence[str]] = None, search: bool = True,
             overwrite: bool = False) -> None:
    """Converts a model directory to another storage type (flamingo_model_quantize): "q4", "q8",
    "bf16", "f16" or "f32". `keep` holds "PATTERN=TYPE" rules (module-path globs) overriding the
    type per matrix, None for the type's default policy. Streams tensor by tensor."""
    p = _lib.flamingo_quantize_params()
    _check(_lib.lib().flamingo_quantize_default_params(ctypes.byref(p), ctypes.sizeof(p)))
    p.type = type.encode()
    p.group_size = group_size
    p.search = int(bool(search))
    p.overwrite = int(bool(overwrite))
    rules = None if keep is None else "\n".join(keep).encode()
    p.keep = rules
    _check(_lib.lib().flamingo_model_quantize(os.fsencode(input_dir), os.fsencode(output_dir), ctypes.byref(p)))


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
    weight_type: str
    quant_bits: int
    quant_group_size: int

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

    Create with ``Model(path, backend="cpu", threads=None)`` or
    :meth:`Model.load`; release with :meth:`close` or a ``with`` block
    (closing twice is fine). Do not close a model another thread is still
    using.

    Besides the low-level calls (:meth:`encode_images` on preprocessed
    pixels, :meth:`session`), a model offers the high-level API:
    :meth:`logits`, :meth:`encode_images` on images, :meth:`generate`,
    :meth:`generate_tokens`, :meth:`tokenize`, :meth:`detokenize`,
    :meth:`caption` and :meth:`vqa`. Images may be file paths, encoded
    bytes, numpy uint8 arrays HxWx3 (or HxWx4, HxW), PIL images,
    preprocessed float arrays [3, S, S], visual-token arrays
    [num_latents, visual_dim] or :class:`Media` items."""

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        backend: Union[Backend, int, str] = "cpu",
        threads: Optional[int] = None,
        *,
        device_index: int = -1,
    ):
        """Loads the model directory `path`. `backend` is "cpu" or "opencl";
        `threads` the CPU threads (None or 0: one per core);
        `device_index` an index from :func:`devices` (-1 = the backend's
        default)."""
        self._handle: Optional[_lib.flamingo_model_p] = None
        n_threads = 0 if threads is None else threads
        if isinstance(n_threads, bool) or not isinstance(n_threads, int):
            raise ValueError(f"threads must be an int or None, not {threads!r}")
        if isinstance(device_index, bool) or not isinstance(device_index, int):
            raise ValueError(f"device_index must be an int, not {device_index!r}")
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
        self._handle = handle
        self._free = lib.flamingo_model_free  # kept for __del__ at shutdown
        self._info: Optional[ModelInfo] = None
        self.path = os.fsdecode(fspath)

    @classmethod
    def load(
        cls,
        path: Union[str, "os.PathLike[str]"],
        backend: Union[Backend, int, str] = "cpu",
        device_index: int = -1,
        n_threads: int = 0,
    ) -> "Model":
        """Loads the model directory `path` (the same as the constructor).
        `backend` is "cpu" or "opencl"; `device_index` an index from
        :func:`devices` (-1 = the backend's default); `n_threads` the CPU
        threads (0 = one per core)."""
        return cls(path, backend, n_threads, device_index=device_index)

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

    def encode_images(self, images: Any, n_images: Optional[int] = None) -> Any:
        """Encodes images into visual tokens (vision encoder + Perceiver
        Resampler; flamingo_model_encode_images). Thread-safe. Two forms:

        * ``encode_images(images)`` with a list of images (or one image:
          a path, encoded bytes, a numpy uint8 array, a PIL image, a
          :class:`Media`; see :class:`Model`) returns a numpy float32 array
          [T, num_latents, visual_dim]. Needs numpy.
        * ``encode_images(pixels, n_images=None)``, the low-level form:
          `pixels` holds `n_images` preprocessed images as float32, planar
          [n_images][3][image_size][image_size] with the CLIP mean/std
          already applied (any float buffer or flat sequence of numbers;
          `n_images` None infers it from the length). Returns array('f') of
          n_images * num_latents * visual_dim floats, which
          :meth:`Session.set_media` accepts."""
        if n_images is None and _is_image_list(images):
            np = _numpy()
            items = [images] if _is_single_image(images) else list(images)
            info = self.info
            visual = self._visual_tokens(items)
            return np.frombuffer(visual, dtype=np.float32).reshape(len(items), info.num_latents, info.visual_dim)
        return self._encode_pixels(images, n_images)

    def _encode_pixels(self, pixels: Any, n_images: Optional[int] = None) -> array:
        info = self.info
        buf, n = _floats(pixels, "pixels")
        n_images = _count(n, 3 * info.image_size * info.image_size, n_images, "pixels", "image")
        count = n_images * info.num_latents * info.visual_dim
        out, ptr = _float_out(count)
        _check(_lib.lib().flamingo_model_encode_images(self.handle, buf, n_images, ptr, count))
        return out

    def preprocess_image(self, image: Any) -> array:
        """Decodes and preprocesses one image (a path, encoded bytes, an RGB
        or RGBA uint8 array, a PIL image, or a :class:`Media` of kind FILE,
        ENCODED or RGB) exactly as the reference's CLIP preprocessing
        (flamingo_model_preprocess_image). Returns array('f') of
        3 * image_size * image_size floats, planar, normalised: the input of
        the low-level :meth:`encode_images` and :meth:`Session.set_images`.
        Thread-safe."""
        info = self.info
        item = Media.of(image)
        count = 3 * info.image_size * info.image_size
        out, ptr = _float_out(count)
        with item._c() as c:
            _check(_lib.lib().flamingo_model_preprocess_image(self.handle, ctypes.byref(c), ptr, count))
        return out

    def _visual_tokens(self, images: List[Any]) -> array:
        """The visual tokens [T][num_latents][visual_dim] of a list of images
        of any accepted kind, as array('f'): each image is decoded and
        preprocessed (FILE, ENCODED, RGB), encoded (those and PIXELS) or
        used as given (VISUAL_TOKENS) - what set_prompt does."""
        info = self.info
        per = info.num_latents * info.visual_dim
        out = array("f")
        for image in images:
            item = Media.of(image)
            if item.kind == Media.VISUAL_TOKENS:
                buf, n = _floats(item.data, "visual tokens")
                if n != per:
                    raise ValueError(f"visual tokens hold {n} floats; one image needs {per}")
                out.frombytes(bytes(buf))
                continue
            pixels = item.data if item.kind == Media.PIXELS else self.preprocess_image(item)
            out.extend(self._encode_pixels(pixels, 1))
        return out

    # -- text --------------------------------------------------------------

    def tokenize(self, text: Union[str, bytes], add_special: bool = True) -> List[int]:
        """Token ids of `text` (a str, or bytes of UTF-8) with the model's
        tokenizer.json, as Hugging Face tokenizers (flamingo_tokenize): special
        tokens such as <image> and <|endofchunk|> in the text become their
        ids; `add_special` adds BOS etc. as the tokenizer's post-processor
        does (Hugging Face's add_special_tokens, default True). Invalid UTF-8
        raises InvalidArgumentError; a model without a tokenizer
        UnsupportedError. Thread-safe."""
        raw = _text_bytes(text)
        flags = _lib.FLAMINGO_TOKENIZE_ADD_SPECIAL if add_special else 0
        lib = _lib.lib()
        capacity = len(raw) + 8
        while True:
            out = (ctypes.c_int32 * capacity)()
            count = ctypes.c_size_t(0)
            _check(lib.flamingo_tokenize(self.handle, raw, len(raw), flags, out, capacity, ctypes.byref(count)))
            if count.value <= capacity:
                return list(out[:count.value])
            capacity = count.value  # the snprintf rule: call again with the full size

    def detokenize(self, ids: Any, skip_special: bool = False) -> str:
        """The text of token ids (flamingo_detokenize), as Hugging Face's
        decode; `skip_special` leaves out special tokens (<image>,
        <|endofchunk|>, BOS, ...). An id outside the vocabulary raises
        InvalidArgumentError. Thread-safe."""
        return _str(self._detokenize_bytes(ids, skip_special))

    def _detokenize_bytes(self, ids: Any, skip_special: bool) -> bytes:
        buf, n = _int32s(ids, "ids")
        flags = _lib.FLAMINGO_DETOKENIZE_SKIP_SPECIAL if skip_special else 0
        lib = _lib.lib()
        capacity = 16 * n + 16
        while True:
            out = ctypes.create_string_buffer(capacity)
            length = ctypes.c_size_t(0)
            _check(lib.flamingo_detokenize(self.handle, buf if n else None, n, flags, out, capacity,
                                           ctypes.byref(length)))
            if length.value < capacity:
                return out.raw[:length.value]
            capacity = length.value + 1  # room for the NUL

    def detokenizer(self, skip_special: bool = False) -> "Detokenizer":
        """A new streaming :class:`Detokenizer` for this model."""
        return Detokenizer(self, skip_special)

    # -- high-level API ----------------------------------------------------

    def logits(self, ids: Any, images: Any = ()) -> Any:
        """The logits of every position of the token sequence `ids` (ints, an
        int32 buffer, or a str, tokenized with :meth:`tokenize`) attending to
        `images` (the k-th <image> token refers to images[k]): a numpy
        float32 array [len(ids), vocab_size]. Needs numpy."""
        np = _numpy()
        if isinstance(ids, (str, bytes)):
            ids = self.tokenize(ids)
        buf, n = _int32s(ids, "ids")
        images = _image_list(images)
        visual = self._visual_tokens(images) if images else None
        with self.session() as s:
            if visual is not None:
                s.set_media(visual, len(images))
            out = s.eval(buf, all_logits=True)
        return np.frombuffer(out, dtype=np.float32).reshape(n, self.info.vocab_size)

    def generate_tokens(
        self,
        prompt: Union[str, bytes],
        images: Any = (),
        max_new_tokens: int = 20,
        *,
        num_beams: Optional[int] = None,
        length_penalty: Optional[float] = None,
        stream: Optional[TokenCallback] = None,
        **options: Any,
    ) -> List[int]:
        """Evaluates `prompt` (one <image> marker per image) with `images` in
        a new session and returns the generated token ids. Defaults: greedy
        (num_beams 1; length_penalty 1 when beams are asked for), at most 20
        new tokens, stopping at <|endofchunk|> and EOS (included).
        :meth:`caption` and :meth:`vqa` use OpenFlamingo's evaluation
        settings instead (3 beams, length_penalty 0), under which an
        instruct-tuned model's EOS can win at the first step. `options` are those of
        :meth:`Session.generate` (min_new_tokens, do_sample, temperature,
        top_k, top_p, early_stopping, no_repeat_ngram_size,
        repetition_penalty, stop_at_endofchunk, stop_at_eos, seed);
        ``stream(token)`` sees every new token (beam search: the final ones,
        at the end) and may return a true value to stop."""
        tokens, _ = self._generate(prompt, images, max_new_tokens, num_beams, length_penalty, stream, options)
        return tokens

    def generate(
        self,
        prompt: Union[str, bytes],
        images: Any = (),
        max_new_tokens: int = 20,
        *,
        num_beams: Optional[int] = None,
        length_penalty: Optional[float] = None,
        stream: Optional[Callable[[str], Any]] = None,
        skip_special: bool = True,
        **options: Any,
    ) -> str:
        """As :meth:`generate_tokens`, returning the text of the new tokens
        (special tokens such as <|endofchunk|> left out unless
        `skip_special` is False). ``stream(text)`` receives the text as it
        is completed, through the streaming :class:`Detokenizer` (beam
        search: at the end); the result is the concatenation of what it
        received."""
        with self.detokenizer(skip_special) as detok:
            pieces: List[str] = []

            def on_token(token: int) -> Any:
                piece = detok.push(token)
                if piece:
                    pieces.append(piece)
                    if stream is not None:
                        return stream(piece)  # a true value stops generation
                return None

            self._generate(prompt, images, max_new_tokens, num_beams, length_penalty, on_token, options)
            tail = detok.finish()
            if tail:
                pieces.append(tail)
                if stream is not None:
                    stream(tail)
        return "".join(pieces)

    def stream(
        self,
        prompt: Union[str, bytes],
        images: Any = (),
        max_new_tokens: int = 20,
        **options: Any,
    ) -> Iterator[str]:
        """Iterates over the generated text as it is produced (greedy by
        default as :meth:`generate`; beam search only knows its tokens at the
        end). Takes
        the options of :meth:`generate`. Generation runs on a worker thread;
        leaving the loop early (break, close) stops it after the current
        token."""
        pieces: "queue.Queue[Any]" = queue.Queue()
        stop = threading.Event()
        done = object()

        def on_piece(piece: str) -> Any:
            pieces.put(piece)
            return stop.is_set()

        def work() -> None:
            try:
                self.generate(prompt, images, max_new_tokens, stream=on_piece, **options)
            except BaseException as e:  # handed to the consumer
                pieces.put(e)
            finally:
                pieces.put(done)

        worker = threading.Thread(target=work, name="flamingo-stream", daemon=True)
        worker.start()
        try:
            while True:
                item = pieces.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            worker.join()

    def _generate(self, prompt, images, max_new_tokens, num_beams, length_penalty, callback, options):
        with self.session() as s:
            s.set_prompt(prompt, _image_list(images), logits=False)
            return s.generate(max_new_tokens, num_beams=num_beams, length_penalty=length_penalty,
                              callback=callback, **options)

    def caption(
        self,
        image: Any,
        shots: Iterable[Tuple[Any, str]] = (),
        max_new_tokens: int = 20,
        *,
        num_beams: int = 3,
        length_penalty: float = 0.0,
        stream: Optional[Callable[[str], Any]] = None,
        **options: Any,
    ) -> str:
        """A caption of `image` with OpenFlamingo's captioning prompt and
        post-processing, optionally few-shot: `shots` is a sequence of
        (image, caption) pairs (:func:`caption_prompt`,
        :func:`postprocess_caption`). Defaults as OpenFlamingo's evaluation:
        3 beams, length_penalty 0, at most 20 new tokens. ``stream`` sees the
        raw generated text."""
        shots = list(shots)
        prompt = caption_prompt([c for _, c in shots])
        images = [img for img, _ in shots] + [image]
        text = self.generate(prompt, images, max_new_tokens, num_beams=num_beams, length_penalty=length_penalty,
                             stream=stream, **options)
        return postprocess_caption(text)

    def vqa(
        self,
        image: Any,
        question: str,
        shots: Iterable[Tuple[Any, str, str]] = (),
        max_new_tokens: int = 5,
        *,
        num_beams: int = 3,
        length_penalty: float = 0.0,
        stream: Optional[Callable[[str], Any]] = None,
        **options: Any,
    ) -> str:
        """A short answer to `question` about `image` with OpenFlamingo's VQA
        prompt and post-processing, optionally few-shot: `shots` is a
        sequence of (image, question, answer) triples (:func:`vqa_prompt`,
        :func:`postprocess_vqa`). Defaults as OpenFlamingo's evaluation:
        3 beams, length_penalty 0, at most 5 new tokens."""
        shots = list(shots)
        prompt = vqa_prompt(question, [(q, a) for _, q, a in shots])
        images = [img for img, _, _ in shots] + [image]
        text = self.generate(prompt, images, max_new_tokens, num_beams=num_beams, length_penalty=length_penalty,
                             stream=stream, **options)
        return postprocess_vqa(text)

    def session(self, n_ctx: int = 0) -> "Session":
        """A new, empty :class:`Session` on this model holding at most `n_ctx`
        tokens (0 = the model's max_seq_len). The session keeps the weights
        alive: it may outlive this Model object's :meth:`close`."""
        return Session(self, n_ctx)

    def close(self) -> None:
        """Releases the model; a second call does nothing."""
        handle, self._handle = getattr(self, "_handle", None), None
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
        p = _generate_params(max_new_tokens, min_new_tokens=min_new_tokens, do_sample=do_sample,
                             temperature=temperature, top_k=top_k, top_p=top_p, num_beams=num_beams,
                             length_penalty=length_penalty, early_stopping=early_stopping,
                             no_repeat_ngram_size=no_repeat_ngram_size, repetition_penalty=repetition_penalty,
                             stop_at_endofchunk=stop_at_endofchunk, stop_at_eos=stop_at_eos, seed=seed)

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

    def set_prompt(self, prompt: Union[str, bytes], images: Any = (), *, logits: bool = True) -> Optional[array]:
        """Replaces the sequence with `prompt` (text with one <image> marker
        per image, e.g. "<image>Output:a cat<|endofchunk|>\\n<image>Output:")
        and its `images`, in order, and evaluates it
        (flamingo_session_set_prompt). The prompt is tokenized as
        :meth:`Model.tokenize` with special tokens added (BOS etc.). Images
        are any of the kinds :class:`Model` lists. Returns the last
        position's logits as array('f') (``logits=False``: None).
        :meth:`generate` then continues the prompt. On error the session is
        unchanged: InvalidArgumentError (marker count different from the
        number of images, bad sizes, a prompt longer than the context),
        IoError (unreadable file), InvalidFormatError (undecodable image),
        UnsupportedError (image too large, no tokenizer)."""
        raw = _text_bytes(prompt)
        if b"\0" in raw:
            raise ValueError("the prompt contains a NUL byte")
        items = [Media.of(x) for x in _image_list(images)]
        count = self.info.vocab_size if logits else 0
        out, ptr = _float_out(count) if logits else (None, None)
        with _media_array(items) as (arr, n):
            with self._use() as h:
                _check(_lib.lib().flamingo_session_set_prompt(h, raw, arr, n, ptr, count))
        return out


def _generate_params(
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
) -> "_lib.flamingo_generate_params":
    """flamingo_generate_params: the library's defaults, with every option
    that is not None set."""
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
    return p


def batch_generate(
    sessions: Iterable[Session], max_new_tokens: int = 20, **options: Any
) -> List[Tuple[List[int], Union[StopReason, int]]]:
    """Generates continuations of several evaluated sessions together
    (flamingo_batch_generate): each step evaluates the next token of every
    unfinished session in one batched forward pass. The sessions must be
    distinct and belong to the same model; their prompts may differ in
    length. `options` are those of :meth:`Session.generate` without the
    callback (with do_sample, session i uses seed + i). Returns one
    ``(tokens, reason)`` per session, in order; on error every session is
    unchanged."""
    sessions = list(sessions)
    if not sessions:
        raise ValueError("batch_generate needs at least one session")
    for s in sessions:
        if not isinstance(s, Session):
            raise TypeError(f"batch_generate takes Sessions, not {type(s).__name__}")
    if len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("a session appears twice in the batch")
    if "callback" in options:
        raise TypeError("batch_generate takes no callback (the library does not call it)")
    p = _generate_params(max_new_tokens, **options)
    n = len(sessions)
    capacity = max(p.max_new_tokens, 1)
    out = (ctypes.c_int32 * (n * capacity))()
    counts = (ctypes.c_size_t * n)()
    reasons = (_lib.flamingo_stop_reason * n)(*([-1] * n))
    # Lock in a fixed order (by id) so that concurrent batches cannot deadlock.
    uses = [s._use() for s in sorted(sessions, key=id)]
    handles: Dict[int, Any] = {}
    entered: List[Session._Use] = []
    try:
        for u in uses:
            handles[id(u.s)] = u.__enter__()
            entered.append(u)
        arr = (_lib.flamingo_session_p * n)(*[handles[id(s)] for s in sessions])
        status = _lib.lib().flamingo_batch_generate(arr, n, ctypes.byref(p), out, capacity, counts, reasons)
        _check(status)
    finally:
        for u in reversed(entered):
            u.__exit__(None, None, None)
    return [(list(out[i * capacity:i * capacity + counts[i]]), _enum_or_int(StopReason, reasons[i]))
            for i in range(n)]


# --------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------


def _numpy():
    try:
        import numpy
    except ImportError:  # pragma: no cover - numpy is a test dependency
        raise ImportError("this function returns numpy arrays: install numpy") from None
    return numpy


def _is_numpy_array(x: Any) -> bool:
    t = type(x)
    return t.__module__ == "numpy" and t.__name__ == "ndarray"


def _is_pil_image(x: Any) -> bool:
    return any(c.__module__.startswith("PIL.") and c.__name__ == "Image" for c in type(x).__mro__)


def _is_single_image(x: Any) -> bool:
    """One image given where a list of images is expected."""
    if isinstance(x, (str, bytes, bytearray, os.PathLike, Media)) or _is_pil_image(x):
        return True
    return _is_numpy_array(x) and x.dtype.kind == "u"


def _is_image_list(x: Any) -> bool:
    """True for one image or a non-empty list/tuple of images (not of numbers):
    the high-level forms of Model.encode_images."""
    if _is_single_image(x):
        return True
    if isinstance(x, (list, tuple)) and x:
        first = x[0]
        return not isinstance(first, (int, float)) and not (_is_numpy_array(first) and first.ndim == 0)
    return False


def _image_list(images: Any) -> List[Any]:
    if images is None:
        return []
    if _is_single_image(images):
        return [images]
    return list(images)


def _text_bytes(text: Union[str, bytes, bytearray, memoryview]) -> bytes:
    if isinstance(text, str):
        return text.encode("utf-8", "surrogateescape")
    if isinstance(text, (bytes, bytearray, memoryview)):
        return bytes(text)
    raise TypeError(f"text must be str or bytes, not {type(text).__name__}")


def _bytes_view(data: Any, what: str) -> Tuple[Any, int]:
    """A ctypes char array over the bytes of a buffer (without a copy when it
    is C-contiguous and writable)."""
    if isinstance(data, bytes):
        return ctypes.c_char_p(data), len(data)  # points into the bytes object
    try:
        mv = memoryview(data)
    except TypeError:
        raise TypeError(f"{what} must be a bytes-like object, not {type(data).__name__}") from None
    if not mv.c_contiguous:
        mv = memoryview(mv.tobytes())
    raw = mv.cast("B") if mv.ndim != 1 or mv.format != "B" else mv
    n = raw.nbytes
    if n == 0:
        return ctypes.c_char_p(b""), 0
    if raw.readonly:
        return (ctypes.c_char * n).from_buffer_copy(raw), n
    return (ctypes.c_char * n).from_buffer(raw), n


class Media:
    """One image of a prompt (flamingo_media), of one of five kinds:

    * ``Media.file(path)``: a JPEG or PNG file;
    * ``Media.encoded(data)``: a JPEG or PNG in memory (bytes);
    * ``Media.rgb(data, width, height, channels=3)``: 8-bit RGB (3) or RGBA
      (4) pixels, rows top to bottom (bytes, or a numpy uint8 array);
    * ``Media.pixels(floats)``: a preprocessed image [3][S][S] (as from
      :meth:`Model.preprocess_image`);
    * ``Media.visual_tokens(floats)``: its visual tokens
      [num_latents][visual_dim] (as from :meth:`Model.encode_images`);
    * ``Media.frames(images)``: a video, its frames in order (each any of
      the image kinds above but visual tokens; a numpy float array
      [F, 3, S, S] gives F preprocessed frames);
    * ``Media.frame_dir(path)``: a video, the .jpg/.jpeg/.png files of a
      directory in file-name order.

    Images are decoded (EXIF orientation applied, grayscale/CMYK/alpha
    converted as Pillow does), resized and normalised exactly as the
    reference's CLIP preprocessing. :meth:`Media.of` converts the objects
    the high-level API accepts."""

    FILE = _lib.FLAMINGO_MEDIA_FILE
    ENCODED = _lib.FLAMINGO_MEDIA_ENCODED
    RGB = _lib.FLAMINGO_MEDIA_RGB
    PIXELS = _lib.FLAMINGO_MEDIA_PIXELS
    VISUAL_TOKENS = _lib.FLAMINGO_MEDIA_VISUAL_TOKENS
    FRAMES = _lib.FLAMINGO_MEDIA_FRAMES
    FRAME_DIR = _lib.FLAMINGO_MEDIA_FRAME_DIR

    __slots__ = ("kind", "path", "data", "width", "height", "channels")

    def __init__(self, kind: int, path: Any = None, data: Any = None, width: int = 0, height: int = 0,
                 channels: int = 0):
        self.kind, self.path, self.data = int(kind), path, data
        self.width, self.height, self.channels = width, height, channels

    def __repr__(self) -> str:
        names = {0: "file", 1: "encoded", 2: "rgb", 3: "pixels", 4: "visual_tokens", 5: "frames", 6: "frame_dir"}
        detail = repr(self.path) if self.kind in (Media.FILE, Media.FRAME_DIR) else \
            f"{len(self.data)} frames" if self.kind == Media.FRAMES else f"{self.width}x{self.height}x{self.channels}" \
            if self.kind == Media.RGB else f"{type(self.data).__name__}"
        return f"<flamingo.Media {names.get(self.kind, self.kind)} {detail}>"

    @classmethod
    def file(cls, path: Union[str, "os.PathLike[str]"]) -> "Media":
        return cls(cls.FILE, path=os.fspath(path))

    @classmethod
    def encoded(cls, data: Any) -> "Media":
        return cls(cls.ENCODED, data=data)

    @classmethod
    def rgb(cls, data: Any, width: int, height: int, channels: int = 3) -> "Media":
        return cls(cls.RGB, data=data, width=width, height=height, channels=channels)

    @classmethod
    def pixels(cls, data: Any) -> "Media":
        return cls(cls.PIXELS, data=data)

    @classmethod
    def visual_tokens(cls, data: Any) -> "Media":
        return cls(cls.VISUAL_TOKENS, data=data)

    @classmethod
    def frames(cls, frames: Any) -> "Media":
        """A video: `frames` is a sequence of images (anything :meth:`of`
        accepts except visual tokens) or a float array [F, 3, S, S]."""
        items = [cls.of(f) for f in frames]
        if not items:
            raise ValueError("a video needs at least one frame")
        if any(m.kind in (cls.FRAMES, cls.FRAME_DIR) for m in items):
            raise ValueError("a video frame cannot itself be a video")
        return cls(cls.FRAMES, data=items)

    @classmethod
    def frame_dir(cls, path: Union[str, "os.PathLike[str]"]) -> "Media":
        return cls(cls.FRAME_DIR, path=os.fspath(path))

    @classmethod
    def of(cls, image: Any) -> "Media":
        """Converts an image given to the high-level API: a Media (as is), a
        str or path (FILE), bytes / bytearray (ENCODED), a numpy uint8 array
        HxWx3, HxWx4 or HxW (RGB; grayscale replicated), a PIL image (RGB,
        RGBA as pixels; 1, L, LA, P, I;16 as a lossless PNG, converted as
        Pillow does; other modes converted to RGB first), a numpy
        float array [3, S, S] (PIXELS) or [num_latents, visual_dim]
        (VISUAL_TOKENS)."""
        if isinstance(image, Media):
            return image
        if isinstance(image, (str, os.PathLike)):
            return cls.file(image)
        if isinstance(image, (bytes, bytearray)):
            return cls.encoded(image)
        if _is_numpy_array(image):
            return cls._of_numpy(image)
        if _is_pil_image(image):
            return cls._of_pil(image)
        raise TypeError(
            f"cannot use a {type(image).__name__} as an image (use a path, encoded bytes, a numpy array, "
            "a PIL image or flamingo.Media)"
        )

    @classmethod
    def _of_numpy(cls, a: Any) -> "Media":
        np = _numpy()
        if a.dtype == np.uint8:
            if a.ndim == 2:
                a = np.repeat(a[:, :, None], 3, axis=2)
            if a.ndim != 3 or a.shape[2] not in (3, 4):
                raise ValueError(f"a uint8 image must be HxWx3, HxWx4 or HxW, not {a.shape}")
            a = np.ascontiguousarray(a)
            return cls.rgb(a, width=a.shape[1], height=a.shape[0], channels=a.shape[2])
        if a.dtype.kind == "f":
            if a.ndim == 3 and a.shape[0] == 3:
                return cls.pixels(a)
            if a.ndim == 2:
                return cls.visual_tokens(a)
            if a.ndim == 4 and a.shape[1] == 3:
                return cls.frames(list(a))
            raise ValueError(
                f"a float array must be a preprocessed image [3, S, S], video frames [F, 3, S, S] or visual "
                f"tokens [num_latents, visual_dim], "
                f"not {a.shape}"
            )
        raise TypeError(f"cannot use a numpy array of {a.dtype} as an image (uint8 pixels or float32)")

    @classmethod
    def _of_pil(cls, img: Any) -> "Media":
        mode = img.mode
        if mode in ("RGB", "RGBA"):
            channels = len(mode)
            return cls.rgb(img.tobytes(), width=img.size[0], height=img.size[1], channels=channels)
        if mode in ("1", "L", "LA", "P", "I;16"):
            # Lossless PNG: the library then converts the mode as Pillow does.
            import io

            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return cls.encoded(buf.getvalue())
        # Other modes (CMYK, YCbCr, I, F, ...) are converted to RGB first; the
        # reference resizes before converting, so results may differ slightly.
        return cls.rgb(img.convert("RGB").tobytes(), width=img.size[0], height=img.size[1], channels=3)

    def _c(self) -> "_MediaStruct":
        """A context holding the C struct and every buffer it points to."""
        return _MediaStruct(self)


class _MediaStruct:
    def __init__(self, m: Media):
        c = _lib.flamingo_media()
        c.struct_size = ctypes.sizeof(c)
        c.kind = m.kind
        keep: List[Any] = []
        if m.kind in (Media.FILE, Media.FRAME_DIR):
            raw = os.fsencode(m.path)
            if b"\0" in raw:
                raise ValueError("path contains a NUL byte")
            keep.append(raw)
            c.path = raw
        elif m.kind in (Media.ENCODED, Media.RGB):
            buf, n = _bytes_view(m.data, "image data")
            keep.append(buf)
            c.data = ctypes.cast(buf, ctypes.c_void_p)
            c.size = n
            c.width, c.height, c.channels = m.width, m.height, m.channels
        elif m.kind in (Media.PIXELS, Media.VISUAL_TOKENS):
            buf, n = _floats(m.data, "pixels" if m.kind == Media.PIXELS else "visual tokens")
            keep.append(buf)
            c.data = ctypes.cast(buf, ctypes.c_void_p) if n else None
            c.size = n
        elif m.kind == Media.FRAMES:
            frames = [_MediaStruct(f) for f in m.data]
            arr = (_lib.flamingo_media * len(frames))(*[f.c for f in frames])
            keep += [frames, arr]
            c.data = ctypes.cast(arr, ctypes.c_void_p)
            c.size = len(frames)
        else:  # an unknown kind: passed through for the library to reject
            c.path = None
        self.c, self._keep = c, keep

    def __enter__(self) -> "_lib.flamingo_media":
        return self.c

    def __exit__(self, *exc) -> None:
        self._keep.clear()


class _media_array:
    """Context: (a C array of flamingo_media or None, its length)."""

    def __init__(self, items: List[Media]):
        self.structs = [_MediaStruct(m) for m in items]

    def __enter__(self) -> Tuple[Any, int]:
        n = len(self.structs)
        if n == 0:
            return None, 0
        arr = (_lib.flamingo_media * n)(*[s.c for s in self.structs])
        return arr, n

    def __exit__(self, *exc) -> None:
        self.structs.clear()


# --------------------------------------------------------------------------
# Streaming detokenizer
# --------------------------------------------------------------------------


class Detokenizer:
    """Incremental decoding for streaming (flamingo_detokenizer): push tokens
    one at a time and receive only newly completed text, never half a UTF-8
    character. :meth:`finish` returns what the last tokens still hold back
    (an incomplete UTF-8 sequence at the end, which a full decode shows as
    U+FFFD), so that the concatenation of every push and finish() is the
    full decode of the tokens (:meth:`Model.detokenize`). One detokenizer
    per stream; not thread-safe. Create with :meth:`Model.detokenizer`."""

    _START = 64  # enough for any single token of the released tokenizers

    def __init__(self, model: Model, skip_special: bool = False):
        flags = _lib.FLAMINGO_DETOKENIZE_SKIP_SPECIAL if skip_special else 0
        handle = _lib.flamingo_detokenizer_p()
        _check(_lib.lib().flamingo_detokenizer_init(model.handle, flags, ctypes.byref(handle)))
        self._handle: Optional[_lib.flamingo_detokenizer_p] = handle
        self._free = _lib.lib().flamingo_detokenizer_free
        self._model = model
        self.skip_special = bool(skip_special)
        self.tokens: List[int] = []
        self._emitted: List[bytes] = []
        self._buf = ctypes.create_string_buffer(self._START)
        self._finished = False

    @property
    def closed(self) -> bool:
        return self._handle is None

    def _live(self) -> "_lib.flamingo_detokenizer_p":
        if self._handle is None:
            raise ValueError("the detokenizer is closed")
        if self._finished:
            raise ValueError("the detokenizer is finished")
        return self._handle

    def push_bytes(self, token: int) -> bytes:
        """As :meth:`push`, returning the UTF-8 bytes."""
        h = self._live()
        if isinstance(token, bool) or not isinstance(token, int) or not -(2**31) <= token < 2**31:
            raise ValueError(f"token must be a 32-bit int, not {token!r}")
        piece = self._call(lambda buf, n: _lib.lib().flamingo_detokenizer_push(h, token, buf, len(buf), n))
        self.tokens.append(token)
        self._emitted.append(piece)
        return piece

    def _call(self, f: Callable[[Any, Any], int]) -> bytes:
        """Runs a push or flush into the output buffer, growing it on
        BUFFER_TOO_SMALL (which consumes nothing); returns the bytes."""
        n = ctypes.c_size_t(0)
        while True:
            st = f(self._buf, ctypes.byref(n))
            if st != Status.BUFFER_TOO_SMALL:
                break
            if len(self._buf) >= 1 << 24:
                raise _error(st)
            self._buf = ctypes.create_string_buffer(2 * len(self._buf))
        _check(st)
        return self._buf.raw[:n.value]

    def push(self, token: int) -> str:
        """Feeds one token and returns the text it completes (often "")."""
        return _str(self.push_bytes(token))

    def finish_bytes(self) -> bytes:
        """As :meth:`finish`, returning the UTF-8 bytes."""
        h = self._live()
        self._finished = True
        rest = self._call(lambda buf, n: _lib.lib().flamingo_detokenizer_flush(h, buf, len(buf), n))
        self._emitted.append(rest)
        return rest

    def finish(self) -> str:
        """Ends the stream and returns the text still held back (an
        incomplete UTF-8 sequence at the end decodes as U+FFFD, as in a full
        decode); afterwards :meth:`push` raises ValueError."""
        return _str(self.finish_bytes())

    @property
    def text(self) -> str:
        """Everything pushed so far returned."""
        return _str(b"".join(self._emitted))

    def close(self) -> None:
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None:
            self._free(handle)

    def __enter__(self) -> "Detokenizer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __reduce__(self):
        raise TypeError("flamingo.Detokenizer cannot be pickled")


# --------------------------------------------------------------------------
# OpenFlamingo prompts and post-processing
# --------------------------------------------------------------------------


def caption_prompt(captions: Iterable[str] = ()) -> str:
    """OpenFlamingo's captioning prompt: one ``<image>Output:{caption}<|endofchunk|>``
    per few-shot caption, then ``<image>Output:``, joined with "\\n"."""
    shots = [f"<image>Output:{c}<|endofchunk|>" for c in captions]
    return "\n".join(shots + ["<image>Output:"])


def vqa_prompt(question: str, shots: Iterable[Tuple[str, str]] = ()) -> str:
    """OpenFlamingo's VQA prompt: one ``<image>Question:{q} Short answer:{a}<|endofchunk|>``
    per few-shot (question, answer), then ``<image>Question:{question} Short answer:``,
    joined with "\\n"."""
    parts = [f"<image>Question:{q} Short answer:{a}<|endofchunk|>" for q, a in shots]
    return "\n".join(parts + [f"<image>Question:{question} Short answer:"])


def postprocess_caption(text: str) -> str:
    """OpenFlamingo's caption post-processing: cut at the first "Output",
    remove '"', strip."""
    return text.split("Output", 1)[0].replace('"', "").strip()


def postprocess_vqa(text: str) -> str:
    """OpenFlamingo's VQA post-processing: cut at the first of "Question",
    "Answer" or "Short", then at the first ", ", strip."""
    import re

    answer = re.split("Question|Answer|Short", text, maxsplit=1)[0]
    return answer.split(", ", 1)[0].strip()
