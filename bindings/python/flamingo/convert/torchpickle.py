"""Reading PyTorch files without torch.

Two kinds of zip archive (torch >= 1.6 ``torch.save`` and TorchScript ``torch.jit.save``)
share one layout: ``<root>/data.pkl`` is a pickle whose tensors refer, through
persistent ids ``('storage', <torch.XStorage>, key, location, numel)``, to the raw
little-endian storages ``<root>/data/<key>`` (stored uncompressed; memory-mapped here).

The unpickler is restricted like ``torch.load(weights_only=True)``: the only globals it
resolves are the tensor-rebuild functions, the storage dtype markers and
``collections.OrderedDict``; anything else (``os.system``, arbitrary classes, ...) is
refused before it is called. In a TorchScript archive the module objects
(``__torch__.*`` classes) become plain attribute records, from which the tensors are
collected by attribute path (what ``torch.jit.load(f).state_dict()`` returns).
"""

from __future__ import annotations

import collections
import io
import mmap
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .errors import ConversionError, CorruptFileError, UnsafeFileError
from .tensors import ITEMSIZE, NUMPY, Tensor, contiguous

STORAGE_DTYPES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _StorageType:
    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    def __init__(self, archive: "_Archive", key: str, dtype: str, numel: int):
        self.archive, self.key, self.dtype, self.numel = archive, key, dtype, numel

    def array(self) -> np.ndarray:
        return self.archive.storage_array(self.key, self.dtype, self.numel)


class ScriptObject:
    """A TorchScript object (module) restored as a record of its attributes."""

    def __init__(self, *args):
        self.attributes: Dict[str, Any] = {}
        self.type_name = type(self).__qualname__

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.attributes = dict(state)
        else:  # a class with __getstate__: keep whatever it produced
            self.attributes = {"__state__": state}

    def __repr__(self):
        return f"<{self.type_name} {sorted(self.attributes)}>"


def _script_class(module: str, name: str):
    cls = type(name, (ScriptObject,), {})
    cls.__qualname__ = f"{module}.{name}"
    return cls


def _identity_list(*args):
    return list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)


def _restore_type_tag(value, type_str=None):
    return value


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: "_Archive", script: bool):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.script = script

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild_tensor
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _rebuild_parameter
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("torch", "Size"):
            return tuple
        if self.script:
            if module.startswith("__torch__"):
                return _script_class(module, name)
            if module == "torch.jit._pickle" and name in (
                "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_genericlist"
            ):
                return _identity_list
            if module == "torch.jit._pickle" and name == "restore_type_tag":
                return _restore_type_tag
        raise UnsafeFileError(
            f"{self.archive.path}: refusing to load the global {module}.{name} (only tensor data is read; "
            f"the file is either not a plain state dict or not safe to load)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeFileError(f"{self.archive.path}: unexpected persistent id {pid!r}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise UnsafeFileError(f"{self.archive.path}: persistent id with storage type {stype!r}")
        if not isinstance(numel, int) or numel < 0:
            raise CorruptFileError(f"{self.archive.path}: storage {key!r} has invalid size {numel!r}")
        self.archive.check_storage(str(key), stype.dtype, numel)
        return _Storage(self.archive, str(key), stype.dtype, numel)

    def _rebuild_tensor(self, storage, storage_offset, size, stride, *rest):
        if not isinstance(storage, _Storage):
            raise CorruptFileError(f"{self.archive.path}: tensor without a storage")
        size = tuple(int(s) for s in size)
        stride = tuple(int(s) for s in stride)
        offset = int(storage_offset)
        if len(size) != len(stride) or any(s < 0 for s in size) or offset < 0:
            raise CorruptFileError(f"{self.archive.path}: invalid tensor geometry size={size} stride={stride}")
        numel = 1
        for s in size:
            numel *= s
        if numel:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if any(st < 0 for st in stride) or last >= storage.numel:
                raise CorruptFileError(
                    f"{self.archive.path}: tensor (offset {offset}, size {size}, stride {stride}) exceeds its storage of {storage.numel} elements"
                )

        def load(storage=storage, offset=offset, size=size, stride=stride, numel=numel):
            base = storage.array()
            if numel == 0:
                return np.zeros(size, dtype=base.dtype)
            contiguous = True
            expect = 1
            for s, st in reversed(list(zip(size, stride))):
                if s != 1 and st != expect:
                    contiguous = False
                expect *= s
            if contiguous:
                return base[offset:offset + numel].reshape(size)
            item = base.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(base[offset:], shape=size, strides=tuple(st * item for st in stride))
            return contiguous(view)

        return Tensor(storage.dtype, size, load, f"{self.archive.path}: storage {storage.key}")


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *rest):
    return data


class _Archive:
    """A torch zip archive, memory-mapped."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.zf = zipfile.ZipFile(self.path)
        except zipfile.BadZipFile:
            raise CorruptFileError(f"{self.path}: not a zip archive (truncated or not a PyTorch file)") from None
        except OSError as e:
            raise ConversionError(f"{self.path}: {e.strerror or e}") from None
        names = self.zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1] or [n for n in names if n == "data.pkl"]
        if len(pkl) != 1:
            raise CorruptFileError(f"{self.path}: a zip archive without exactly one <root>/data.pkl (not a PyTorch file)")
        self.root = pkl[0][: -len("data.pkl")]
        self.names = set(names)
        self.script = any(n.startswith(self.root + "code/") for n in names) or (self.root + "constants.pkl") in self.names
        order = self._read_small("byteorder")
        self.byteorder = (order or b"little").decode("ascii", "replace").strip()
        if self.byteorder not in ("little", "big"):
            raise CorruptFileError(f"{self.path}: unknown byteorder {self.byteorder!r}")
        self._mm = None
        self._fh = None

    def _read_small(self, name: str) -> Optional[bytes]:
        full = self.root + name
        if full not in self.names:
            return None
        return self.zf.read(full)

    def read_pickle(self) -> bytes:
        try:
            return self.zf.read(self.root + "data.pkl")
        except (zipfile.BadZipFile, OSError, EOFError) as e:
            raise CorruptFileError(f"{self.path}: cannot read data.pkl ({e})") from None

    def _mmap(self):
        if self._mm is None:
            self._fh = open(self.path, "rb")
            self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mm

    def check_storage(self, key: str, dtype: str, numel: int):
        name = f"{self.root}data/{key}"
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise CorruptFileError(f"{self.path}: storage {key} (entry {name}) is missing") from None
        if info.file_size < numel * ITEMSIZE[dtype]:
            raise CorruptFileError(
                f"{self.path}: storage {key} has {info.file_size} bytes, needs {numel * ITEMSIZE[dtype]} for {numel} x {dtype}")

    def storage_array(self, key: str, dtype: str, numel: int) -> np.ndarray:
        name = f"{self.root}data/{key}"
        try:
            info = self.zf.getinfo(name)
        except KeyError:
            raise CorruptFileError(f"{self.path}: storage {key} (entry {name}) is missing") from None
        nbytes = numel * ITEMSIZE[dtype]
        if info.file_size < nbytes:
            raise CorruptFileError(f"{self.path}: storage {key} has {info.file_size} bytes, needs {nbytes} for {numel} x {dtype}")
        npdt = NUMPY[dtype] if self.byteorder == "little" else NUMPY[dtype].newbyteorder(">")
        if info.compress_type == zipfile.ZIP_STORED:
            mm = self._mmap()
            hdr = mm[info.header_offset:info.header_offset + 30]
            if len(hdr) < 30 or hdr[:4] != b"PK\x03\x04":
                raise CorruptFileError(f"{self.path}: broken zip local header for {name}")
            n, m = struct.unpack("<HH", hdr[26:30])
            start = info.header_offset + 30 + n + m
            if start + nbytes > len(mm):
                raise CorruptFileError(f"{self.path}: storage {key} extends past the end of the file (truncated?)")
            a = np.frombuffer(mm, dtype=npdt, count=numel, offset=start)
        else:
            try:
                raw = self.zf.read(name)
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise CorruptFileError(f"{self.path}: cannot read storage {key} ({e})") from None
            a = np.frombuffer(raw, dtype=npdt, count=numel)
        if self.byteorder == "big":
            a = a.astype(NUMPY[dtype])
        return a


def _check_not_legacy(path: Path):
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] == b"\x80\x02" and len(head) >= 13:
        raise ConversionError(
            f"{path}: a legacy (pre-zip, torch < 1.6) torch.save file; re-save it with a current torch "
            f"(torch.save(torch.load(path), new_path)) or as .safetensors"
        )


def load(path: Path) -> Tuple[Any, bool]:
    """Unpickles data.pkl of a torch zip archive: (object, is_torchscript). Tensors are
    lazy `Tensor`s; TorchScript modules are `ScriptObject`s."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        _check_not_legacy(path)
        raise CorruptFileError(f"{path}: not a PyTorch zip archive or safetensors file (truncated or a different format)")
    archive = _Archive(path)
    data = archive.read_pickle()
    try:
        obj = _Unpickler(data, archive, archive.script).load()
    except ConversionError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise CorruptFileError(f"{path}: data.pkl cannot be read ({type(e).__name__}: {e})") from None
    return obj, archive.script


def script_tensors(obj: Any) -> Dict[str, Tensor]:
    """Every tensor reachable through a TorchScript object's attributes, by dotted path."""
    out: Dict[str, Tensor] = {}
    seen = set()

    def walk(o, prefix):
        if isinstance(o, Tensor):
            out.setdefault(prefix, o)
            return
        if isinstance(o, ScriptObject):
            if id(o) in seen:
                return
            seen.add(id(o))
            for k, v in o.attributes.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))

    walk(obj, "")
    return out


def tensor_dict(obj: Any, path: Path, what: str = "state dict") -> Dict[str, Tensor]:
    """A {name: Tensor} mapping from a loaded object (refuses anything else)."""
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a {what} (a dict of tensors), found {type(obj).__name__}")
    out: Dict[str, Tensor] = {}
    bad: List[str] = []
    for k, v in obj.items():
        if isinstance(v, Tensor):
            out[str(k)] = v
        else:
            bad.append(f"{k} ({type(v).__name__})")
    if bad:
        raise ConversionError(f"{path}: entries that are not tensors: {', '.join(bad[:20])}")
    return out
