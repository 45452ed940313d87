//! Tokenization, detokenization and the streaming detokenizer, against each
//! fixture's reference.json (Hugging Face tokenizers' ids and texts).

mod common;

use common::{at, json_ids, json_str, reference_json};
use flamingo::{Model, ModelParams, Status, sys};
use std::path::Path;

fn each_fixture(mut f: impl FnMut(&str, &Path, &Model, &common::safetensors::Json)) {
    for name in common::FIXTURES {
        let Some(dir) = common::fixture(name) else { continue };
        let j = reference_json(&dir);
        let model = Model::load(&dir, &ModelParams::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        f(name, &dir, &model, &j);
    }
}

fn llama() -> Option<(Model, common::safetensors::Json)> {
    let dir = common::fixture("llama_tiny")?;
    Some((Model::load(&dir, &ModelParams::default()).unwrap(), reference_json(&dir)))
}

/// (pieces, finish()) of streaming `ids`.
fn stream(model: &Model, ids: &[i32], skip_special: bool) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut d = model.detokenizer(skip_special).unwrap();
    let pieces: Vec<Vec<u8>> = ids.iter().map(|&t| d.push_bytes(t).unwrap()).collect();
    let tail = d.finish_bytes().unwrap();
    (pieces, tail)
}

#[test]
fn tokenize_matches_reference() {
    each_fixture(|name, _, model, j| {
        let prompt = json_str(at(j, &["prompt"]));
        assert_eq!(model.tokenize(prompt, true).unwrap(), json_ids(at(j, &["input_ids"])), "{name}");
        let stop = json_str(at(j, &["stop", "prompt"]));
        assert_eq!(model.tokenize(stop, true).unwrap(), json_ids(at(j, &["stop", "input_ids"])), "{name}");
        let info = model.info();
        let ids = model.tokenize("<image>x<|endofchunk|>", false).unwrap();
        assert_eq!(ids[0], info.image_token_id, "{name}");
        assert_eq!(*ids.last().unwrap(), info.endofchunk_token_id, "{name}");
    });
}

#[test]
fn round_trip_and_reference_texts() {
    each_fixture(|name, _, model, j| {
        let prompt = json_str(at(j, &["prompt"]));
        for text in [prompt, "A café, naïve — 東京 🐱.", "plain", ""] {
            let ids = model.tokenize(text, false).unwrap();
            assert_eq!(model.detokenize(&ids, false).unwrap(), text, "{name}");
        }
        let greedy = json_ids(at(j, &["greedy", "ids"]));
        assert_eq!(model.detokenize(&greedy, false).unwrap(), json_str(at(j, &["greedy", "text"])), "{name}");
        assert_eq!(
            model.detokenize(&greedy, true).unwrap(),
            json_str(at(j, &["greedy", "text_skip_special"])),
            "{name}"
        );
        assert_eq!(model.detokenize(&[], false).unwrap(), "");
    });
}

#[test]
fn snprintf_rule() {
    each_fixture(|name, _, model, j| {
        let prompt = json_str(at(j, &["prompt"])).as_bytes();
        let want = json_ids(at(j, &["input_ids"]));
        let n = want.len();
        for cap in [0, 1, n - 1, n, n + 4] {
            let mut out = vec![-7i32; n + 8];
            let mut count = 12345usize;
            let ptr = if cap == 0 { std::ptr::null_mut() } else { out.as_mut_ptr() };
            let st = unsafe {
                sys::flamingo_tokenize(
                    model.as_ptr(),
                    prompt.as_ptr().cast(),
                    prompt.len(),
                    sys::FLAMINGO_TOKENIZE_ADD_SPECIAL,
                    ptr,
                    cap,
                    &mut count,
                )
            };
            assert_eq!(st, sys::FLAMINGO_OK, "{name}");
            assert_eq!(count, n, "{name}: capacity {cap}");
            let k = cap.min(n);
            assert_eq!(&out[..k], &want[..k], "{name}");
            assert!(out[k..].iter().all(|&x| x == -7), "{name}: wrote past capacity {cap}");
        }
        let greedy = json_ids(at(j, &["greedy", "ids"]));
        let full = json_str(at(j, &["greedy", "text"])).as_bytes();
        for cap in [0, 1, 5, full.len(), full.len() + 1, full.len() + 9] {
            let mut buf = vec![0xA5u8; full.len() + 16];
            let mut len = 12345usize;
            let ptr = if cap == 0 { std::ptr::null_mut() } else { buf.as_mut_ptr().cast() };
            let st = unsafe {
                sys::flamingo_detokenize(model.as_ptr(), greedy.as_ptr(), greedy.len(), 0, ptr, cap, &mut len)
            };
            assert_eq!(st, sys::FLAMINGO_OK);
            assert_eq!(len, full.len(), "{name}: capacity {cap}");
            if cap > 0 {
                let k = (cap - 1).min(full.len());
                assert_eq!(&buf[..k], &full[..k]);
                assert_eq!(buf[k], 0, "{name}: not NUL-terminated");
                assert!(buf[cap..].iter().all(|&b| b == 0xA5), "{name}: wrote past capacity {cap}");
            }
        }
    });
}

#[test]
fn invalid_utf8_and_other_errors() {
    each_fixture(|name, _, model, _| {
        for bad in [&b"\xff"[..], b"abc\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"a\x80b"] {
            let e = model.tokenize_bytes(bad, 0).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{name}: {bad:?}");
            assert!(!e.message.is_empty());
        }
        assert_eq!(model.tokenize_bytes(b"a", 0x80).unwrap_err().status, Status::InvalidArgument);
        let v = model.info().vocab_size as i32;
        assert_eq!(model.detokenize(&[0, v], false).unwrap_err().status, Status::InvalidArgument);
        assert_eq!(model.detokenize(&[-1], false).unwrap_err().status, Status::InvalidArgument);
        let mut d = model.detokenizer(false).unwrap();
        assert_eq!(d.push(v).unwrap_err().status, Status::InvalidArgument);
        assert!(d.tokens().is_empty());
        let mut out: *mut sys::flamingo_detokenizer = std::ptr::null_mut();
        assert_eq!(
            unsafe { sys::flamingo_detokenizer_init(model.as_ptr(), 0x80, &mut out) },
            sys::FLAMINGO_ERROR_INVALID_ARGUMENT
        );
        assert!(out.is_null());
        unsafe { sys::flamingo_detokenizer_free(std::ptr::null_mut()) };
    });
}

#[test]
fn streaming_equals_full_decode_prompt() {
    each_fixture(|name, _, model, j| {
        let ids = json_ids(at(j, &["input_ids"]));
        for skip in [false, true] {
            let (pieces, tail) = stream(model, &ids, skip);
            for p in &pieces {
                assert!(std::str::from_utf8(p).is_ok(), "{name}: a piece splits a character: {p:?}");
            }
            assert_eq!(pieces.concat(), model.detokenize_bytes(&ids, skip).unwrap(), "{name}");
            assert!(tail.is_empty());
        }
    });
}

/// llama_tiny's greedy ids hold a run of byte tokens that is not valid UTF-8
/// (a full decode turns each into U+FFFD); a plain token is appended so that
/// nothing is held back at the end.
#[test]
fn streaming_equals_full_decode_generated() {
    each_fixture(|name, _, model, j| {
        let mut ids = json_ids(at(j, &["greedy", "ids"]));
        ids.push(*json_ids(at(j, &["input_ids"])).last().unwrap());
        let (pieces, tail) = stream(model, &ids, false);
        for p in &pieces {
            assert!(std::str::from_utf8(p).is_ok(), "{name}: a piece splits a character");
        }
        assert!(tail.is_empty());
        assert_eq!(
            String::from_utf8(pieces.concat()).unwrap(),
            model.detokenize(&ids, false).unwrap(),
            "{name}: streaming differs from the full decode"
        );
    });
}

#[test]
fn streaming_finish_returns_the_held_back_text() {
    each_fixture(|name, _, model, j| {
        let ids = json_ids(at(j, &["greedy", "ids"]));
        let (pieces, tail) = stream(model, &ids, false);
        let full = model.detokenize_bytes(&ids, false).unwrap();
        assert_eq!([pieces.concat(), tail].concat(), full, "{name}");
    });
}

/// llama_tiny's prompt holds "é" as the byte tokens <0xC3><0xA9>: the first
/// byte alone is held back and "é" comes out whole. From <0xA9> on, every
/// token is first pushed with capacity 1: a piece of 1 byte or more fails
/// with BUFFER_TOO_SMALL (out_len untouched) without consuming the token, so
/// pushing it again continues a stream that still equals the full decode.
#[test]
fn e_acute_is_never_split_and_buffer_too_small_keeps_the_token() {
    let Some((model, j)) = llama() else { return };
    let ids = json_ids(at(&j, &["input_ids"]));
    let common::safetensors::Json::Arr(tokens) = at(&j, &["input_tokens"]) else { panic!() };
    let i = tokens.iter().position(|t| json_str(t) == "<0xC3>").expect("no <0xC3> token");
    assert_eq!(json_str(&tokens[i + 1]), "<0xA9>");

    let mut d = model.detokenizer(false).unwrap();
    let mut text = String::new();
    for &t in &ids[..i] {
        text.push_str(&d.push(t).unwrap());
    }
    assert_eq!(d.push(ids[i]).unwrap(), ""); // half of "é" is held back
    let mut too_small = 0;
    for &t in &ids[i + 1..] {
        let mut buf = [0xA5u8; 4];
        let mut len = 777usize;
        let st = unsafe { sys::flamingo_detokenizer_push(d.as_ptr(), t, buf.as_mut_ptr().cast(), 1, &mut len) };
        if st == sys::FLAMINGO_ERROR_BUFFER_TOO_SMALL {
            too_small += 1;
            assert_eq!(len, 777);
            let piece = d.push(t).unwrap(); // not consumed: push it again
            assert!(!piece.is_empty());
            text.push_str(&piece);
        } else {
            assert_eq!((st, len), (sys::FLAMINGO_OK, 0));
        }
    }
    assert!(too_small > 0);
    assert!(text.contains("café"), "{text}");
    assert_eq!(text, model.detokenize(&ids, false).unwrap());
    d.finish().unwrap();
    assert_eq!(d.push(ids[0]).unwrap_err().status, Status::InvalidArgument); // finished
}

#[test]
fn detokenizer_basics() {
    each_fixture(|name, _, model, _| {
        let ids = model.tokenize("<image>A small test.<|endofchunk|>", false).unwrap();
        let mut d = model.detokenizer(true).unwrap();
        let mut text = String::new();
        for &t in &ids {
            text.push_str(&d.push(t).unwrap());
        }
        text.push_str(&d.finish().unwrap());
        assert_eq!(text, model.detokenize(&ids, true).unwrap(), "{name}");
        assert_eq!(d.tokens(), &ids[..]);
        // A detokenizer may move to another thread.
        let mut d2 = model.detokenizer(false).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| d2.push(ids[1]).unwrap()).join().unwrap();
        });
        assert_eq!(d2.text(), model.detokenize(&ids[1..2], false).unwrap());
    });
}
