"""Media, interleaved prompts (flamingo_session_set_prompt), image
preprocessing and batch generation."""

import ctypes
import json
from array import array
from pathlib import Path

import pytest

import flamingo
from flamingo import _lib
from conftest import ROOT
from reference import Reference, read, rel_err

IMAGES = Path(ROOT) / "Tests" / "Fixtures" / "images"
GOLDENS = IMAGES / "goldens.safetensors"


def image(name):
    p = IMAGES / name
    if not p.is_file():
        pytest.skip(f"{p} is missing")
    return p


@pytest.fixture(scope="module")
def goldens():
    if not GOLDENS.is_file():
        pytest.skip(f"{GOLDENS} is missing")
    return read(GOLDENS)


@pytest.fixture
def fx(fixture_dir):
    ref = json.loads((fixture_dir / "reference.json").read_text(encoding="utf-8"))
    with flamingo.Model(fixture_dir) as model:
        yield model, ref


def decoded(goldens, name):
    """Pillow's decoded RGB pixels of an image: (bytes, width, height)."""
    t = goldens[f"{name}.decoded"]
    h, w, c = t.shape
    assert c == 3
    return t.data.tobytes(), w, h


PROMPT = "<image>Output:a photo<|endofchunk|>\n<image>Output:"


# ---- preprocessing ------------------------------------------------------------


@pytest.mark.parametrize("name", ["exif1_40x24.jpg", "rgb_37x53.png", "exif6_40x24.jpg", "rgba_80x64.png"])
def test_preprocess_kinds_agree(fx, goldens, name):
    model, _ = fx
    path = image(name)
    a = model.preprocess_image(str(path))
    assert isinstance(a, array) and len(a) == 3 * model.info.image_size ** 2
    assert model.preprocess_image(path) == a
    assert model.preprocess_image(path.read_bytes()) == a
    assert model.preprocess_image(flamingo.Media.encoded(bytearray(path.read_bytes()))) == a
    if f"{name}.decoded" in goldens:
        data, w, h = decoded(goldens, name)
        assert model.preprocess_image(flamingo.Media.rgb(data, w, h)) == a


def test_preprocess_matches_pillow_goldens(fx, goldens):
    """The normalised goldens at the fixtures' size (32) where they exist."""
    model, _ = fx
    S = model.info.image_size
    for key, t in goldens.items():
        if key.endswith(f"@{S}.normalized"):
            name = key.split("@")[0]
            got = model.preprocess_image(image(name))
            assert rel_err(got, t.data) <= 1e-5, name


def test_preprocess_rgba_buffer(fx, goldens):
    model, _ = fx
    t = goldens["rgba_80x64.png.raw"]
    h, w, c = t.shape
    assert model.preprocess_image(flamingo.Media.rgb(t.data.tobytes(), w, h, 4)) == \
        model.preprocess_image(image("rgba_80x64.png"))


def test_preprocess_numpy(fx, goldens):
    np = pytest.importorskip("numpy")
    model, _ = fx
    data, w, h = decoded(goldens, "exif1_40x24.jpg")
    a = np.frombuffer(data, dtype=np.uint8).reshape(h, w, 3)
    want = model.preprocess_image(image("exif1_40x24.jpg"))
    assert model.preprocess_image(a) == want
    assert model.preprocess_image(np.asfortranarray(a)) == want  # not C-contiguous
    assert model.preprocess_image(a[::-1][::-1]) == want


BAD = {
    "truncated.jpg": flamingo.InvalidFormatError,
    "truncated.png": flamingo.InvalidFormatError,
    "truncated_progressive.jpg": flamingo.InvalidFormatError,
    "no_eoi.jpg": flamingo.InvalidFormatError,
    "bad_crc.png": flamingo.InvalidFormatError,
    "bad_idat.png": flamingo.InvalidFormatError,
    "bad_huffman.jpg": flamingo.InvalidFormatError,
    "empty.jpg": flamingo.InvalidFormatError,
    "garbage.bin": flamingo.InvalidFormatError,
    "text.jpg": flamingo.InvalidFormatError,
    "signature_only.png": flamingo.InvalidFormatError,
    "zero_height.jpg": flamingo.InvalidFormatError,
    "zero_width.png": flamingo.InvalidFormatError,
    "huge.jpg": flamingo.UnsupportedError,
    "huge.png": flamingo.UnsupportedError,
    "image.gif": flamingo.UnsupportedError,
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_images(any_fixture_dir, name):
    path = image("bad/" + name)
    with flamingo.Model(any_fixture_dir) as model:
        for item in (str(path), path.read_bytes()):
            # ENCODED with size 0 is a bad item field (INVALID_ARGUMENT).
            want = (flamingo.InvalidArgumentError, BAD[name]) if item == b"" else BAD[name]
            with pytest.raises(want) as e:
                model.preprocess_image(item)
            assert e.value.message
        with model.session() as s:
            s.set_prompt("<image>Output:", [image("exif1_40x24.jpg")], logits=False)
            n = len(s)
            for item in (str(path), path.read_bytes()):
                want = (flamingo.InvalidArgumentError, BAD[name]) if item == b"" else BAD[name]
                with pytest.raises(want):
                    s.set_prompt(PROMPT, [image("rgb_48x48.png"), item])
                assert len(s) == n  # unchanged


def test_preprocess_errors(any_fixture_dir, tmp_path):
    lib = _lib.lib()
    with flamingo.Model(any_fixture_dir) as model:
        S = model.info.image_size
        with pytest.raises(flamingo.IoError):
            model.preprocess_image(str(tmp_path / "missing.jpg"))
        with pytest.raises(flamingo.InvalidArgumentError):
            model.preprocess_image(flamingo.Media.rgb(b"\0" * 11, 2, 2))  # 12 bytes needed
        with pytest.raises(flamingo.InvalidArgumentError):
            model.preprocess_image(flamingo.Media.rgb(b"\0" * 8, 2, 2, 2))  # 2 channels
        with pytest.raises(flamingo.InvalidArgumentError):
            model.preprocess_image(flamingo.Media.pixels([0.0] * (3 * S * S)))  # not an image item
        with pytest.raises(TypeError):
            model.preprocess_image(3.5)
        # Raw: BUFFER_TOO_SMALL leaves the output alone; NULL pointers.
        m = _lib.flamingo_media(struct_size=ctypes.sizeof(_lib.flamingo_media), kind=_lib.FLAMINGO_MEDIA_FILE,
                                path=str(image("exif1_40x24.jpg")).encode())
        n = 3 * S * S
        out = (ctypes.c_float * n)(*([5.0] * n))
        assert lib.flamingo_model_preprocess_image(model.handle, ctypes.byref(m), out, n - 1) == \
            flamingo.Status.BUFFER_TOO_SMALL
        assert list(out) == [5.0] * n
        assert lib.flamingo_model_preprocess_image(None, ctypes.byref(m), out, n) == flamingo.Status.INVALID_ARGUMENT
        assert lib.flamingo_model_preprocess_image(model.handle, None, out, n) == flamingo.Status.INVALID_ARGUMENT
        assert lib.flamingo_model_preprocess_image(model.handle, ctypes.byref(m), None, n) == \
            flamingo.Status.INVALID_ARGUMENT
        m.struct_size = 8
        assert lib.flamingo_model_preprocess_image(model.handle, ctypes.byref(m), out, n) == \
            flamingo.Status.INVALID_ARGUMENT
        m.struct_size = ctypes.sizeof(m)
        m.kind = 99
        assert lib.flamingo_model_preprocess_image(model.handle, ctypes.byref(m), out, n) == \
            flamingo.Status.INVALID_ARGUMENT
        assert list(out) == [5.0] * n


def test_pil_images(any_fixture_dir):
    Image = pytest.importorskip("PIL.Image")
    with flamingo.Model(any_fixture_dir) as model:
        for name in ("rgb_37x53.png", "rgba_80x64.png", "gray_120x90.png", "palette_90x70.png", "la_50x70.png",
                     "exif1_40x24.jpg", "bilevel_64x40.png", "png16_gray_50x40.png"):
            path = image(name)
            with Image.open(path) as img:
                img.load()
                got = model.preprocess_image(img)
            # EXIF orientation 1 only: a PIL image is used as it is.
            assert rel_err(got, model.preprocess_image(path)) <= 1e-6, name
        with Image.open(image("cmyk_64x48.jpg")) as img:  # converted to RGB first: close, not exact
            assert rel_err(model.preprocess_image(img), model.preprocess_image(image("cmyk_64x48.jpg"))) < 1


# ---- set_prompt -----------------------------------------------------------------


def media_kinds(model, goldens, name):
    """The same image as each of the five media kinds."""
    path = image(name)
    data, w, h = decoded(goldens, name)
    pixels = model.preprocess_image(path)
    visual = model.encode_images(pixels, 1)
    return {
        "file": flamingo.Media.file(path),
        "encoded": flamingo.Media.encoded(path.read_bytes()),
        "rgb": flamingo.Media.rgb(data, w, h),
        "pixels": flamingo.Media.pixels(pixels),
        "visual_tokens": flamingo.Media.visual_tokens(visual),
    }


def test_set_prompt_kinds_give_identical_logits(fx, goldens):
    model, _ = fx
    a = media_kinds(model, goldens, "rgb_37x53.png")
    b = media_kinds(model, goldens, "exif1_40x24.jpg")
    results = {}
    for kind in a:
        with model.session() as s:
            results[kind] = (s.set_prompt(PROMPT, [a[kind], b[kind]]), len(s))
    want = results["file"]
    for kind, got in results.items():
        assert got == want, kind
    # Mixed kinds, too.
    with model.session() as s:
        assert s.set_prompt(PROMPT, [a["rgb"], b["visual_tokens"]]) == want[0]


def test_set_prompt_matches_reference(fx):
    """The reference prompt with its preprocessed pixels gives the reference
    logits and greedy continuation."""
    model, ref = fx
    r = Reference(Path(model.path))
    F = r.image_floats
    pixels = [flamingo.Media.pixels(r.pixels[k * F:(k + 1) * F]) for k in range(r.n_images)]
    with model.session() as s:
        last = s.set_prompt(ref["prompt"], pixels)
        assert len(s) == len(r.ids)
        assert rel_err(last, r.logits_row(len(r.ids) - 1)) <= 1e-4
        assert s.generate(len(r.greedy))[0] == r.greedy
        # set_prompt replaces the sequence.
        s.set_prompt(ref["prompt"], pixels, logits=False)
        assert len(s) == len(r.ids)


def test_set_prompt_marker_count_mismatch(fx):
    model, ref = fx
    img = image("exif1_40x24.jpg")
    with model.session() as s:
        s.set_prompt("<image>Output:", [img], logits=False)
        n = len(s)
        for prompt, k in ((PROMPT, 1), (PROMPT, 3), ("no marker", 1), ("<image>", 0)):
            with pytest.raises(flamingo.InvalidArgumentError) as e:
                s.set_prompt(prompt, [img] * k)
            assert e.value.message
            assert len(s) == n
        if "extra_markers" in ref:  # three markers
            with pytest.raises(flamingo.InvalidArgumentError):
                s.set_prompt(ref["extra_markers"]["prompt"], [img, img])
        s.set_prompt("no image at all", [])
        assert len(s) > 0


def test_set_prompt_errors(any_fixture_dir):
    lib = _lib.lib()
    with flamingo.Model(any_fixture_dir) as model:
        info = model.info
        img = image("exif1_40x24.jpg")
        with model.session(n_ctx=4) as s:
            with pytest.raises(flamingo.InvalidArgumentError):  # longer than the context
                s.set_prompt("<image>Output: a rather long prompt that does not fit", [img])
            assert len(s) == 0
        with model.session() as s:
            with pytest.raises(flamingo.InvalidArgumentError):
                s.set_prompt(b"<image>\xff\xfe", [img])  # invalid UTF-8
            with pytest.raises(ValueError):
                s.set_prompt("a\0b", [])
            with pytest.raises(flamingo.InvalidArgumentError):
                s.set_prompt("<image>", [flamingo.Media.pixels([0.0] * 5)])
            with pytest.raises(flamingo.InvalidArgumentError):
                s.set_prompt("<image>", [flamingo.Media.visual_tokens([0.0] * 5)])
            bad = [float("nan")] * (3 * info.image_size ** 2)
            with pytest.raises(flamingo.InvalidArgumentError):
                s.set_prompt("<image>", [flamingo.Media.pixels(bad)])
            with pytest.raises(flamingo.IoError):
                s.set_prompt("<image>", ["/nonexistent/image.jpg"])
            assert len(s) == 0
            # Raw: NULL session / prompt, NULL media with n_media > 0, BUFFER_TOO_SMALL.
            V = info.vocab_size
            logits = (ctypes.c_float * V)(*([2.0] * V))
            assert lib.flamingo_session_set_prompt(None, b"x", None, 0, logits, V) == flamingo.Status.INVALID_ARGUMENT
            assert lib.flamingo_session_set_prompt(s.handle, None, None, 0, logits, V) == \
                flamingo.Status.INVALID_ARGUMENT
            assert lib.flamingo_session_set_prompt(s.handle, b"<image>", None, 1, logits, V) == \
                flamingo.Status.INVALID_ARGUMENT
            assert lib.flamingo_session_set_prompt(s.handle, b"text", None, 0, logits, V - 1) == \
                flamingo.Status.BUFFER_TOO_SMALL
            assert list(logits) == [2.0] * V and len(s) == 0
            assert lib.flamingo_session_set_prompt(s.handle, b"text", None, 0, logits, V) == flamingo.Status.OK
            assert len(s) > 0


def test_media_stride_is_struct_size(fx):
    """The media array is read with stride media[0].struct_size: a newer
    caller's larger struct works, the tail is not read."""
    model, _ = fx
    lib = _lib.lib()
    V = model.info.vocab_size
    paths = [str(image("rgb_37x53.png")).encode(), str(image("exif1_40x24.jpg")).encode()]

    class Bigger(ctypes.Structure):
        _fields_ = [("m", _lib.flamingo_media), ("tail", ctypes.c_ubyte * 40)]

    big = (Bigger * 2)()
    for k in range(2):
        big[k].m.struct_size = ctypes.sizeof(Bigger)
        big[k].m.kind = _lib.FLAMINGO_MEDIA_FILE
        big[k].m.path = paths[k]
        ctypes.memset(ctypes.addressof(big[k].tail), 0xA5, 40)
    plain = (_lib.flamingo_media * 2)()
    for k in range(2):
        plain[k].struct_size = ctypes.sizeof(_lib.flamingo_media)
        plain[k].kind = _lib.FLAMINGO_MEDIA_FILE
        plain[k].path = paths[k]
    la, lb = (ctypes.c_float * V)(), (ctypes.c_float * V)()
    with model.session() as a, model.session() as b:
        assert lib.flamingo_session_set_prompt(a.handle, PROMPT.encode(), plain, 2, la, V) == 0
        assert lib.flamingo_session_set_prompt(b.handle, PROMPT.encode(), big, 2, lb, V) == 0, flamingo.last_error()
        assert list(la) == list(lb)
        # A struct_size below the first version is rejected.
        plain[0].struct_size = 8
        assert lib.flamingo_session_set_prompt(a.handle, PROMPT.encode(), plain, 2, la, V) == \
            flamingo.Status.INVALID_ARGUMENT


# ---- batch generation -------------------------------------------------------------


def test_batch_generate_equals_alone(fx):
    model, ref = fx
    prompts = [(PROMPT, [image("rgb_37x53.png"), image("exif1_40x24.jpg")]),
               ("<image>Output:", [image("exif6_40x24.jpg")]),
               ("<image>Question:What is it? Short answer:", [image("rgb_48x48.png")])]
    for options in (dict(), dict(num_beams=3, length_penalty=0.0), dict(do_sample=True, seed=7, top_k=5)):
        alone = []
        for i, (p, imgs) in enumerate(prompts):
            with model.session() as s:
                s.set_prompt(p, imgs, logits=False)
                extra = dict(options, seed=options["seed"] + i) if "seed" in options else options
                alone.append(s.generate(10, stop_at_endofchunk=False, stop_at_eos=False, **extra))
        sessions = [model.session() for _ in prompts]
        for s, (p, imgs) in zip(sessions, prompts):
            s.set_prompt(p, imgs, logits=False)
        lengths = [len(s) for s in sessions]
        got = flamingo.batch_generate(sessions, 10, stop_at_endofchunk=False, stop_at_eos=False, **options)
        assert got == alone, options
        assert [len(s) for s in sessions] == [n + len(t) for n, (t, _) in zip(lengths, got)]
        for s in sessions:
            s.close()


def test_batch_generate_matches_reference(fx):
    """The reference's left-padded batch (8 greedy steps per row)."""
    model, ref = fx
    b = ref["batch"]
    t = read(Path(model.path) / "reference.safetensors")
    px = t["batch.pixels"]  # [rows][max images][1][3][S][S]
    rows, per_row = px.shape[0], px.shape[1]
    F = 3 * px.shape[-1] * px.shape[-2]
    sessions = []
    for i, prompt in enumerate(b["prompts"]):
        imgs = [flamingo.Media.pixels(px.data[(i * per_row + k) * F:(i * per_row + k + 1) * F])
                for k in range(b["images_per_row"][i])]
        s = model.session()
        s.set_prompt(prompt, imgs, logits=False)
        sessions.append(s)
    got = flamingo.batch_generate(sessions, len(b["greedy_ids"][0]), stop_at_endofchunk=False, stop_at_eos=False)
    assert [tokens for tokens, _ in got] == b["greedy_ids"]
    assert all(r == flamingo.StopReason.MAX_TOKENS for _, r in got)


def test_batch_generate_errors(any_fixture_dir):
    lib = _lib.lib()
    with flamingo.Model(any_fixture_dir) as model, model.session() as a, model.session() as b:
        a.set_prompt("<image>Output:", [image("exif1_40x24.jpg")], logits=False)
        n = len(a)
        with pytest.raises(flamingo.InvalidArgumentError):  # b has nothing evaluated
            flamingo.batch_generate([a, b], 4)
        assert len(a) == n and len(b) == 0
        with pytest.raises(ValueError):
            flamingo.batch_generate([a, a], 4)
        with pytest.raises(ValueError):
            flamingo.batch_generate([], 4)
        with pytest.raises(TypeError):
            flamingo.batch_generate([a], 4, callback=print)
        with pytest.raises(flamingo.InvalidArgumentError):
            flamingo.batch_generate([a], 4, num_beams=0)
        # Raw: the same session twice, n_sessions 0, NULL pointers, small capacity.
        p = _lib.flamingo_generate_params()
        lib.flamingo_generate_default_params(ctypes.byref(p), ctypes.sizeof(p))
        p.max_new_tokens = 4
        out = (ctypes.c_int32 * 32)(*([-3] * 32))
        counts = (ctypes.c_size_t * 2)(99, 99)
        twice = (_lib.flamingo_session_p * 2)(a.handle, a.handle)
        for args in ((twice, 2, ctypes.byref(p), out, 4, counts, None),
                     (twice, 0, ctypes.byref(p), out, 4, counts, None),
                     (None, 1, ctypes.byref(p), out, 4, counts, None),
                     (twice, 1, ctypes.byref(p), None, 4, counts, None),
                     (twice, 1, ctypes.byref(p), out, 4, None, None)):
            assert lib.flamingo_batch_generate(*args) == flamingo.Status.INVALID_ARGUMENT
        assert lib.flamingo_batch_generate(twice, 1, ctypes.byref(p), out, 3, counts, None) == \
            flamingo.Status.BUFFER_TOO_SMALL
        assert list(out) == [-3] * 32 and list(counts) == [99, 99] and len(a) == n
        assert lib.flamingo_batch_generate(twice, 1, None, out, 20, counts, None) == flamingo.Status.OK
        assert 1 <= counts[0] <= 20 and len(a) == n + counts[0]
