"""Reading PyTorch files without torch.

Two kinds of zip archive (torch >= 1.6 ``torch.save`` and TorchScript ``torch.jit.save``)
share one layout: ``<root>/data.pkl`` is a pickle whose tensors refer, through
persistent ids ``('storage', <torch.XStorage>, key, location, numel)``, to the raw
little-endian storages ``<root>/data/<key>`` (stored uncompressed; memory-mapped here).

data.pkl is not read with Python's ``pickle`` module but with a small pickle machine of
its own (`_Unpickler`), restricted like ``torch.load(weights_only=True)``:

* the only globals it resolves are the tensor-rebuild functions, the storage dtype
  markers, ``torch.Size`` and ``collections.OrderedDict`` (and, in a TorchScript
  archive, the ``__torch__.*`` classes and ``torch.jit._pickle`` helpers); anything else
  (``os.system``, arbitrary classes, ...) is refused before it is called;
* ``BUILD`` (setting an object's state) applies to TorchScript objects and to the
  attributes (``_metadata``) of an ``OrderedDict`` only;
* opcodes torch never writes (protocol 5 out-of-band buffers, the copyreg extension
  registry, ``INST``/``OBJ``) are refused;
* a length is checked against the bytes that are left before anything is allocated,
  tuples nest at most `MAX_TUPLE_DEPTH` deep (hashing a deeper one overflows the C
  stack), and the elements that the allowed callables copy are budgeted, so a small
  file cannot make the reader allocate without bound.

Any malformed input ends in a `CorruptFileError` or `UnsafeFileError` (both
`ConversionError`s) that names the file and what is wrong. In a TorchScript archive the
module objects (``__torch__.*`` classes) become plain attribute records
(`ScriptObject`), from which the tensors are collected by attribute path (what
``torch.jit.load(f).state_dict()`` returns).
"""

from __future__ import annotations

import codecs
import collections
import mmap
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .errors import ConversionError, CorruptFileError, UnsafeFileError
from .tensors import ITEMSIZE, NUMPY, Tensor, contiguous

try:  # optional in CPython builds; zipfile raises it for a corrupt LZMA entry
    import lzma

    _LZMA_ERRORS: Tuple[type, ...] = (lzma.LZMAError,)
except ImportError:  # pragma: no cover
    _LZMA_ERRORS = ()

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

# What zipfile raises for a damaged archive or entry (bad headers, a corrupt deflate /
# bzip2 / lzma stream, an unsupported compression method, an encrypted entry, sizes that
# do not fit, names that are not UTF-8 although flagged so).
_ZIP_ERRORS: Tuple[type, ...] = (
    zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, OverflowError, struct.error,
    NotImplementedError, RuntimeError, zlib.error,
) + _LZMA_ERRORS

MAX_TUPLE_DEPTH = 100  # torch writes 2 or 3; CPython hashes tuples recursively, without a depth check
MAX_DIMS = 32  # numpy 1.x's limit; torch checkpoints have at most a handful
MAX_COMPRESSION_RATIO = 1100  # deflate's limit is about 1032:1; more is a decompression bomb
INT64 = 1 << 63  # torch's sizes, strides and offsets are int64 (and Python's arithmetic on huge ints is slow)


def _short(x: Any, limit: int = 120) -> str:
    """A bounded description of a value from the file, for messages: no recursion
    beyond a few levels, no huge strings, no arbitrary __repr__."""
    s = _describe(x, 2)
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _clip(s: str, limit: int = 100) -> str:
    """A name from the file, shortened for messages."""
    return s if len(s) <= limit else s[:limit] + f"...({len(s)} characters)"


def _describe(x: Any, depth: int) -> str:
    if x is None or isinstance(x, (bool, float)):
        return repr(x)
    if isinstance(x, int):
        return repr(x) if x.bit_length() <= 64 else f"<int of {x.bit_length()} bits>"
    if isinstance(x, (str, bytes, bytearray)):
        r = repr(x[:60])
        return r if len(x) <= 60 else r + f"...({len(x)} long)"
    if isinstance(x, (tuple, list)):
        o, c = ("(", ")") if isinstance(x, tuple) else ("[", "]")
        if depth <= 0:
            return f"{o}...{c}" if x else f"{o}{c}"
        items = [_describe(v, depth - 1) for v in x[:6]]
        if len(x) > 6:
            items.append(f"... {len(x)} items")
        return o + ", ".join(items) + ("," if isinstance(x, tuple) and len(x) == 1 else "") + c
    if isinstance(x, dict):
        if depth <= 0:
            return "{...}" if x else "{}"
        items = [f"{_describe(k, depth - 1)}: {_describe(v, depth - 1)}" for k, v in list(dict.items(x))[:6]]
        if len(x) > 6:
            items.append(f"... {len(x)} items")
        return "{" + ", ".join(items) + "}"
    if isinstance(x, (_StorageType, _Global, ScriptObject)):
        return f"<{x.name if not isinstance(x, ScriptObject) else x.type_name}>"
    return f"<{type(x).__name__}>"


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = f"torch.{name}"
        self.dtype = STORAGE_DTYPES[name]


class _Storage:
    __slots__ = ("archive", "key", "dtype", "numel")

    def __init__(self, archive: "_Archive", key: str, dtype: str, numel: int):
        self.archive, self.key, self.dtype, self.numel = archive, key, dtype, numel

    def array(self) -> np.ndarray:
        return self.archive.storage_array(self.key, self.dtype, self.numel)


class ScriptObject:
    """A TorchScript object (module) restored as a record of its attributes; `type_name`
    is its class (``__torch__.<module>.<Class>``)."""

    def __init__(self, type_name: str = "ScriptObject"):
        self.attributes: Dict[Any, Any] = {}
        self.type_name = type_name

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.attributes = dict(state)
        else:  # a class with __getstate__: keep whatever it produced
            self.attributes = {"__state__": state}

    def __repr__(self):
        names = [_short(k, 40) for k in list(self.attributes)[:20]]
        return f"<{self.type_name} [{', '.join(names)}{', ...' if len(self.attributes) > 20 else ''}]>"


class _Global:
    """A global that a pickle may name (what find_class resolves to): `call` for REDUCE,
    `new` for NEWOBJ (None where the global is not a class)."""

    __slots__ = ("name", "call", "new")

    def __init__(self, name: str, call: Optional[Callable], new: Optional[Callable] = None):
        self.name, self.call, self.new = name, call, new


def _as_list(*args):
    """torch.jit._pickle.build_*list: the list itself (torch's are identity functions)."""
    return args[0] if len(args) == 1 else list(args)


def _script_object_maker(type_name: str):
    def make(*args, **kwargs):  # the state comes with BUILD
        return ScriptObject(type_name)

    return make


def _restore_type_tag(value, type_str=None):
    return value


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *rest):
    return data


def _op(code: str) -> int:
    return code.encode("latin-1")[0]


class _Unpickler:
    """The pickle machine: protocols 0-4 as torch writes them (see the module docstring
    for what it refuses). `load()` returns the object or raises a ConversionError."""

    def __init__(self, data: bytes, archive: "_Archive", script: bool):
        self.data = data
        self.pos = 0
        self.archive = archive
        self.script = script
        self.stack: List[Any] = []
        self.metastack: List[List[Any]] = []
        self.memo: Dict[int, Any] = {}
        self.tuple_depth: Dict[int, int] = {}  # id(tuple) -> nesting depth
        self.tuples: List[tuple] = []  # keeps the tuples alive, so that their ids stay unique
        self.budget = 4 * len(data) + (1 << 20)  # elements the allowed callables may copy
        self.script_types: Dict[str, _Global] = {}
        self.op_pos = 0

    # ---- errors and input ----

    def _where(self) -> str:
        return f"{self.archive.path}: data.pkl"

    def corrupt(self, what: str) -> CorruptFileError:
        return CorruptFileError(f"{self._where()} cannot be read ({what}, at byte {self.op_pos})")

    def _read(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise self.corrupt(f"{n} bytes wanted, {len(self.data) - self.pos} left: truncated")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def _readline(self) -> bytes:
        i = self.data.find(b"\n", self.pos)
        if i < 0:
            raise self.corrupt("an unterminated line: truncated")
        b = self.data[self.pos:i]
        self.pos = i + 1
        return b

    def _unpack(self, fmt: str):
        return struct.unpack(fmt, self._read(struct.calcsize(fmt)))[0]

    def _text_number(self, parse, line: bytes):
        try:
            return parse(line)
        except (ValueError, OverflowError) as e:
            raise self.corrupt(f"bad number {_short(line)} ({e})") from None

    def _decode(self, b: bytes, encoding: str, errors: str = "strict") -> str:
        try:
            return b.decode(encoding, errors)
        except UnicodeDecodeError as e:
            raise self.corrupt(f"a string that is not {encoding} ({e.reason})") from None

    def charge(self, n: int):
        self.budget -= n
        if self.budget < 0:
            raise self.corrupt("the pickle copies more data than a file of its size can hold")

    # ---- the stack ----

    def pop(self):
        if not self.stack:
            raise self.corrupt("stack underflow")
        return self.stack.pop()

    def top(self):
        if not self.stack:
            raise self.corrupt("stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> List[Any]:
        if not self.metastack:
            raise self.corrupt("no MARK to close")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def make_tuple(self, items) -> tuple:
        t = tuple(items)
        depth = 1
        for x in t:
            if type(x) is tuple:
                depth = max(depth, self.tuple_depth.get(id(x), 1) + 1)
        if depth > MAX_TUPLE_DEPTH:
            raise self.corrupt(f"tuples nested more than {MAX_TUPLE_DEPTH} deep")
        if depth > 1:
            self.tuple_depth[id(t)] = depth
            self.tuples.append(t)
        return t

    # ---- globals ----

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _Global("collections.OrderedDict", self._ordered_dict, lambda *a, **k: collections.OrderedDict())
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _Global(f"torch._utils.{name}", self._rebuild_tensor)
        if module == "torch._utils" and name in ("_rebuild_parameter", "_rebuild_parameter_with_state"):
            return _Global(f"torch._utils.{name}", _rebuild_parameter)
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("torch", "Size"):
            return _Global("torch.Size", self._torch_size, self._torch_size)
        if self.script:
            if module.startswith("__torch__"):
                full = f"{module}.{name}"
                if full not in self.script_types:
                    make = _script_object_maker(full)
                    self.script_types[full] = _Global(full, make, make)
                return self.script_types[full]
            if module == "torch.jit._pickle" and name in (
                "build_intlist", "build_tensorlist", "build_doublelist", "build_boollist", "build_genericlist"
            ):
                return _Global(f"{module}.{name}", _as_list)
            if module == "torch.jit._pickle" and name == "restore_type_tag":
                return _Global(f"{module}.{name}", _restore_type_tag)
        raise UnsafeFileError(
            f"{self.archive.path}: refusing to load the global {_clip(module)}.{_clip(name)} "
            f"(only tensor data is read; the file is either not a plain state dict or not safe to load)"
        )

    def _ordered_dict(self, *args):
        if len(args) > 1:
            raise TypeError(f"OrderedDict expected at most 1 argument, got {len(args)}")
        if args:
            if not isinstance(args[0], (dict, list, tuple)):
                raise TypeError(f"OrderedDict from {type(args[0]).__name__}")
            self.charge(len(args[0]))
        return collections.OrderedDict(*args)

    def _torch_size(self, items=()):
        if not isinstance(items, (tuple, list)) or not all(type(v) is int for v in items):
            raise TypeError(f"torch.Size of {_short(items)}")
        self.charge(len(items))
        return tuple(items)

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and isinstance(pid[0], str) and pid[0] == "storage"):
            raise UnsafeFileError(f"{self.archive.path}: unexpected persistent id {_short(pid)}")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, _StorageType):
            raise UnsafeFileError(f"{self.archive.path}: persistent id with storage type {_short(stype)}")
        if type(key) is int:
            key = str(key)
        if type(key) is not str:
            raise CorruptFileError(f"{self.archive.path}: storage key {_short(key)} is not a string")
        if type(numel) is not int or not 0 <= numel < INT64:
            raise CorruptFileError(f"{self.archive.path}: storage {_short(key)} has invalid size {_short(numel)}")
        self.archive.check_storage(key, stype.dtype, numel)
        return _Storage(self.archive, key, stype.dtype, numel)

    def _int_tuple(self, v, what: str) -> Tuple[int, ...]:
        if not isinstance(v, (tuple, list)) or len(v) > MAX_DIMS or not all(type(x) is int and -INT64 <= x < INT64 for x in v):
            raise CorruptFileError(
                f"{self.archive.path}: tensor {what} {_short(v)} is not a tuple of at most {MAX_DIMS} 64-bit integers")
        return tuple(v)

    def _rebuild_tensor(self, storage, storage_offset, size, stride, *rest):
        path = self.archive.path
        if not isinstance(storage, _Storage):
            raise CorruptFileError(f"{path}: tensor without a storage")
        size = self._int_tuple(size, "size")
        stride = self._int_tuple(stride, "stride")
        if type(storage_offset) is not int or not -INT64 <= storage_offset < INT64:
            raise CorruptFileError(f"{path}: tensor storage offset {_short(storage_offset)} is not a 64-bit integer")
        offset = storage_offset
        if len(size) != len(stride) or any(s < 0 for s in size) or offset < 0:
            raise CorruptFileError(f"{path}: invalid tensor geometry size={_short(size)} stride={_short(stride)}")
        numel = 1
        for s in size:
            numel *= s
        if numel:
            last = offset + sum((s - 1) * st for s, st in zip(size, stride))
            if any(st < 0 for st in stride) or last >= storage.numel:
                raise CorruptFileError(
                    f"{path}: tensor (offset {_short(offset)}, size {_short(size)}, stride {_short(stride)}) "
                    f"exceeds its storage of {storage.numel} elements"
                )
            if numel > storage.numel:
                raise CorruptFileError(
                    f"{path}: tensor of size {_short(size)} (stride {_short(stride)}) has {numel} elements, more than its "
                    f"storage of {storage.numel}: an expanded view with overlapping elements is not supported "
                    f"(save it with .contiguous())"
                )
        else:
            nonzero = 1
            for s in size:
                nonzero *= max(s, 1)
            if nonzero * ITEMSIZE[storage.dtype] >= 1 << 62:
                raise CorruptFileError(f"{path}: invalid tensor geometry size={_short(size)}")
        # a dimension of size 1 is never stepped over: its stride does not matter
        stride = tuple(st if s != 1 else 0 for s, st in zip(size, stride))

        def load(storage=storage, offset=offset, size=size, stride=stride, numel=numel):
            base = storage.array()
            if numel == 0:
                return np.zeros(size, dtype=base.dtype)
            dense = True  # (not `contiguous`: that name is the function used below)
            expect = 1
            for s, st in reversed(list(zip(size, stride))):
                if s != 1 and st != expect:
                    dense = False
                expect *= s
            if dense:
                return base[offset:offset + numel].reshape(size)
            item = base.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(base[offset:], shape=size, strides=tuple(st * item for st in stride))
            return contiguous(view)

        return Tensor(storage.dtype, size, load, f"{path}: storage {storage.key}")

    # ---- opcodes ----

    def load(self) -> Any:
        try:
            return self._run()
        finally:  # drop the machine's references (the memo holds globals bound to this object)
            self.stack, self.metastack, self.memo = [], [], {}
            self.tuples, self.tuple_depth = [], {}

    def _run(self) -> Any:
        dispatch = self.DISPATCH
        data = self.data
        while True:
            self.op_pos = self.pos
            if self.pos >= len(data):
                raise self.corrupt("no STOP opcode: truncated")
            op = data[self.pos]
            self.pos += 1
            if op == 0x2E:  # STOP
                return self.pop()
            f = dispatch.get(op)
            if f is None:
                if op in self.REFUSED:
                    raise UnsafeFileError(
                        f"{self._where()}: opcode {self.REFUSED[op]} at byte {self.op_pos} is not one torch.save writes; refusing it")
                raise self.corrupt(f"unknown opcode {bytes([op])!r}")
            f(self)

    def op_proto(self):
        v = self._read(1)[0]
        if v > 5:
            raise self.corrupt(f"unsupported pickle protocol {v}")

    def op_frame(self):
        n = self._unpack("<Q")
        if n > len(self.data) - self.pos:
            raise self.corrupt(f"a frame of {n} bytes, {len(self.data) - self.pos} left: truncated")

    def op_persid(self):
        self.stack.append(self.persistent_load(self._decode(self._readline(), "ascii")))

    def op_binpersid(self):
        self.stack.append(self.persistent_load(self.pop()))

    def op_none(self):
        self.stack.append(None)

    def op_newfalse(self):
        self.stack.append(False)

    def op_newtrue(self):
        self.stack.append(True)

    def op_int(self):
        line = self._readline()
        if line == b"00":
            v: Any = False
        elif line == b"01":
            v = True
        else:
            v = self._text_number(lambda b: int(b, 0), line)
        self.stack.append(v)

    def op_binint(self):
        self.stack.append(self._unpack("<i"))

    def op_binint1(self):
        self.stack.append(self._read(1)[0])

    def op_binint2(self):
        self.stack.append(self._unpack("<H"))

    def op_long(self):
        line = self._readline()
        if line.endswith(b"L"):
            line = line[:-1]
        self.stack.append(self._text_number(lambda b: int(b, 0), line))

    def op_long1(self):
        n = self._read(1)[0]
        self.stack.append(int.from_bytes(self._read(n), "little", signed=True))

    def op_long4(self):
        n = self._unpack("<i")
        if n < 0:
            raise self.corrupt("LONG4 with a negative byte count")
        self.stack.append(int.from_bytes(self._read(n), "little", signed=True))

    def op_float(self):
        self.stack.append(self._text_number(float, self._readline()))

    def op_binfloat(self):
        self.stack.append(self._unpack(">d"))

    def op_string(self):
        line = self._readline()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in b"\"'":
            line = line[1:-1]
        else:
            raise self.corrupt("the STRING opcode argument must be quoted")
        try:
            raw = codecs.escape_decode(line)[0]
        except ValueError as e:
            raise self.corrupt(f"a bad escape in a string ({e})") from None
        self.stack.append(self._decode(raw, "ascii"))

    def op_binstring(self):
        n = self._unpack("<i")
        if n < 0:
            raise self.corrupt("BINSTRING with a negative byte count")
        self.stack.append(self._decode(self._read(n), "ascii"))

    def op_short_binstring(self):
        self.stack.append(self._decode(self._read(self._read(1)[0]), "ascii"))

    def op_unicode(self):
        self.stack.append(self._decode(self._readline(), "raw-unicode-escape"))

    def op_binunicode(self):
        self.stack.append(self._decode(self._read(self._unpack("<I")), "utf-8", "surrogatepass"))

    def op_short_binunicode(self):
        self.stack.append(self._decode(self._read(self._read(1)[0]), "utf-8", "surrogatepass"))

    def op_binunicode8(self):
        self.stack.append(self._decode(self._read(self._unpack("<Q")), "utf-8", "surrogatepass"))

    def op_binbytes(self):
        self.stack.append(self._read(self._unpack("<I")))

    def op_short_binbytes(self):
        self.stack.append(self._read(self._read(1)[0]))

    def op_binbytes8(self):
        self.stack.append(self._read(self._unpack("<Q")))

    def op_empty_tuple(self):
        self.stack.append(())

    def op_tuple(self):
        items = self.pop_mark()  # (first: pop_mark replaces self.stack)
        self.stack.append(self.make_tuple(items))

    def op_tuple1(self):
        self.stack.append(self.make_tuple([self.pop()]))

    def op_tuple2(self):
        b = self.pop()
        a = self.pop()
        self.stack.append(self.make_tuple([a, b]))

    def op_tuple3(self):
        c = self.pop()
        b = self.pop()
        a = self.pop()
        self.stack.append(self.make_tuple([a, b, c]))

    def op_empty_list(self):
        self.stack.append([])

    def op_list(self):
        items = self.pop_mark()
        self.stack.append(items)

    def op_empty_dict(self):
        self.stack.append({})

    def op_dict(self):
        items = self.pop_mark()
        d: Dict[Any, Any] = {}
        self._setitems(d, items)
        self.stack.append(d)

    def op_empty_set(self):
        self.stack.append(set())

    def op_frozenset(self):
        items = self.pop_mark()
        try:
            self.stack.append(frozenset(items))
        except TypeError as e:
            raise self.corrupt(f"a set element that cannot be hashed ({e})") from None

    def op_additems(self):
        items = self.pop_mark()
        target = self.top()
        if not isinstance(target, set):
            raise self.corrupt(f"ADDITEMS to {_short(target)}, not a set")
        try:
            target.update(items)
        except TypeError as e:
            raise self.corrupt(f"a set element that cannot be hashed ({e})") from None

    def op_append(self):
        v = self.pop()
        target = self.top()
        if type(target) is not list:
            raise self.corrupt(f"APPEND to {_short(target)}, not a list")
        target.append(v)

    def op_appends(self):
        items = self.pop_mark()
        target = self.top()
        if type(target) is not list:
            raise self.corrupt(f"APPENDS to {_short(target)}, not a list")
        target.extend(items)

    def _setitems(self, target, items):
        if not isinstance(target, dict):
            raise self.corrupt(f"SETITEM on {_short(target)}, not a dict")
        if len(items) % 2:
            raise self.corrupt("an odd number of items for a dict")
        try:
            for i in range(0, len(items), 2):
                target[items[i]] = items[i + 1]  # (an OrderedDict's own __setitem__ keeps its order)
        except TypeError as e:
            raise self.corrupt(f"a dict key that cannot be hashed ({e})") from None

    def op_setitem(self):
        v = self.pop()
        k = self.pop()
        self._setitems(self.top(), [k, v])

    def op_setitems(self):
        items = self.pop_mark()
        self._setitems(self.top(), items)

    def op_mark(self):
        self.metastack.append(self.stack)
        self.stack = []

    def op_pop(self):
        if self.stack:
            self.stack.pop()
        else:
            self.pop_mark()

    def op_pop_mark(self):
        self.pop_mark()

    def op_dup(self):
        self.stack.append(self.top())

    def _get(self, i: int):
        if i not in self.memo:
            raise self.corrupt(f"memo entry {i} is read before it is written")
        self.stack.append(self.memo[i])

    def op_get(self):
        self._get(self._text_number(int, self._readline()))

    def op_binget(self):
        self._get(self._read(1)[0])

    def op_long_binget(self):
        self._get(self._unpack("<I"))

    def op_put(self):
        i = self._text_number(int, self._readline())
        if i < 0:
            raise self.corrupt("a negative PUT index")
        self.memo[i] = self.top()

    def op_binput(self):
        self.memo[self._read(1)[0]] = self.top()

    def op_long_binput(self):
        self.memo[self._unpack("<I")] = self.top()

    def op_memoize(self):
        self.memo[len(self.memo)] = self.top()

    def op_global(self):
        module = self._decode(self._readline(), "utf-8")
        name = self._decode(self._readline(), "utf-8")
        self.stack.append(self.find_class(module, name))

    def op_stack_global(self):
        name = self.pop()
        module = self.pop()
        if type(name) is not str or type(module) is not str:
            raise self.corrupt("STACK_GLOBAL with a module or name that is not a string")
        self.stack.append(self.find_class(module, name))

    def _call(self, fn, what: str, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (TypeError, ValueError) as e:  # arguments the allowed callable does not take
            raise self.corrupt(f"{what}: {_clip(str(e), 200)}") from None

    def op_reduce(self):
        args = self.pop()
        g = self.pop()
        if not isinstance(g, _Global) or g.call is None:
            raise UnsafeFileError(f"{self._where()}: REDUCE calls {_short(g)}, which is not an allowed function")
        if type(args) is not tuple:
            raise self.corrupt(f"REDUCE of {g.name} with arguments {_short(args)}, not a tuple")
        self.charge(len(args))  # a call copies its arguments
        self.stack.append(self._call(g.call, f"calling {g.name}", *args))

    def op_newobj(self):
        args = self.pop()
        g = self.pop()
        if not isinstance(g, _Global) or g.new is None:
            raise UnsafeFileError(f"{self._where()}: NEWOBJ of {_short(g)}, which is not an allowed class")
        if type(args) is not tuple:
            raise self.corrupt(f"NEWOBJ of {g.name} with arguments {_short(args)}, not a tuple")
        self.charge(len(args))
        self.stack.append(self._call(g.new, f"creating {g.name}", *args))

    def op_newobj_ex(self):
        kwargs = self.pop()
        args = self.pop()
        g = self.pop()
        if not isinstance(g, _Global) or g.new is None:
            raise UnsafeFileError(f"{self._where()}: NEWOBJ_EX of {_short(g)}, which is not an allowed class")
        if type(args) is not tuple or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
            raise self.corrupt(f"NEWOBJ_EX of {g.name} with arguments {_short(args)}, {_short(kwargs)}")
        self.charge(len(args) + len(kwargs))
        self.stack.append(self._call(g.new, f"creating {g.name}", *args, **kwargs))

    def op_build(self):
        state = self.pop()
        inst = self.top()
        if isinstance(inst, ScriptObject):
            if isinstance(state, dict):
                self.charge(len(state))
            ScriptObject.__setstate__(inst, state)
        elif type(inst) is collections.OrderedDict:
            # torch.save of a module's state dict: {"_metadata": ...}
            if not isinstance(state, dict) or not all(
                type(k) is str and not k.startswith("__") and not hasattr(collections.OrderedDict, k) for k in state
            ):
                raise UnsafeFileError(f"{self._where()}: BUILD of an OrderedDict with state {_short(state)}")
            self.charge(len(state))
            inst.__dict__.update(state)
        else:
            raise UnsafeFileError(f"{self._where()}: BUILD (setting the state) of {_short(inst)} is not allowed")

    REFUSED = {
        0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", _op("i"): "INST", _op("o"): "OBJ",
        0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
    }

    DISPATCH: Dict[int, Callable[["_Unpickler"], None]] = {}


_Unpickler.DISPATCH = {
    0x80: _Unpickler.op_proto, 0x95: _Unpickler.op_frame,
    _op("P"): _Unpickler.op_persid, _op("Q"): _Unpickler.op_binpersid,
    _op("N"): _Unpickler.op_none, 0x88: _Unpickler.op_newtrue, 0x89: _Unpickler.op_newfalse,
    _op("I"): _Unpickler.op_int, _op("J"): _Unpickler.op_binint, _op("K"): _Unpickler.op_binint1,
    _op("M"): _Unpickler.op_binint2, _op("L"): _Unpickler.op_long, 0x8A: _Unpickler.op_long1,
    0x8B: _Unpickler.op_long4, _op("F"): _Unpickler.op_float, _op("G"): _Unpickler.op_binfloat,
    _op("S"): _Unpickler.op_string, _op("T"): _Unpickler.op_binstring, _op("U"): _Unpickler.op_short_binstring,
    _op("V"): _Unpickler.op_unicode, _op("X"): _Unpickler.op_binunicode, 0x8C: _Unpickler.op_short_binunicode,
    0x8D: _Unpickler.op_binunicode8, _op("B"): _Unpickler.op_binbytes, _op("C"): _Unpickler.op_short_binbytes,
    0x8E: _Unpickler.op_binbytes8,
    _op(")"): _Unpickler.op_empty_tuple, _op("t"): _Unpickler.op_tuple, 0x85: _Unpickler.op_tuple1,
    0x86: _Unpickler.op_tuple2, 0x87: _Unpickler.op_tuple3,
    _op("]"): _Unpickler.op_empty_list, _op("l"): _Unpickler.op_list, _op("a"): _Unpickler.op_append,
    _op("e"): _Unpickler.op_appends,
    _op("}"): _Unpickler.op_empty_dict, _op("d"): _Unpickler.op_dict, _op("s"): _Unpickler.op_setitem,
    _op("u"): _Unpickler.op_setitems,
    0x8F: _Unpickler.op_empty_set, 0x90: _Unpickler.op_additems, 0x91: _Unpickler.op_frozenset,
    _op("("): _Unpickler.op_mark, _op("0"): _Unpickler.op_pop, _op("1"): _Unpickler.op_pop_mark,
    _op("2"): _Unpickler.op_dup,
    _op("g"): _Unpickler.op_get, _op("h"): _Unpickler.op_binget, _op("j"): _Unpickler.op_long_binget,
    _op("p"): _Unpickler.op_put, _op("q"): _Unpickler.op_binput, _op("r"): _Unpickler.op_long_binput,
    0x94: _Unpickler.op_memoize,
    _op("c"): _Unpickler.op_global, 0x93: _Unpickler.op_stack_global,
    _op("R"): _Unpickler.op_reduce, 0x81: _Unpickler.op_newobj, 0x92: _Unpickler.op_newobj_ex,
    _op("b"): _Unpickler.op_build,
}


class _Archive:
    """A torch zip archive, memory-mapped."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._mm = None
        self._inflated: Dict[str, bytes] = {}  # compressed storages, decompressed once
        try:
            self._fh = open(self.path, "rb")
        except OSError as e:
            raise ConversionError(f"{self.path}: {e.strerror or e}") from None
        try:
            self.zf = zipfile.ZipFile(self._fh)
            names = self.zf.namelist()
        except _ZIP_ERRORS as e:
            raise CorruptFileError(
                f"{self.path}: not a readable zip archive ({type(e).__name__}: {_short(str(e), 200)}; truncated or not a PyTorch file)"
            ) from None
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1] or [n for n in names if n == "data.pkl"]
        if len(pkl) != 1:
            raise CorruptFileError(f"{self.path}: a zip archive without exactly one <root>/data.pkl (not a PyTorch file)")
        self.root = pkl[0][: -len("data.pkl")]
        self.names = set(names)
        self.script = any(n.startswith(self.root + "code/") for n in names) or (self.root + "constants.pkl") in self.names
        order = self._read_small("byteorder")
        self.byteorder = (order or b"little").decode("ascii", "replace").strip()
        if self.byteorder not in ("little", "big"):
            raise CorruptFileError(f"{self.path}: unknown byteorder {_short(self.byteorder)}")

    def _info(self, name: str, what: str) -> zipfile.ZipInfo:
        try:
            return self.zf.getinfo(name)
        except KeyError:
            raise CorruptFileError(f"{self.path}: {what} (entry {_short(name)}) is missing") from None

    def _read_entry(self, name: str, what: str, limit: Optional[int] = None) -> bytes:
        info = self._info(name, what)
        if limit is not None and info.file_size > limit:
            raise CorruptFileError(f"{self.path}: {what} has {info.file_size} bytes, expected at most {limit}")
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > max(1 << 20, MAX_COMPRESSION_RATIO * info.compress_size):
            raise CorruptFileError(
                f"{self.path}: {what} claims {info.file_size} bytes compressed into {info.compress_size} (a decompression bomb?)")
        try:
            return self.zf.read(info)
        except _ZIP_ERRORS as e:
            raise CorruptFileError(f"{self.path}: cannot read {what} ({type(e).__name__}: {_short(str(e), 200)})") from None

    def _read_small(self, name: str) -> Optional[bytes]:
        full = self.root + name
        if full not in self.names:
            return None
        return self._read_entry(full, name, limit=64)

    def read_pickle(self) -> bytes:
        return self._read_entry(self.root + "data.pkl", "data.pkl")

    def _mmap(self):
        if self._mm is None:
            self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        return self._mm

    def check_storage(self, key: str, dtype: str, numel: int):
        name = f"{self.root}data/{key}"
        info = self._info(name, f"storage {_short(key)}")
        if info.file_size < numel * ITEMSIZE[dtype]:
            raise CorruptFileError(
                f"{self.path}: storage {_short(key)} has {info.file_size} bytes, needs {numel * ITEMSIZE[dtype]} for {numel} x {dtype}")

    def storage_array(self, key: str, dtype: str, numel: int) -> np.ndarray:
        name = f"{self.root}data/{key}"
        what = f"storage {_short(key)}"
        info = self._info(name, what)
        nbytes = numel * ITEMSIZE[dtype]
        if info.file_size < nbytes:
            raise CorruptFileError(f"{self.path}: {what} has {info.file_size} bytes, needs {nbytes} for {numel} x {dtype}")
        npdt = NUMPY[dtype] if self.byteorder == "little" else NUMPY[dtype].newbyteorder(">")
        if info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 1:
            mm = self._mmap()
            if not 0 <= info.header_offset <= len(mm) - 30:
                raise CorruptFileError(f"{self.path}: zip local header of {what} is outside the file")
            hdr = mm[info.header_offset:info.header_offset + 30]
            if hdr[:4] != b"PK\x03\x04":
                raise CorruptFileError(f"{self.path}: broken zip local header for {what}")
            n, m = struct.unpack("<HH", hdr[26:30])
            start = info.header_offset + 30 + n + m
            if start + nbytes > len(mm):
                raise CorruptFileError(f"{self.path}: {what} extends past the end of the file (truncated?)")
            a = np.frombuffer(mm, dtype=npdt, count=numel, offset=start)
        else:
            raw = self._inflated.get(name)
            if raw is None:
                raw = self._inflated[name] = self._read_entry(name, what)
            if len(raw) < nbytes:
                raise CorruptFileError(f"{self.path}: {what} has {len(raw)} bytes, needs {nbytes} for {numel} x {dtype}")
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


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except _ZIP_ERRORS:  # an end-of-archive record that zipfile refuses: still meant as a zip
        return True


def load(path: Path) -> Tuple[Any, bool]:
    """Unpickles data.pkl of a torch zip archive: (object, is_torchscript). Tensors are
    lazy `Tensor`s; TorchScript modules are `ScriptObject`s. Raises ConversionError
    (CorruptFileError, UnsafeFileError) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such file")
    if not _is_zip(path):
        _check_not_legacy(path)
        raise CorruptFileError(f"{path}: not a PyTorch zip archive or safetensors file (truncated or a different format)")
    archive = _Archive(path)
    data = archive.read_pickle()
    obj = _Unpickler(data, archive, archive.script).load()
    return obj, archive.script


def _key_name(k: Any) -> str:
    return k if isinstance(k, str) else str(k) if type(k) is int else _short(k)


def script_tensors(obj: Any) -> Dict[str, Tensor]:
    """Every tensor reachable through a TorchScript object's attributes, by dotted path
    (depth first, in attribute order; an object reached twice is walked once)."""
    out: Dict[str, Tensor] = {}
    seen = set()
    todo: List[Tuple[Any, str]] = [(obj, "")]  # an explicit stack: objects may nest arbitrarily deep
    while todo:
        o, prefix = todo.pop()
        if isinstance(o, Tensor):
            out.setdefault(prefix, o)
        elif isinstance(o, ScriptObject) and id(o) not in seen:
            seen.add(id(o))
            children = [(v, f"{prefix}.{_key_name(k)}" if prefix else _key_name(k)) for k, v in o.attributes.items()]
            todo.extend(reversed(children))
    return out


def tensor_dict(obj: Any, path: Path, what: str = "state dict") -> Dict[str, Tensor]:
    """A {name: Tensor} mapping from a loaded object (refuses anything else)."""
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a {what} (a dict of tensors), found {type(obj).__name__}")
    out: Dict[str, Tensor] = {}
    bad: List[str] = []
    for k, v in obj.items():
        if not isinstance(k, str):
            bad.append(f"{_short(k)} (a {type(k).__name__} name)")
        elif isinstance(v, Tensor):
            out[k] = v
        else:
            bad.append(f"{_clip(k)} ({type(v).__name__})")
    if bad:
        raise ConversionError(f"{path}: entries that are not tensors: {', '.join(bad[:20])}"
                              + (f", ... ({len(bad) - 20} more)" if len(bad) > 20 else ""))
    return out
