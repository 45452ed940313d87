"""Coverage-guided fuzz target (atheris) for the converter's restricted unpickler,
flamingo/convert/torchpickle.py.

    pip install atheris==3.0.0
    PYTHONPATH=bindings/python python3 -m tools.fuzz.python.fuzz_unpickler \\
        tools/fuzz/python/corpus/unpickler -dict=tools/fuzz/python/unpickler.dict \\
        -atheris_runs=1000000 -max_len=65536 -timeout=10

(from the repository root; copy the corpus to a scratch directory first if the new
inputs libFuzzer writes into it should not end up in the checkout). A single input is
replayed by naming the file instead of the directory.

torchpickle reads from a path only (``load(path)``; there is no entry point taking bytes
or a file object), so every input is written to one file in a directory made once per
process (/dev/shm when there is one, else $TMPDIR), and removed after the input; each
write makes a new inode, so nothing still mapped from the previous input changes. (When
libFuzzer ends the process, Python's atexit does not run: the empty directory stays.)

An input is tried as:

* a whole file, when it starts with ``PK`` (a zip archive: a torch.save or TorchScript
  file, damaged or not);
* otherwise as a raw pickle stream, twice: as a file on its own (the non-zip / legacy
  path of ``load``), and as ``archive/data.pkl`` of a well-formed torch zip archive that
  also holds the storages ``archive/data/0`` (256 bytes), ``1`` (16 bytes) and ``2``
  (empty). If the input's last byte is odd (trailing bytes after a pickle's STOP are
  ignored) the archive also has ``archive/code/`` and ``archive/constants.pkl``, so it is
  read as TorchScript.

Every loaded object goes the way the converter takes it: ``script_tensors`` for
TorchScript, else ``tensor_dict`` (also of the ``state_dict`` / ``model_state_dict``
inside, as vision.unwrap_state_dict does), and every tensor found is materialised
(``Tensor.numpy()``) and checked against its declared dtype and shape.

The converter's contract is that bad input yields a ``ConversionError`` (with
``CorruptFileError`` / ``UnsafeFileError`` as subclasses) carrying a clear message. Those
are caught here; any other exception (IndexError, KeyError, struct.error, OverflowError,
RecursionError, MemoryError, zipfile.BadZipFile, zlib.error, ...) propagates and atheris
reports it as a crash. A file that asks for a giant allocation must be refused by the
unpickler, not attempted: libFuzzer's -rss_limit_mb (default 2048) and -timeout catch
one that is attempted.
"""

from __future__ import annotations

import atexit
import io
import os
import shutil
import sys
import tempfile

import atheris

# numpy is a dependency, not a target: import it uninstrumented.
import numpy as np  # noqa: F401

# zipfile is already imported by atheris itself; import a fresh copy inside the
# instrumented block so that its branches guide the fuzzer too (torchpickle gets it).
sys.modules.pop("zipfile", None)

with atheris.instrument_imports(include=["flamingo", "zipfile"]):
    import zipfile

    from flamingo.convert import torchpickle
    from flamingo.convert.errors import ConversionError
    from flamingo.convert.tensors import NUMPY, Tensor


def _scratch_dir() -> str:
    shm = "/dev/shm"
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    d = tempfile.mkdtemp(prefix="fuzz_unpickler.", dir=base)
    atexit.register(shutil.rmtree, d, True)
    return d


_DIR = _scratch_dir()
_PATH = os.path.join(_DIR, "input.pt")
_TMP = os.path.join(_DIR, "input.pt.tmp")

_STORAGES = {"0": bytes(range(256)), "1": b"\x00\x00\x80\x3f" * 4, "2": b""}


def _wrap(pickle_bytes: bytes, script: bool) -> bytes:
    """`pickle_bytes` as data.pkl of a torch zip archive (as torch.save lays it out)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", b"little")
        for key, data in _STORAGES.items():
            z.writestr(f"archive/data/{key}", data)
        if script:
            z.writestr("archive/code/__torch__/m.py", b"")
            z.writestr("archive/constants.pkl", b"\x80\x02).")
        z.writestr("archive/version", b"3\n")
    return buf.getvalue()


def _write(data: bytes) -> str:
    with open(_TMP, "wb") as f:
        f.write(data)
    os.replace(_TMP, _PATH)  # a new inode: an earlier mmap of the old file stays valid
    return _PATH


def _materialise(tensors) -> None:
    for name, t in tensors.items():
        assert isinstance(name, str), f"tensor name {name!r} is not a str"
        assert isinstance(t, Tensor), f"{name}: {type(t).__name__} is not a Tensor"
        a = t.numpy()
        # Tensor.numpy() promises exactly this (it raises ConversionError otherwise)
        assert a.dtype == NUMPY[t.dtype] and tuple(a.shape) == t.shape, (name, a.dtype, a.shape, t)
        assert a.flags.c_contiguous, name


def _check(file_bytes: bytes) -> None:
    path = _write(file_bytes)
    try:
        _load_and_read(path)
    finally:
        os.unlink(path)


def _load_and_read(path: str) -> None:
    try:
        obj, script = torchpickle.load(path)
        if script:
            _materialise(torchpickle.script_tensors(obj))
            return
        if isinstance(obj, dict):
            for key in ("model_state_dict", "state_dict"):
                inner = obj.get(key)
                if isinstance(inner, dict):
                    try:
                        _materialise(torchpickle.tensor_dict(inner, path))
                    except ConversionError:
                        pass
        _materialise(torchpickle.tensor_dict(obj, path))
    except ConversionError as e:
        msg = str(e)
        assert msg, "a ConversionError without a message"
        assert len(msg) < 100_000, f"a ConversionError message of {len(msg)} characters"


def TestOneInput(data: bytes) -> None:
    if data[:2] == b"PK":
        _check(data)
        return
    _check(data)  # not a zip: the legacy / not-a-PyTorch-file path
    _check(_wrap(data, script=bool(data) and data[-1] & 1 == 1))


def main() -> None:
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
