"""Tokenization, detokenization and the streaming detokenizer, against each
fixture's reference.json (Hugging Face tokenizers' ids and texts)."""

import ctypes
import json

import pytest

import flamingo
from flamingo import _lib


@pytest.fixture
def fx(fixture_dir):
    """(model, reference.json) of one fixture."""
    ref = json.loads((fixture_dir / "reference.json").read_text(encoding="utf-8"))
    with flamingo.Model(fixture_dir) as model:
        yield model, ref


def load(name):
    from conftest import require_fixture

    d = require_fixture(name)
    return flamingo.Model(d), json.loads((d / "reference.json").read_text(encoding="utf-8"))


def utf8_pieces_ok(pieces):
    for p in pieces:
        p.decode("utf-8")  # raises on half a character


# ---- tokenize -----------------------------------------------------------------


def test_tokenize_matches_reference(fx):
    model, ref = fx
    assert model.tokenize(ref["prompt"]) == ref["input_ids"]
    assert model.tokenize(ref["prompt"].encode("utf-8")) == ref["input_ids"]
    for key in ("stop", "extra_markers"):
        if key in ref and "prompt" in ref[key]:
            assert model.tokenize(ref[key]["prompt"]) == ref[key]["input_ids"]
    for i, prompt in enumerate(ref["batch"]["prompts"]):
        want = [t for t, m in zip(ref["batch"]["input_ids"][i], ref["batch"]["attention_mask"][i]) if m]
        assert model.tokenize(prompt) == want


def test_tokenize_special_tokens(fx):
    model, ref = fx
    info = model.info
    ids = model.tokenize("<image>x<|endofchunk|>", add_special=False)
    assert ids[0] == info.image_token_id and ids[-1] == info.endofchunk_token_id
    with_special = model.tokenize("<image>x<|endofchunk|>")
    if info.bos_token_id >= 0 and with_special[0] == info.bos_token_id:
        assert with_special[1:] == ids
    else:
        assert with_special == ids


def test_round_trip(fx):
    model, ref = fx
    for text in (ref["prompt"], "A café, naïve — 東京 🐱.", "plain ascii text", ""):
        ids = model.tokenize(text, add_special=False)
        assert model.detokenize(ids) == text
    # Special tokens can be skipped.
    ids = model.tokenize(ref["prompt"])
    skipped = model.detokenize(ids, skip_special=True)
    assert "<image>" not in skipped and "<|endofchunk|>" not in skipped


def test_detokenize_matches_reference(fx):
    model, ref = fx
    g = ref["greedy"]
    assert model.detokenize(g["ids"]) == g["text"]
    assert model.detokenize(g["ids"], skip_special=True) == g["text_skip_special"]
    assert model.detokenize([]) == ""


def test_tokenize_snprintf_rule(fx):
    """*out_count always gets the full count; at most capacity ids are written."""
    model, ref = fx
    lib = _lib.lib()
    text = ref["prompt"].encode()
    want = ref["input_ids"]
    n = len(want)
    for cap in (0, 1, n - 1, n, n + 5):
        out = (ctypes.c_int32 * (n + 8))(*([-7] * (n + 8)))
        count = ctypes.c_size_t(12345)
        st = lib.flamingo_tokenize(model.handle, text, len(text), _lib.FLAMINGO_TOKENIZE_ADD_SPECIAL,
                                   out if cap else None, cap, ctypes.byref(count))
        assert st == flamingo.Status.OK
        assert count.value == n
        k = min(cap, n)
        assert list(out[:k]) == want[:k]
        assert list(out[k:]) == [-7] * (n + 8 - k)


def test_detokenize_snprintf_rule(fx):
    model, ref = fx
    lib = _lib.lib()
    ids = ref["greedy"]["ids"]
    full = ref["greedy"]["text"].encode()
    toks = (ctypes.c_int32 * len(ids))(*ids)
    for cap in (0, 1, 5, len(full), len(full) + 1, len(full) + 10):
        buf = ctypes.create_string_buffer(b"\xa5" * (len(full) + 16), len(full) + 16)
        n = ctypes.c_size_t(12345)
        st = lib.flamingo_detokenize(model.handle, toks, len(ids), 0, buf if cap else None, cap, ctypes.byref(n))
        assert st == flamingo.Status.OK
        assert n.value == len(full)
        if cap:
            k = min(cap - 1, len(full))
            assert buf.raw[:k] == full[:k]
            assert buf.raw[k] == 0  # NUL-terminated when capacity > 0
            assert buf.raw[cap:] == b"\xa5" * (len(buf.raw) - cap)


@pytest.mark.parametrize("bad", [b"\xff", b"abc\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\x80b"])
def test_tokenize_invalid_utf8(any_fixture_dir, bad):
    with flamingo.Model(any_fixture_dir) as model:
        with pytest.raises(flamingo.InvalidArgumentError) as e:
            model.tokenize(bad)
        assert e.value.message
        out = (ctypes.c_int32 * 4)(-7, -7, -7, -7)
        count = ctypes.c_size_t(999)
        st = _lib.lib().flamingo_tokenize(model.handle, bad, len(bad), 0, out, 4, ctypes.byref(count))
        assert st == flamingo.Status.INVALID_ARGUMENT
        assert list(out) == [-7] * 4 and count.value == 999


def test_text_errors(any_fixture_dir):
    lib = _lib.lib()
    with flamingo.Model(any_fixture_dir) as model:
        V = model.info.vocab_size
        with pytest.raises(flamingo.InvalidArgumentError):
            model.detokenize([0, V])
        with pytest.raises(flamingo.InvalidArgumentError):
            model.detokenize([-1])
        with pytest.raises(TypeError):
            model.tokenize(42)
        count = ctypes.c_size_t(999)
        out = (ctypes.c_int32 * 4)()
        assert lib.flamingo_tokenize(model.handle, b"a", 1, 4, out, 4, ctypes.byref(count)) == \
            flamingo.Status.INVALID_ARGUMENT  # unknown flags
        assert lib.flamingo_tokenize(None, b"a", 1, 0, out, 4, ctypes.byref(count)) == \
            flamingo.Status.INVALID_ARGUMENT
        assert lib.flamingo_tokenize(model.handle, b"a", 1, 0, out, 4, None) == flamingo.Status.INVALID_ARGUMENT
        assert count.value == 999
        buf = ctypes.create_string_buffer(8)
        toks = (ctypes.c_int32 * 1)(0)
        assert lib.flamingo_detokenize(model.handle, toks, 1, 2, buf, 8, ctypes.byref(count)) == \
            flamingo.Status.INVALID_ARGUMENT
        assert lib.flamingo_detokenize(None, toks, 1, 0, buf, 8, ctypes.byref(count)) == \
            flamingo.Status.INVALID_ARGUMENT
        d = _lib.flamingo_detokenizer_p()
        assert lib.flamingo_detokenizer_init(model.handle, 2, ctypes.byref(d)) == flamingo.Status.INVALID_ARGUMENT
        assert lib.flamingo_detokenizer_init(None, 0, ctypes.byref(d)) == flamingo.Status.INVALID_ARGUMENT
        assert not d
        assert lib.flamingo_detokenizer_push(None, 0, buf, 8, ctypes.byref(count)) == \
            flamingo.Status.INVALID_ARGUMENT
        lib.flamingo_detokenizer_free(None)


# ---- streaming detokenizer ------------------------------------------------------


def stream(model, ids, skip_special=False):
    with model.detokenizer(skip_special) as d:
        pieces = [d.push_bytes(t) for t in ids]
        tail = d.finish_bytes()
    return pieces, tail


def test_streaming_equals_full_decode_prompt(fx):
    """The prompt ids (llama_tiny's hold "é" as the byte tokens <0xC3><0xA9>)."""
    model, ref = fx
    ids = ref["input_ids"]
    for skip in (False, True):
        pieces, tail = stream(model, ids, skip)
        utf8_pieces_ok(pieces)
        assert b"".join(pieces) == model.detokenize(ids, skip).encode()
        assert tail == b""


def test_streaming_never_splits_a_character():
    """llama_tiny's prompt holds "é" as the byte tokens <0xC3><0xA9>: the
    first byte alone is held back and "é" comes out whole."""
    model, ref = load("llama_tiny")
    with model:
        assert "<0xC3>" in ref["input_tokens"] and "<0xA9>" in ref["input_tokens"]
        i = ref["input_tokens"].index("<0xC3>")
        ids = ref["input_ids"]
        with model.detokenizer() as d:
            pieces = [d.push_bytes(t) for t in ids]
        assert pieces[i] == b""  # the first byte of "é" alone is held back
        utf8_pieces_ok(pieces)
        assert "café".encode() in b"".join(pieces)


def test_streaming_equals_full_decode_generated(fx):
    """Generated ids (llama_tiny's greedy ids contain a run of byte tokens
    that is not valid UTF-8: a full decode turns each into U+FFFD).
    A plain token is appended so that nothing is held back at the end."""
    model, ref = fx
    ids = ref["greedy"]["ids"] + [ref["input_ids"][-1]]
    pieces, tail = stream(model, ids)
    utf8_pieces_ok(pieces)
    assert tail == b""
    assert b"".join(pieces).decode() == model.detokenize(ids)


def test_streaming_finish_returns_the_held_back_text(fx):
    model, ref = fx
    ids = ref["greedy"]["ids"]
    pieces, tail = stream(model, ids)
    full = model.detokenize(ids).encode()
    assert full.startswith(b"".join(pieces))
    assert b"".join(pieces) + tail == full


def test_push_buffer_too_small_keeps_the_token():
    """From <0xA9> on, every token is first pushed with capacity 1: a piece
    of 1 byte or more fails with BUFFER_TOO_SMALL, out_len untouched, and
    the token is not consumed: pushed again with 64 bytes the stream goes
    on and still equals the full decode."""
    model, ref = load("llama_tiny")
    with model:
        lib = _lib.lib()
        ids = ref["input_ids"]
        i = ref["input_tokens"].index("<0xC3>")
        d = _lib.flamingo_detokenizer_p()
        assert lib.flamingo_detokenizer_init(model.handle, 0, ctypes.byref(d)) == 0
        try:
            buf = ctypes.create_string_buffer(64)
            n = ctypes.c_size_t(0)
            out = []
            for t in ids[:i + 1]:
                assert lib.flamingo_detokenizer_push(d, t, buf, 64, ctypes.byref(n)) == 0
                out.append(buf.raw[:n.value])
            assert n.value == 0  # "\xc3" held back
            too_small = 0
            for t in ids[i + 1:]:
                n = ctypes.c_size_t(777)
                st = lib.flamingo_detokenizer_push(d, t, buf, 1, ctypes.byref(n))
                if st == flamingo.Status.BUFFER_TOO_SMALL:
                    too_small += 1
                    assert n.value == 777 and flamingo.last_error()
                    assert lib.flamingo_detokenizer_push(d, t, buf, 0, ctypes.byref(n)) == \
                        flamingo.Status.BUFFER_TOO_SMALL
                    assert lib.flamingo_detokenizer_push(d, t, buf, 64, ctypes.byref(n)) == 0
                    assert n.value >= 1
                else:
                    assert st == 0 and n.value == 0
                out.append(buf.raw[:n.value])
            assert too_small > 0
            utf8_pieces_ok(out)
            assert b"".join(out).decode() == model.detokenize(ids)
        finally:
            lib.flamingo_detokenizer_free(d)


def test_detokenizer_object(any_fixture_dir):
    with flamingo.Model(any_fixture_dir) as model:
        ids = model.tokenize("<image>A small test.<|endofchunk|>")
        d = model.detokenizer(skip_special=True)
        text = "".join(d.push(t) for t in ids) + d.finish()
        assert text == model.detokenize(ids, skip_special=True) == d.text
        assert d.tokens == ids
        with pytest.raises(ValueError):
            d.push(ids[0])  # finished
        d.close()
        d.close()
        assert d.closed
        with pytest.raises(ValueError):
            d.push(ids[0])
        with model.detokenizer() as d2:
            with pytest.raises(flamingo.InvalidArgumentError):
                d2.push(model.info.vocab_size)
            with pytest.raises(ValueError):
                d2.push(2**40)
            assert d2.push(ids[1]) == model.detokenize([ids[1]])
        # The detokenizer keeps the tokenizer alive after the model is closed.
        d3 = model.detokenizer()
    assert d3.push(ids[1]) == d3.text
    d3.close()
