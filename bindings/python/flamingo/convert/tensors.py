"""A lazily loaded tensor (dtype name + shape + a loader) and dtype conversions.

numpy has no bfloat16: BF16 data is carried as uint16 bit patterns and converted
explicitly (round to nearest even, as torch does)."""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np

from .errors import ConversionError

# safetensors dtype name -> numpy dtype of the carried array (BF16 as raw uint16)
NUMPY = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
FLOATS = ("F64", "F32", "F16", "BF16")
# what the model format may store
STORABLE = ("F32", "F16", "BF16")
ITEMSIZE = {k: v.itemsize for k, v in NUMPY.items()}


def contiguous(a: np.ndarray) -> np.ndarray:
    """C-contiguous, keeping 0-d arrays 0-d (np.ascontiguousarray makes them 1-d)."""
    return a if a.flags.c_contiguous else a.copy(order="C")


class Tensor:
    """dtype (safetensors name), shape, and a function returning the data as a
    C-contiguous numpy array of NUMPY[dtype] with that shape (native byte order).
    `origin` says where it comes from, for messages."""

    __slots__ = ("dtype", "shape", "_load", "origin")

    def __init__(self, dtype: str, shape: Tuple[int, ...], load: Callable[[], np.ndarray], origin: str = ""):
        if dtype not in NUMPY:
            raise ConversionError(f"{origin}: unsupported dtype {dtype}")
        self.dtype = dtype
        self.shape = tuple(int(s) for s in shape)
        self._load = load
        self.origin = origin

    @classmethod
    def from_array(cls, arr: np.ndarray, dtype: Optional[str] = None, origin: str = "") -> "Tensor":
        if dtype is None:
            for name, dt in NUMPY.items():
                if name != "BF16" and arr.dtype.newbyteorder("<") == dt:
                    dtype = name
                    break
            else:
                raise ConversionError(f"{origin}: unsupported numpy dtype {arr.dtype}")
        a = contiguous(arr)
        return cls(dtype, a.shape, lambda: a, origin)

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self) -> int:
        return self.numel * ITEMSIZE[self.dtype]

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOATS

    def numpy(self) -> np.ndarray:
        a = self._load()
        want = NUMPY[self.dtype]
        if a.dtype != want:
            if a.dtype.newbyteorder("=") == want.newbyteorder("="):
                a = a.astype(want)  # byte swap
            else:
                raise ConversionError(f"{self.origin}: data has dtype {a.dtype}, expected {want}")
        if tuple(a.shape) != self.shape:
            raise ConversionError(f"{self.origin}: data has shape {tuple(a.shape)}, expected {self.shape}")
        return contiguous(a)

    def float32(self) -> np.ndarray:
        return to_float32(self.numpy(), self.dtype)

    def __repr__(self) -> str:
        return f"Tensor({self.dtype}, {list(self.shape)}, {self.origin})"


def to_float32(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    if dtype in FLOATS:
        return a.astype(np.float32)
    raise ConversionError(f"not a floating dtype: {dtype}")


def float32_to_bf16(a: np.ndarray) -> np.ndarray:
    """Round to nearest even (torch's float -> bfloat16); NaN stays a quiet NaN."""
    a = contiguous(np.asarray(a, dtype=np.float32))
    bits = a.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16).astype(np.uint16) | 0x0040)
    return rounded


def cast(t: Tensor, dtype: str) -> Tensor:
    """`t` converted to a floating `dtype` (F32, F16, BF16); non-finite results of a
    narrowing conversion are an error."""
    if not t.is_float:
        raise ConversionError(f"{t.origin}: cannot convert {t.dtype} weights to {dtype}")
    if t.dtype == dtype:
        return t

    def load():
        src = t.numpy()
        if dtype == "F32":
            return to_float32(src, t.dtype)
        f = to_float32(src, t.dtype) if t.dtype != "F64" else src
        if dtype == "F16":
            with np.errstate(over="ignore"):
                out = f.astype(np.float16)
        else:
            out = float32_to_bf16(f.astype(np.float32))
        finite_src = np.isfinite(f)
        finite_out = np.isfinite(to_float32(out, dtype))
        if (finite_src & ~finite_out).any():
            raise ConversionError(f"{t.origin}: values overflow {dtype}")
        return out

    return Tensor(dtype, t.shape, load, t.origin)


def storable(t: Tensor) -> Tensor:
    """`t` as a dtype the model format stores (F64 -> F32; F32/F16/BF16 unchanged)."""
    if t.dtype in STORABLE:
        return t
    if t.dtype == "F64":
        return cast(t, "F32")
    raise ConversionError(f"{t.origin}: weights of dtype {t.dtype} cannot be stored (floating point only)")


def same_values(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape:
        return False
    if a.dtype == b.dtype:
        return bool(np.array_equal(a.numpy().view(np.uint8), b.numpy().view(np.uint8)))
    return bool(np.array_equal(a.float32(), b.float32()))
