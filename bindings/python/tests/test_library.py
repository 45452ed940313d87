import os
import re
import subprocess
import sys
import threading

import pytest

import flamingo
from conftest import subprocess_env
from flamingo import _lib


def test_version():
    v = flamingo.version()
    assert re.fullmatch(r"\d+\.\d+\.\d+([-+].*)?", v), v


def test_abi_version():
    assert flamingo.abi_version() == 1 == flamingo.ABI_VERSION


def test_every_header_function_declared():
    lib = _lib.lib()
    for name, (restype, argtypes) in _lib.FUNCTIONS.items():
        fn = getattr(lib, name)
        assert fn.restype is restype, name
        assert fn.argtypes == argtypes, name
    assert len(_lib.FUNCTIONS) == 35  # every function of flamingo.h (0.1 and the two quantization calls)


def test_declarations_match_the_header():
    """Every declared function is in include/flamingo.h with the same arity;
    header functions these bindings do not declare yet are reported as a
    warning (the header may grow ahead of the bindings)."""
    from conftest import ROOT

    header = ROOT / "include" / "flamingo.h"
    if not header.is_file():
        pytest.skip(f"{header} is not part of this checkout")
    text = re.sub(r"/\*.*?\*/", " ", header.read_text(), flags=re.S)
    decls = {}
    for m in re.finditer(r"\b(flamingo_[a-z_]+)\s*\(([^;{]*?)\)\s*;", text):
        name, args = m.group(1), m.group(2).strip()
        if "(*" in args:  # a typedef of a function pointer
            continue
        decls[name] = 0 if args in ("", "void") else args.count(",") + 1
    assert set(_lib.FUNCTIONS) <= set(decls), set(_lib.FUNCTIONS) - set(decls)
    for name in _lib.FUNCTIONS:
        assert len(_lib.FUNCTIONS[name][1]) == decls[name], name
    unbound = sorted(set(decls) - set(_lib.FUNCTIONS))
    if unbound:
        import warnings

        warnings.warn(f"flamingo.h functions without Python declarations: {', '.join(unbound)}")


def test_status_strings():
    seen = set()
    for s in flamingo.Status:
        text = flamingo.status_string(s)
        assert text and text != "unknown status", s
        seen.add(text)
    assert len(seen) == len(flamingo.Status)
    for bad in (11, 99, -1):
        assert flamingo.status_string(bad) == "unknown status"


def test_error_classes():
    classes = {
        flamingo.Status.INVALID_ARGUMENT: flamingo.InvalidArgumentError,
        flamingo.Status.IO: flamingo.IoError,
        flamingo.Status.INVALID_FORMAT: flamingo.InvalidFormatError,
        flamingo.Status.UNSUPPORTED: flamingo.UnsupportedError,
        flamingo.Status.OUT_OF_MEMORY: flamingo.OutOfMemoryError,
        flamingo.Status.BACKEND: flamingo.BackendError,
        flamingo.Status.NOT_FOUND: flamingo.NotFoundError,
        flamingo.Status.BUFFER_TOO_SMALL: flamingo.BufferTooSmallError,
        flamingo.Status.CANCELLED: flamingo.CancelledError,
        flamingo.Status.INTERNAL: flamingo.InternalError,
    }
    for status, cls in classes.items():
        assert issubclass(cls, flamingo.FlamingoError)
        assert cls.status == status
        assert flamingo._ERRORS[status] is cls
        e = cls(status, "msg")
        assert e.status == status and e.message == "msg"
        assert str(e) == f"{flamingo.status_string(status)}: msg"
    # An unknown status falls back to the base class and keeps the number.
    e = flamingo._error(42)
    assert type(e) is flamingo.FlamingoError and e.status == 42


def test_last_error_is_per_thread():
    with pytest.raises(flamingo.NotFoundError) as main_err:
        flamingo.device(10**6)
    mine = flamingo.last_error()
    assert mine and mine == main_err.value.message

    other = {}

    def worker():
        other["before"] = flamingo.last_error()
        try:
            flamingo.Model.load("/nonexistent/flamingo/model")
        except flamingo.FlamingoError as e:
            other["error"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert other["before"] == ""
    assert isinstance(other["error"], flamingo.IoError)
    assert other["error"].message and other["error"].message != mine
    assert flamingo.last_error() == mine


def test_library_search_order(monkeypatch):
    import ctypes.util

    monkeypatch.delenv("FLAMINGO_LIBRARY", raising=False)
    expect = []
    for d in (os.path.join(sys.prefix, "lib"), "/usr/local/lib"):
        expect += [os.path.join(d, "libflamingo.so.1"), os.path.join(d, "libflamingo.so")]
    found = ctypes.util.find_library("flamingo")
    expect += ([found] if found else []) + ["libflamingo.so.1", "libflamingo.so"]
    dedup = []
    for c in expect:
        if c not in dedup:
            dedup.append(c)
    assert _lib.candidates() == dedup
    monkeypatch.setenv("FLAMINGO_LIBRARY", "/x/libflamingo.so")
    assert _lib.candidates() == ["/x/libflamingo.so"]


def test_bad_library_path_is_a_clear_error():
    code = "import flamingo\ntry:\n    flamingo.version()\nexcept flamingo.LibraryError as e:\n    print('LibraryError', e)\n"
    env = dict(subprocess_env(), FLAMINGO_LIBRARY="/nonexistent/libflamingo.so")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.startswith("LibraryError") and "FLAMINGO_LIBRARY" in out.stdout
