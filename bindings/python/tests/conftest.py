"""Shared pytest setup.

The library is taken from FLAMINGO_LIBRARY; when that is unset, the first
build output of this checkout that exists is used (build/libflamingo.so.1,
build/libflamingo.so, .build-bindings/release/libflamingo.so,
.build/release/libflamingo.so), else the package's normal search applies.

Fixture models live in Tests/Fixtures/<name>/ (or FLAMINGO_FIXTURES_DIR).
A test that needs a missing fixture is skipped, or fails when
FLAMINGO_REQUIRE_FIXTURES=1.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURE_NAMES = ["mpt_tiny", "gpt_neox_tiny", "llama_tiny"]


def _default_library():
    for rel in ("build/libflamingo.so.1", "build/libflamingo.so",
                ".build-bindings/release/libflamingo.so", ".build/release/libflamingo.so"):
        p = ROOT / rel
        if p.exists():
            return str(p)
    return None


if not os.environ.get("FLAMINGO_LIBRARY"):
    _lib = _default_library()
    if _lib:
        os.environ["FLAMINGO_LIBRARY"] = _lib


def subprocess_env() -> dict:
    """The environment for a child Python that must import this same package."""
    import flamingo

    pkg_parent = str(Path(flamingo.__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_parent, env.get("PYTHONPATH")) if p)
    return env


def fixtures_dir() -> Path:
    return Path(os.environ.get("FLAMINGO_FIXTURES_DIR") or ROOT / "Tests" / "Fixtures")


def require_fixture(name: str) -> Path:
    d = fixtures_dir() / name
    if not (d / "config.json").is_file():
        msg = f"fixture model {d} is missing"
        if os.environ.get("FLAMINGO_REQUIRE_FIXTURES") == "1":
            pytest.fail(msg + " (FLAMINGO_REQUIRE_FIXTURES=1)")
        pytest.skip(msg)
    return d


@pytest.fixture(params=FIXTURE_NAMES)
def fixture_dir(request) -> Path:
    return require_fixture(request.param)


@pytest.fixture
def any_fixture_dir() -> Path:
    """The first fixture model that exists."""
    for name in FIXTURE_NAMES:
        if (fixtures_dir() / name / "config.json").is_file():
            return fixtures_dir() / name
    return require_fixture(FIXTURE_NAMES[0])


@pytest.fixture
def garbage_model_dir(tmp_path) -> Path:
    d = tmp_path / "garbage"
    d.mkdir()
    (d / "config.json").write_text("this is { not json")
    (d / "model.safetensors").write_bytes(b"garbage")
    return d
