"""Images, sessions and generation, against the PyTorch reference of each
fixture (Tests/Fixtures/<name>/reference.safetensors, read with the
standard-library reader in reference.py)."""

import copy
import ctypes
import pickle
import threading
from array import array

import pytest

import flamingo
from flamingo import _lib
from reference import Reference, rel_err

TOL = 1e-4


@pytest.fixture
def fx(fixture_dir):
    """(model, reference) of one fixture."""
    ref = Reference(fixture_dir)
    with flamingo.Model.load(fixture_dir) as model:
        yield model, ref


def prompt_session(model, ref, n_ctx=0):
    s = model.session(n_ctx)
    s.set_images(ref.pixels)
    assert s.eval(ref.ids, logits=False) is None
    return s


# ---- model info and image encoding ------------------------------------------


def test_info_visual_dim(fx):
    model, ref = fx
    info = model.info
    assert info.visual_dim == ref.dim > 0
    assert info.num_latents == ref.latents
    assert info.vocab_size == ref.vocab
    assert info.image_size == ref.image_size


def test_encode_images_matches_reference(fx):
    model, ref = fx
    out = model.encode_images(ref.pixels, ref.n_images)
    assert isinstance(out, array) and out.typecode == "f"
    assert len(out) == ref.n_images * ref.latents * ref.dim
    assert rel_err(out, ref.resampler) <= TOL
    # n_images inferred, and a single image at a time.
    assert model.encode_images(ref.pixels) == out
    per = ref.latents * ref.dim
    for k in range(ref.n_images):
        one = model.encode_images(ref.pixels[k * ref.image_floats:(k + 1) * ref.image_floats], 1)
        assert rel_err(one, ref.resampler[k * per:(k + 1) * per]) <= TOL


def test_encode_images_accepts_buffers(fx):
    model, ref = fx
    want = model.encode_images(ref.pixels, ref.n_images)
    assert model.encode_images(memoryview(ref.pixels), ref.n_images) == want
    assert model.encode_images(list(ref.pixels), ref.n_images) == want
    assert model.encode_images(array("d", ref.pixels), ref.n_images) == want
    ro = memoryview(ref.pixels.tobytes()).cast("f")  # read-only buffer
    assert model.encode_images(ro, ref.n_images) == want


def test_numpy_inputs(fx):
    np = pytest.importorskip("numpy")
    model, ref = fx
    want = model.encode_images(ref.pixels, ref.n_images)
    s = ref.image_size
    px = np.array(ref.pixels, dtype=np.float32).reshape(ref.n_images, 3, s, s)
    assert model.encode_images(px, ref.n_images) == want
    assert model.encode_images(px.astype(np.float64)) == want
    # A non-contiguous view is read in C order.
    twice = np.repeat(px, 2, axis=3)[..., ::2]
    assert not twice.flags.c_contiguous
    assert model.encode_images(twice) == want
    visual = np.frombuffer(want, dtype=np.float32)
    with model.session() as a, model.session() as b:
        a.set_media(visual)
        b.set_media(want)
        ids = np.array(ref.ids, dtype=np.int64)
        assert a.eval(ids, all_logits=True) == b.eval(np.array(ref.ids, dtype=np.int32), all_logits=True)


def test_encode_images_errors(fx):
    model, ref = fx
    with pytest.raises(ValueError):
        model.encode_images(ref.pixels, ref.n_images + 1)  # length mismatch, caught before the call
    with pytest.raises(ValueError):
        model.encode_images(ref.pixels[:-1])  # not a whole number of images
    with pytest.raises(flamingo.InvalidArgumentError) as e:
        model.encode_images([], 0)  # n_images 0, refused by the library
    assert e.value.message
    bad = array("f", ref.pixels)
    bad[5] = float("nan")
    with pytest.raises(flamingo.InvalidArgumentError):
        model.encode_images(bad)
    with pytest.raises(TypeError):
        model.encode_images(3.0)
    # BUFFER_TOO_SMALL through the raw declaration; `out` is left alone.
    n = ref.n_images * ref.latents * ref.dim
    out = (ctypes.c_float * n)(*([7.0] * n))
    pixels = (ctypes.c_float * len(ref.pixels))(*ref.pixels)
    st = _lib.lib().flamingo_model_encode_images(model.handle, pixels, ref.n_images, out, n - 1)
    assert st == flamingo.Status.BUFFER_TOO_SMALL and flamingo.last_error()
    assert list(out) == [7.0] * n


# ---- evaluation -------------------------------------------------------------


def test_eval_all_logits(fx):
    model, ref = fx
    with model.session() as s:
        assert len(s) == 0
        s.set_images(ref.pixels, ref.n_images)
        logits = s.eval(ref.ids, all_logits=True)
        assert isinstance(logits, array) and logits.typecode == "f"
        assert len(logits) == len(ref.ids) * ref.vocab
        assert rel_err(logits, ref.logits) <= TOL
        assert len(s) == len(ref.ids)


def test_eval_last_logits(fx):
    model, ref = fx
    with model.session() as s:
        s.set_images(ref.pixels)
        last = s.eval(ref.ids)
        assert len(last) == ref.vocab
        assert rel_err(last, ref.logits_row(len(ref.ids) - 1)) <= TOL


def test_eval_in_pieces(fx):
    model, ref = fx
    k = len(ref.ids) // 2
    with model.session() as s:
        s.set_images(ref.pixels)
        a = s.eval(ref.ids[:k], all_logits=True)
        b = s.eval(array("i", ref.ids[k:]), all_logits=True)
        assert rel_err(a + b, ref.logits) <= TOL


def test_set_media_equals_set_images(fx):
    model, ref = fx
    visual = model.encode_images(ref.pixels)
    with model.session() as a, model.session() as b:
        a.set_images(ref.pixels)
        b.set_media(visual, ref.n_images)
        la = a.eval(ref.ids, all_logits=True)
        lb = b.eval(ref.ids, all_logits=True)
        assert rel_err(lb, la) <= 1e-6
        assert rel_err(lb, ref.logits) <= TOL
    # set_media copies; an empty buffer / None removes the media.
    with model.session() as s:
        s.set_media(visual)
        for i in range(len(visual)):
            visual[i] = 1e6
        assert rel_err(s.eval(ref.ids, all_logits=True), ref.logits) <= TOL
        s.set_media(None)
        s.set_media([])
    with pytest.raises(ValueError):
        model.session().set_media(visual[:-1])


# ---- generation -------------------------------------------------------------


def test_greedy_generate(fx):
    model, ref = fx
    with prompt_session(model, ref) as s:
        seen = []
        tokens, reason = s.generate(max_new_tokens=len(ref.greedy), stop_at_endofchunk=True,
                                    callback=seen.append)
        assert tokens == ref.greedy
        assert reason == flamingo.StopReason.MAX_TOKENS and isinstance(reason, flamingo.StopReason)
        assert seen == tokens
        assert len(s) == len(ref.ids) + len(tokens)


def test_generate_defaults_continue_greedily(fx):
    model, ref = fx
    with prompt_session(model, ref) as s:
        tokens, reason = s.generate()
        assert 1 <= len(tokens) <= 20
        assert tokens[:len(ref.greedy)] == ref.greedy[:len(tokens)]
        want = flamingo.StopReason.MAX_TOKENS if len(tokens) == 20 else flamingo.StopReason.TOKEN
        assert reason == want


def test_generate_twice_continues(fx):
    model, ref = fx
    h = len(ref.greedy) // 2
    with prompt_session(model, ref) as s:
        a, _ = s.generate(h)
        b, _ = s.generate(len(ref.greedy) - h)
        assert a + b == ref.greedy


@pytest.mark.parametrize("stop_after", [1, 3])
def test_callback_cancels(fx, stop_after):
    model, ref = fx
    with prompt_session(model, ref) as s:
        seen = []

        def cb(token):
            seen.append(token)
            return len(seen) >= stop_after

        tokens, reason = s.generate(len(ref.greedy), callback=cb)
        assert reason == flamingo.StopReason.CANCELLED
        assert tokens == seen == ref.greedy[:stop_after]
        assert len(s) == len(ref.ids) + stop_after


def test_callback_exception_is_reraised(fx):
    model, ref = fx

    class Boom(Exception):
        pass

    def cb(token):
        raise Boom(token)

    with prompt_session(model, ref) as s:
        with pytest.raises(Boom) as e:
            s.generate(len(ref.greedy), callback=cb)
        assert e.value.args == (ref.greedy[0],)
        assert len(s) == len(ref.ids) + 1
        with pytest.raises(TypeError):
            s.generate(4, callback=42)


def test_session_cannot_be_reentered_from_callback(fx):
    model, ref = fx
    with prompt_session(model, ref) as s:
        with pytest.raises(RuntimeError):
            s.generate(4, callback=lambda t: len(s))
        assert len(s) == len(ref.ids) + 1  # the first token was kept


REFERENCE_CASES = [
    # (tensor, prompt tensor or None for the main prompt, generate options)
    ("beam3_lp0.ids", None, dict(num_beams=3, length_penalty=0.0)),
    ("beam3_lp1.ids", None, dict(num_beams=3, length_penalty=1.0)),
    ("greedy_nr2.ids", None, dict(no_repeat_ngram_size=2)),
    ("greedy_rp15.ids", None, dict(repetition_penalty=1.5)),
    ("stop.greedy.ids", "stop.input_ids", dict()),
    ("stop.beam3_lp0.ids", "stop.input_ids", dict(num_beams=3, length_penalty=0.0)),
    ("stop.beam3_lp1.ids", "stop.input_ids", dict(num_beams=3, length_penalty=1.0)),
]


@pytest.mark.parametrize("key,prompt_key,options", REFERENCE_CASES, ids=[c[0] for c in REFERENCE_CASES])
def test_generate_reference_cases(fx, key, prompt_key, options):
    """Beam search, no_repeat_ngram_size, repetition_penalty and stopping at
    <|endofchunk|>, as the reference (max_new_tokens 8)."""
    model, ref = fx
    if key not in ref.optional or (prompt_key and prompt_key not in ref.optional):
        pytest.skip(f"the fixture has no {key}")
    want = ref.optional[key]
    prompt = ref.optional[prompt_key] if prompt_key else ref.ids
    info = model.info
    with model.session() as s:
        s.set_images(ref.pixels)
        s.eval(prompt, logits=False)
        seen = []
        tokens, reason = s.generate(8, stop_at_endofchunk=True, callback=seen.append, **options)
        assert tokens == want
        assert seen == tokens
        stopped = want[-1] in (info.endofchunk_token_id, info.eos_token_id)
        assert reason == (flamingo.StopReason.TOKEN if stopped else flamingo.StopReason.MAX_TOKENS)
        assert len(s) == len(prompt) + len(want)


def test_sampling_is_seeded(fx):
    model, ref = fx
    with prompt_session(model, ref) as s:
        kw = dict(do_sample=True, temperature=0.8, top_k=20, top_p=0.95, seed=2**64 - 1)
        with s.copy() as t:
            a, _ = s.generate(8, **kw)
            b, _ = t.generate(8, **kw)
        assert a == b
        assert all(0 <= x < ref.vocab for x in a)
        # The other options are accepted.
        with prompt_session(model, ref) as u:
            u.generate(6, min_new_tokens=2, no_repeat_ngram_size=2, repetition_penalty=1.2, early_stopping=True,
                       stop_at_eos=False)


# ---- copy, truncate, lifetime -----------------------------------------------


def test_copy_is_independent(fx):
    model, ref = fx
    L, G = len(ref.ids), len(ref.greedy)
    with prompt_session(model, ref) as s:
        c = s.copy()
        assert len(c) == L
        assert c.generate(G)[0] == ref.greedy
        assert len(c) == L + G and len(s) == L
        d = copy.copy(s)
        assert s.generate(G)[0] == ref.greedy
        c.close()
    # The copy outlives the original.
    assert len(d) == L
    assert d.generate(G)[0] == ref.greedy
    e = copy.deepcopy(d)
    d.close()
    assert len(e) == L + G
    e.close()
    with pytest.raises(TypeError):
        pickle.dumps(e)


def test_truncate_and_reeval(fx):
    model, ref = fx
    L = len(ref.ids)
    with model.session() as s:
        s.set_images(ref.pixels)
        full = s.eval(ref.ids, all_logits=True)
        for k in (L - 1, L // 2, 0):
            s.truncate(k)
            assert len(s) == k
            again = s.eval(ref.ids[k:], all_logits=True)
            assert rel_err(again, full[k * ref.vocab:]) <= 1e-6
            assert rel_err(again, ref.logits_rows(k, L)) <= TOL
        assert s.generate(len(ref.greedy))[0] == ref.greedy
        s.truncate(L)
        with pytest.raises(flamingo.InvalidArgumentError):  # generation needs a new eval
            s.generate(4)
        with pytest.raises(flamingo.InvalidArgumentError):
            s.truncate(L + 1)
        with pytest.raises(ValueError):
            s.truncate(-1)
        assert len(s) == L


def test_session_outlives_model(fixture_dir):
    ref = Reference(fixture_dir)
    model = flamingo.Model.load(fixture_dir)
    s = model.session()
    model.close()
    s.set_images(ref.pixels)
    assert rel_err(s.eval(ref.ids, all_logits=True), ref.logits) <= TOL
    assert s.generate(len(ref.greedy))[0] == ref.greedy
    s.close()
    s.close()  # twice is fine
    assert s.closed


def test_closed_session(any_fixture_dir):
    with flamingo.Model.load(any_fixture_dir) as model:
        s = model.session()
        stale = s.handle
        with s:
            pass
        assert s.closed and "closed" in repr(s)
        for call in (lambda: len(s), lambda: s.eval([1]), lambda: s.generate(1), s.copy,
                     lambda: s.truncate(0), lambda: s.set_media(None), lambda: s.handle):
            with pytest.raises(ValueError):
                call()
        # The library itself rejects the freed handle (no crash).
        n = ctypes.c_size_t(12345)
        st = _lib.lib().flamingo_session_length(stale, ctypes.byref(n))
        assert st == flamingo.Status.INVALID_ARGUMENT and n.value == 12345
        out = ctypes.c_int32 * 4
        count = ctypes.c_size_t(777)
        st = _lib.lib().flamingo_session_generate(stale, None, out(), 4, ctypes.byref(count), None)
        assert st == flamingo.Status.INVALID_ARGUMENT and count.value == 777


def test_threads(any_fixture_dir):
    ref = Reference(any_fixture_dir)
    with flamingo.Model.load(any_fixture_dir) as model:
        results, errors = [], []

        def worker():
            try:
                with prompt_session(model, ref) as s:
                    results.append(s.generate(len(ref.greedy))[0])
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert results == [ref.greedy] * 4


def test_shared_session_calls_are_serialised(any_fixture_dir):
    ref = Reference(any_fixture_dir)
    with flamingo.Model.load(any_fixture_dir) as model, prompt_session(model, ref) as s:
        lengths, errors = [], []

        def worker():
            try:
                for _ in range(5):
                    lengths.append(len(s))
                    s.copy().close()
            except Exception as e:  # pragma: no cover
                errors.append(e)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and lengths == [len(ref.ids)] * 20


# ---- errors -------------------------------------------------------------------


def test_eval_errors_leave_the_session_unchanged(fx):
    model, ref = fx
    L = len(ref.ids)
    k = L // 2
    with model.session() as s:
        s.set_images(ref.pixels)
        s.eval(ref.ids[:k], logits=False)
        with pytest.raises(flamingo.InvalidArgumentError):
            s.eval([])
        for bad in (ref.vocab, -1, 2**31 - 1):
            with pytest.raises(flamingo.InvalidArgumentError) as e:
                s.eval([ref.ids[k], bad], all_logits=True)
            assert e.value.message
            assert len(s) == k
        with pytest.raises(ValueError):
            s.eval([2**31])
        # BUFFER_TOO_SMALL through the raw declaration; logits untouched.
        rest = ref.ids[k:]
        toks = (ctypes.c_int32 * len(rest))(*rest)
        n = len(rest) * ref.vocab
        buf = (ctypes.c_float * n)(*([3.0] * n))
        st = _lib.lib().flamingo_session_eval(s.handle, toks, len(rest), _lib.FLAMINGO_EVAL_ALL_LOGITS, buf, n - 1)
        assert st == flamingo.Status.BUFFER_TOO_SMALL
        st = _lib.lib().flamingo_session_eval(s.handle, toks, len(rest), 0, buf, ref.vocab - 1)
        assert st == flamingo.Status.BUFFER_TOO_SMALL
        assert list(buf) == [3.0] * n
        assert len(s) == k
        assert rel_err(s.eval(rest, all_logits=True), ref.logits_rows(k, L)) <= TOL


def test_context_limits(fx):
    model, ref = fx
    L, G = len(ref.ids), len(ref.greedy)
    with pytest.raises(flamingo.InvalidArgumentError):
        model.session(model.info.max_seq_len + 1)
    with pytest.raises(ValueError):
        model.session(-1)
    model.session(model.info.max_seq_len).close()
    with prompt_session(model, ref, n_ctx=L + G - 1) as s:
        assert s.n_ctx == L + G - 1
        with pytest.raises(flamingo.InvalidArgumentError):
            s.generate(G)  # context too small for max_new_tokens
        assert len(s) == L
        assert s.generate(G - 1)[0] == ref.greedy[:G - 1]
    with prompt_session(model, ref, n_ctx=L) as s:
        with pytest.raises(flamingo.InvalidArgumentError):
            s.eval([ref.ids[0]])  # context full
        assert len(s) == L


def test_generate_errors(fx):
    model, ref = fx
    G = len(ref.greedy)
    with model.session() as s:
        with pytest.raises(flamingo.InvalidArgumentError):
            s.generate(4)  # nothing evaluated
        s.set_images(ref.pixels)
        with pytest.raises(flamingo.InvalidArgumentError):
            s.generate(4)
    with prompt_session(model, ref) as s:
        for kw in (dict(num_beams=0), dict(do_sample=True, temperature=0.0), dict(do_sample=True, top_p=0.0),
                   dict(do_sample=True, top_p=1.5), dict(do_sample=True, temperature=float("nan"))):
            with pytest.raises(flamingo.InvalidArgumentError):
                s.generate(G, **kw)
        for kw in (dict(max_new_tokens=-1), dict(max_new_tokens=2**32), dict(seed=-1), dict(top_k=1.5)):
            with pytest.raises(ValueError):
                s.generate(**kw)
        assert len(s) == len(ref.ids)
        # Raw calls: bad struct_size, capacity < max_new_tokens, NULL out_count.
        lib = _lib.lib()
        p = _lib.flamingo_generate_params()
        assert lib.flamingo_generate_default_params(ctypes.byref(p), ctypes.sizeof(p)) == 0
        p.max_new_tokens = G
        out = (ctypes.c_int32 * 64)(*([-5] * 64))
        count = ctypes.c_size_t(999)
        reason = _lib.flamingo_stop_reason(-9)
        for size in (0, 4, 56, 79):
            p.struct_size = size
            st = lib.flamingo_session_generate(s.handle, ctypes.byref(p), out, 64, ctypes.byref(count),
                                               ctypes.byref(reason))
            assert st == flamingo.Status.INVALID_ARGUMENT, size
        p.struct_size = ctypes.sizeof(p)
        st = lib.flamingo_session_generate(s.handle, ctypes.byref(p), out, G - 1, ctypes.byref(count),
                                           ctypes.byref(reason))
        assert st == flamingo.Status.BUFFER_TOO_SMALL
        st = lib.flamingo_session_generate(s.handle, ctypes.byref(p), out, 64, None, ctypes.byref(reason))
        assert st == flamingo.Status.INVALID_ARGUMENT
        assert list(out) == [-5] * 64 and count.value == 999 and reason.value == -9
        assert len(s) == len(ref.ids)
        assert s.generate(G)[0] == ref.greedy


def test_default_params_through_the_library():
    lib = _lib.lib()
    p = _lib.flamingo_generate_params()
    assert lib.flamingo_generate_default_params(ctypes.byref(p), ctypes.sizeof(p)) == 0
    assert p.struct_size == 80
    assert (p.max_new_tokens, p.min_new_tokens, p.do_sample, p.top_k, p.num_beams) == (20, 0, 0, 0, 1)
    assert (p.temperature, p.top_p, p.length_penalty, p.repetition_penalty) == (1.0, 1.0, 1.0, 1.0)
    assert (p.early_stopping, p.no_repeat_ngram_size, p.stop_at_endofchunk, p.stop_at_eos, p.seed) == (0, 0, 1, 1, 0)
    assert not p.callback and p.callback_user_data is None
    assert lib.flamingo_generate_default_params(ctypes.byref(p), 79) == flamingo.Status.INVALID_ARGUMENT
    assert lib.flamingo_generate_default_params(None, 80) == flamingo.Status.INVALID_ARGUMENT
    sp = _lib.flamingo_session_params()
    assert lib.flamingo_session_default_params(ctypes.byref(sp), ctypes.sizeof(sp)) == 0
    assert (sp.struct_size, sp.n_ctx) == (8, 0)
    assert lib.flamingo_session_default_params(ctypes.byref(sp), 7) == flamingo.Status.INVALID_ARGUMENT


def test_session_init_errors(any_fixture_dir):
    lib = _lib.lib()
    with flamingo.Model.load(any_fixture_dir) as model:
        sp = _lib.flamingo_session_params(struct_size=4, n_ctx=0)
        out = _lib.flamingo_session_p()
        st = lib.flamingo_session_init(model.handle, ctypes.byref(sp), ctypes.byref(out))
        assert st == flamingo.Status.INVALID_ARGUMENT and not out
        st = lib.flamingo_session_init(None, None, ctypes.byref(out))
        assert st == flamingo.Status.INVALID_ARGUMENT and not out
        st = lib.flamingo_session_init(model.handle, None, None)
        assert st == flamingo.Status.INVALID_ARGUMENT
    with pytest.raises(ValueError):  # the model is closed
        model.session()
