"""The high-level API: Model(path), logits, encode_images on images,
generate / generate_tokens, caption and vqa with OpenFlamingo's prompts and
post-processing, and `python -m flamingo caption`."""

import subprocess
import sys
from array import array
from pathlib import Path

import pytest

import flamingo
from conftest import ROOT, subprocess_env
from reference import Reference, rel_err

np = pytest.importorskip("numpy")

IMAGES = Path(ROOT) / "Tests" / "Fixtures" / "images"
EVAL = {"num_beams": 3, "length_penalty": 0.0}  # OpenFlamingo's evaluation settings


def image(name):
    p = IMAGES / name
    if not p.is_file():
        pytest.skip(f"{p} is missing")
    return p


@pytest.fixture
def fx(fixture_dir):
    with flamingo.Model(fixture_dir) as model:
        yield model, Reference(fixture_dir)


def ref_images(ref):
    """The reference's preprocessed images as numpy [3, S, S] arrays."""
    S = ref.image_size
    px = np.array(ref.pixels, dtype=np.float32).reshape(ref.n_images, 3, S, S)
    return [px[k] for k in range(ref.n_images)]


# ---- construction -----------------------------------------------------------------


def test_constructor(any_fixture_dir):
    m = flamingo.Model(any_fixture_dir)
    assert m.path == str(any_fixture_dir) and not m.closed
    m.close()
    with flamingo.Model(str(any_fixture_dir), backend="cpu", threads=2) as m2, \
            flamingo.Model.load(any_fixture_dir, "cpu", -1, 2) as m3:
        assert m2.info == m3.info
    with flamingo.Model(any_fixture_dir, threads=None, device_index=0) as m4:
        assert m4.info.architecture == "openflamingo"
    with pytest.raises(ValueError):
        flamingo.Model(any_fixture_dir, threads=-1)
    with pytest.raises(ValueError):
        flamingo.Model(any_fixture_dir, threads=1.5)
    with pytest.raises(ValueError):
        flamingo.Model(any_fixture_dir, backend="tpu")
    with pytest.raises(flamingo.IoError):
        flamingo.Model(Path(any_fixture_dir) / "missing")


# ---- logits and visual tokens -------------------------------------------------------


def test_logits_match_reference(fx):
    model, ref = fx
    out = model.logits(ref.ids, ref_images(ref))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (len(ref.ids), ref.vocab)
    assert rel_err(out.ravel().tolist(), ref.logits) <= 1e-4
    # Visual tokens as input give the same logits.
    visual = model.encode_images(ref_images(ref))
    assert np.array_equal(model.logits(ref.ids, list(visual)), out)
    assert np.array_equal(model.logits(np.array(ref.ids), [v.copy() for v in visual]), out)


def test_logits_image_kinds(fx):
    model, _ = fx
    path = image("exif1_40x24.jpg")
    ids = model.tokenize("<image>Output:a cat")
    want = model.logits(ids, [path])
    pixels = np.frombuffer(model.preprocess_image(path), dtype=np.float32).reshape(3, model.info.image_size, -1)
    for img in (str(path), path.read_bytes(), flamingo.Media.file(path), pixels):
        assert np.array_equal(model.logits(ids, [img]), want)
    # A text prompt is tokenized.
    assert np.array_equal(model.logits("<image>Output:a cat", [path]), want)
    # No image: cross-attention contributes nothing.
    assert model.logits("Output:", []).shape[0] == len(model.tokenize("Output:"))


def test_logits_equal_set_prompt(fx):
    model, _ = fx
    imgs = [image("rgb_37x53.png"), image("exif1_40x24.jpg")]
    prompt = "<image>Output:a photo<|endofchunk|>\n<image>Output:"
    with model.session() as s:
        last = s.set_prompt(prompt, imgs)
    # All-position and last-position evaluation may round differently.
    assert rel_err(model.logits(prompt, imgs)[-1].tolist(), last) <= 1e-5


def test_encode_images(fx):
    model, ref = fx
    info = model.info
    out = model.encode_images(ref_images(ref))
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (ref.n_images, info.num_latents, info.visual_dim)
    assert rel_err(out.ravel().tolist(), ref.resampler) <= 1e-4
    # The low-level form still returns array('f').
    low = model.encode_images(ref.pixels)
    assert isinstance(low, array) and np.array_equal(np.frombuffer(low, dtype=np.float32), out.ravel())
    path = image("exif1_40x24.jpg")
    one = model.encode_images(str(path))
    assert one.shape == (1, info.num_latents, info.visual_dim)
    both = model.encode_images([path, path.read_bytes()])
    assert np.array_equal(both[0], one[0]) and np.array_equal(both[1], one[0])
    with pytest.raises(TypeError):
        model.encode_images([object()])


def test_numpy_uint8_images(fx):
    model, _ = fx
    from reference import read

    g = read(IMAGES / "goldens.safetensors")
    t = g["exif1_40x24.jpg.decoded"]
    rgb = np.frombuffer(t.data.tobytes(), dtype=np.uint8).reshape(t.shape)
    want = model.encode_images([image("exif1_40x24.jpg")])
    assert np.array_equal(model.encode_images([rgb]), want)
    assert np.array_equal(model.encode_images(rgb), want)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=2)
    assert np.array_equal(model.encode_images([rgba]), want)  # opaque alpha
    gray = rgb[:, :, 0]
    assert model.encode_images([gray]).shape == want.shape
    with pytest.raises(ValueError):
        model.encode_images([rgb[:, :, :2]])


def test_pil_image_input(fx):
    Image = pytest.importorskip("PIL.Image")
    model, _ = fx
    path = image("rgb_37x53.png")
    with Image.open(path) as img:
        img.load()
        assert np.array_equal(model.encode_images([img]), model.encode_images([path]))
        assert model.caption(img) == model.caption(path)


# ---- generation ---------------------------------------------------------------------


def test_generate_tokens_defaults_are_greedy(fx):
    """generate/generate_tokens decode greedily unless asked (an instruct-tuned model's
    EOS can win OpenFlamingo's 3-beam, length-penalty-0 search at the first step);
    caption and vqa keep the evaluation settings (test_caption_and_vqa)."""
    model, _ = fx
    imgs = [image("exif1_40x24.jpg")]
    prompt = "<image>Output:"
    with model.session() as s:
        s.set_prompt(prompt, imgs, logits=False)
        want, _ = s.generate(20)
    assert model.generate_tokens(prompt, imgs) == want
    seen = []
    assert model.generate_tokens(prompt, imgs, stream=seen.append) == want == seen
    with model.session() as s:
        s.set_prompt(prompt, imgs, logits=False)
        beams, _ = s.generate(6, num_beams=3, length_penalty=0.0)
    assert model.generate_tokens(prompt, imgs, 6, **EVAL) == beams
    greedy = want[:6]
    assert model.generate_tokens(prompt, imgs, 6) == greedy
    # A true value from stream stops (greedy: as soon as the token is chosen).
    assert model.generate_tokens(prompt, imgs, 6, num_beams=1, stream=lambda t: True) == greedy[:1]


def test_generate_text_and_stream(fx):
    model, _ = fx
    imgs = [image("exif1_40x24.jpg")]
    prompt = "<image>Output:"
    tokens = model.generate_tokens(prompt, imgs)
    pieces = []
    text = model.generate(prompt, imgs, stream=pieces.append)
    assert text == "".join(pieces)
    assert all(pieces)
    assert text == model.generate(prompt, imgs)
    # The stream is the streaming detokenizer's output of the tokens.
    with model.detokenizer(skip_special=True) as d:
        assert text == "".join(d.push(t) for t in tokens) + d.finish()
    raw = model.generate(prompt, imgs, skip_special=False)
    with model.detokenizer() as d:
        assert raw == "".join(d.push(t) for t in tokens) + d.finish()
    # Options pass through.
    a = model.generate(prompt, imgs, 8, num_beams=1, do_sample=True, seed=3, top_k=10)
    assert a == model.generate(prompt, imgs, 8, num_beams=1, do_sample=True, seed=3, top_k=10)
    with pytest.raises(flamingo.InvalidArgumentError):
        model.generate(prompt, imgs, num_beams=0)
    with pytest.raises(flamingo.InvalidArgumentError):
        model.generate(prompt + "<image>", imgs)  # marker count


def test_generate_stream_exception_propagates(any_fixture_dir):
    class Boom(Exception):
        pass

    def stream(piece):
        raise Boom(piece)

    with flamingo.Model(any_fixture_dir) as model:
        with pytest.raises(Boom):
            model.generate("<image>Output:", [image("exif1_40x24.jpg")], num_beams=1, stream=stream)


# ---- OpenFlamingo prompts -------------------------------------------------------------


def test_prompt_formats():
    assert flamingo.caption_prompt() == "<image>Output:"
    assert flamingo.caption_prompt(["A cat.", "Two dogs."]) == \
        "<image>Output:A cat.<|endofchunk|>\n<image>Output:Two dogs.<|endofchunk|>\n<image>Output:"
    assert flamingo.vqa_prompt("What is it?") == "<image>Question:What is it? Short answer:"
    assert flamingo.vqa_prompt("Color?", [("Shape?", "round")]) == \
        "<image>Question:Shape? Short answer:round<|endofchunk|>\n<image>Question:Color? Short answer:"


def test_postprocessing():
    pc = flamingo.postprocess_caption
    assert pc(' A "cat" on a mat. Output: more') == "A cat on a mat."
    assert pc("\u3000x\x1c\n") == "x"  # str.strip() whitespace
    assert pc("Output") == ""
    pv = flamingo.postprocess_vqa
    assert pv(" red, blue Question: x") == "red"
    assert pv("yes Short answer: no") == "yes"
    assert pv("two Answer: three, four") == "two"
    assert pv("a,b, c") == "a,b"


def test_caption_and_vqa(fx):
    model, _ = fx
    q, s1 = image("exif1_40x24.jpg"), image("rgb_48x48.png")
    raw = model.generate("<image>Output:", [q], 20, **EVAL)
    assert model.caption(q) == flamingo.postprocess_caption(raw)
    shots = [(s1, "A square.")]
    raw = model.generate(flamingo.caption_prompt(["A square."]), [s1, q], **EVAL)
    assert model.caption(q, shots=shots) == flamingo.postprocess_caption(raw)
    raw = model.generate(flamingo.vqa_prompt("What is it?"), [q], 5, **EVAL)
    assert model.vqa(q, "What is it?") == flamingo.postprocess_vqa(raw)
    raw = model.generate(flamingo.vqa_prompt("What is it?", [("Shape?", "square")]), [s1, q], 5, **EVAL)
    assert model.vqa(q, "What is it?", shots=[(s1, "Shape?", "square")]) == flamingo.postprocess_vqa(raw)
    pieces = []
    model.caption(q, stream=pieces.append)
    assert "".join(pieces) == model.generate("<image>Output:", [q], **EVAL)


# ---- python -m flamingo caption ----------------------------------------------------------


def run(*args):
    return subprocess.run([sys.executable, "-m", "flamingo", *map(str, args)], capture_output=True,
                          env=subprocess_env())


def test_cli_caption(fixture_dir):
    q, s1 = image("exif1_40x24.jpg"), image("rgb_48x48.png")
    with flamingo.Model(fixture_dir) as model:
        zero = model.caption(q)
        one = model.caption(q, shots=[(s1, "A red=square.")])
    out = run("caption", fixture_dir, q)
    assert out.returncode == 0, out.stderr
    assert out.stdout == (zero + "\n").encode("utf-8", "surrogateescape")
    out = run("caption", fixture_dir, q, f"{s1}=A red=square.")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (one + "\n").encode("utf-8", "surrogateescape")


def test_cli_caption_errors(any_fixture_dir, tmp_path):
    out = run("caption", any_fixture_dir, tmp_path / "missing.jpg")
    assert out.returncode == 1 and out.stdout == b""
    assert out.stderr.decode().startswith("error: " + flamingo.status_string(flamingo.Status.IO) + ": ")
    out = run("caption", any_fixture_dir, image("bad/truncated.jpg"))
    assert out.returncode == 1
    assert out.stderr.decode().startswith("error: " + flamingo.status_string(flamingo.Status.INVALID_FORMAT))
    assert run("caption", any_fixture_dir).returncode == 2
    assert run("caption", any_fixture_dir, image("exif1_40x24.jpg"), "no-equals-sign").returncode == 2
