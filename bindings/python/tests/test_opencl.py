"""The OpenCL backend through the C ABI: every fixture model gives the CPU
backend's logits (within 1e-3 relative) and greedy tokens. Skipped when no
OpenCL device exists (CI runs it on PoCL)."""

import pytest

import flamingo
from reference import Reference, rel_err

OPENCL = [d for d in flamingo.devices() if d.backend == flamingo.Backend.OPENCL]
pytestmark = pytest.mark.skipif(not OPENCL, reason="no OpenCL device")


def run(model, r, ref):
    F = r.image_floats
    pixels = [flamingo.Media.pixels(r.pixels[k * F:(k + 1) * F]) for k in range(r.n_images)]
    with model.session() as s:
        last = s.set_prompt(ref["prompt"], pixels)
        tokens, _ = s.generate(8, stop_at_endofchunk=False)
    return last, tokens


def test_opencl_matches_cpu(fixture_dir):
    import json
    ref = json.loads((fixture_dir / "reference.json").read_text(encoding="utf-8"))
    r = Reference(fixture_dir)
    with flamingo.Model(fixture_dir) as cpu, flamingo.Model(fixture_dir, backend="opencl") as dev:
        a_logits, a_tokens = run(cpu, r, ref)
        b_logits, b_tokens = run(dev, r, ref)
    assert rel_err(b_logits, a_logits) <= 1e-3
    assert b_tokens == a_tokens


def test_opencl_device_by_index(any_fixture_dir):
    index = OPENCL[0].index
    with flamingo.Model.load(any_fixture_dir, backend="opencl", device_index=index) as m:
        assert len(m.tokenize("a")) >= 1


def test_opencl_bad_device(any_fixture_dir):
    with pytest.raises(flamingo.InvalidArgumentError):
        flamingo.Model.load(any_fixture_dir, backend="opencl", device_index=0)  # the CPU backend's device
    with pytest.raises(flamingo.NotFoundError):
        flamingo.Model.load(any_fixture_dir, backend="opencl", device_index=len(flamingo.devices()))
