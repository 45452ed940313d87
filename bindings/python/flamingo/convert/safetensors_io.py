"""safetensors without the safetensors package: 8-byte little-endian header length,
a JSON header {name: {dtype, shape, data_offsets}} (+ optional "__metadata__"),
then the data. Reading memory-maps the file; writing streams one tensor at a time."""

from __future__ import annotations

import json
import mmap
import os
import struct
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np

from .errors import ConversionError, CorruptFileError
from .tensors import ITEMSIZE, NUMPY, Tensor, contiguous

MAX_HEADER = 100 * 1024 * 1024


class _Mapped:
    """A read-only memory map of a whole file, opened once."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            self.size = os.fstat(f.fileno()).st_size
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if self.size else b""

    def array(self, dtype: np.dtype, offset: int, count: int) -> np.ndarray:
        return np.frombuffer(self.mm, dtype=dtype, count=count, offset=offset)


def read_header(path: Path) -> Tuple[dict, int, int]:
    """(header dict, data start, file size); raises CorruptFileError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CorruptFileError(f"{path}: not a safetensors file (shorter than 8 bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise CorruptFileError(f"{path}: not a safetensors file (header length {n} does not fit the file of {size} bytes)")
            raw = f.read(n)
    except OSError as e:
        raise ConversionError(f"{path}: {e.strerror or e}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"{path}: safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise CorruptFileError(f"{path}: safetensors header is not a JSON object")
    return header, 8 + n, size


def read(path: Path) -> Tuple[Dict[str, Tensor], Dict[str, str]]:
    """All tensors of a safetensors file (lazy, memory-mapped) and its metadata."""
    path = Path(path)
    header, start, size = read_header(path)
    meta = header.pop("__metadata__", None) or {}
    mapped: List[Optional[_Mapped]] = [None]

    def mm() -> _Mapped:
        if mapped[0] is None:
            mapped[0] = _Mapped(path)
        return mapped[0]

    out: Dict[str, Tensor] = {}
    spans = []
    for name, info in header.items():
        where = f"{path}: tensor {name}"
        try:
            dtype = info["dtype"]
            shape = [int(s) for s in info["shape"]]
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise CorruptFileError(f"{where}: malformed header entry {info!r}") from None
        if dtype not in NUMPY:
            raise CorruptFileError(f"{where}: unknown dtype {dtype!r}")
        if any(s < 0 for s in shape):
            raise CorruptFileError(f"{where}: negative shape {shape}")
        count = 1
        for s in shape:
            count *= s
        if end - begin != count * ITEMSIZE[dtype] or begin < 0 or start + end > size:
            raise CorruptFileError(
                f"{where}: byte range [{begin}, {end}) does not hold {dtype}{shape} inside the data section of {size - start} bytes"
            )
        spans.append((begin, end, name))

        def load(dtype=dtype, shape=tuple(shape), begin=begin, count=count):
            return mm().array(NUMPY[dtype], start + begin, count).reshape(shape)

        out[name] = Tensor(dtype, tuple(shape), load, where)
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise CorruptFileError(f"{path}: tensors {n0} and {n1} overlap")
    return out, {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def is_safetensors(path: Path) -> bool:
    try:
        read_header(path)
        return True
    except ConversionError:
        return False


def write(path: Path, tensors: Iterable[Tuple[str, Tensor]], metadata: Optional[Dict[str, str]] = None) -> int:
    """Writes `tensors` (name, Tensor) in the given order; returns the file size.
    Each tensor is loaded, written and released in turn."""
    items = list(tensors)
    header: Dict[str, dict] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, t in items:
        if name in header:
            raise ConversionError(f"duplicate tensor name {name}")
        header[name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode("utf-8")
    raw += b" " * ((-len(raw)) % 8)
    tmp = Path(str(path) + ".partial")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name, t in items:
            a = t.numpy()
            want = NUMPY[t.dtype]
            if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
                a = a.astype(want)
            a = contiguous(a)
            if a.nbytes != t.nbytes:
                raise ConversionError(f"{t.origin}: {a.nbytes} bytes of data for {t.dtype}{list(t.shape)}")
            f.write(memoryview(a.reshape(-1)).cast("B"))
            del a
    os.replace(tmp, path)
    return 8 + len(raw) + offset
