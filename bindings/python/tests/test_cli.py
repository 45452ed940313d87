import os
import subprocess
import sys

import flamingo
from conftest import subprocess_env
from flamingo import __main__ as cli


def run(*args):
    return subprocess.run([sys.executable, "-m", "flamingo", *args], capture_output=True, text=True,
                          env=subprocess_env())


def test_info_without_model():
    out = run("info")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"flamingo {flamingo.version()} (abi 1)"
    assert lines[1] == f"devices: {flamingo.device_count()}"
    assert lines[2].startswith("device 0: ")
    assert "  backend: cpu" in lines


def test_info_missing_model(tmp_path):
    out = run("info", str(tmp_path / "missing"))
    assert out.returncode == 1
    assert out.stderr.startswith("error: " + flamingo.status_string(flamingo.Status.IO) + ": ")


def test_usage():
    assert run().returncode == 2
    assert run("frobnicate").returncode == 2


def test_info_with_model(fixture_dir):
    out = run("info", str(fixture_dir))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    i = lines.index(f"model: {fixture_dir}")
    keys = [line.split(":")[0].strip() for line in lines[i + 1:]]
    assert keys == cli._INFO_KEYS


def test_float_format():
    assert cli._float(0.0078125) == "0.00781250"
    assert cli._float(float("nan")) == "nan"
    assert cli._float(float("-inf")) == "-inf"
    assert cli._line("  ", "k", "") == "  k:"
    assert cli._line("  ", "k", (0.5, 0.25, 1.0)) == "  k: 0.50000000 0.25000000 1.00000000"
