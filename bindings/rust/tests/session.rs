//! Images, sessions and generation against the PyTorch reference of each
//! fixture (`Tests/Fixtures/<name>/reference.safetensors`, read with the
//! crate-free reader in `common/safetensors.rs`).

mod common;

use common::safetensors::{Reference, parse_json, rel_err};
use flamingo::{GenerateParams, Model, ModelParams, Session, SessionParams, Status, StopReason, sys};
use std::path::Path;
use std::sync::Arc;

const TOL: f64 = 1e-4;

/// Runs `f` on every fixture that exists (a missing one is skipped, or
/// fails under FLAMINGO_REQUIRE_FIXTURES=1).
fn each_fixture(mut f: impl FnMut(&str, &Path, &Model, &Reference)) {
    for name in common::FIXTURES {
        let Some(dir) = common::fixture(name) else { continue };
        let reference = Reference::load(&dir);
        let model = Model::load(&dir, &ModelParams::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        f(name, &dir, &model, &reference);
    }
}

fn prompt_session(model: &Model, r: &Reference, n_ctx: u32) -> Session {
    let mut s = model.session(&SessionParams { n_ctx }).unwrap();
    s.set_images(&r.pixels, r.n_images).unwrap();
    s.eval_into(&r.ids, false, None).unwrap();
    s
}

fn greedy(n: usize) -> GenerateParams {
    GenerateParams { max_new_tokens: n as u32, stop_at_endofchunk: true, ..GenerateParams::default() }
}

// ---- parameters and info ----------------------------------------------------

#[test]
fn json_reader() {
    use common::safetensors::Json;
    let v = parse_json(br#" {"a": [1, -2.5e1, true, null], "b\"c": {"x": "\u00e9t\u00e9 ok"}} "#).unwrap();
    let Json::Obj(m) = v else { panic!() };
    assert_eq!(m["a"], Json::Arr(vec![Json::Num(1.0), Json::Num(-25.0), Json::Bool(true), Json::Null]));
    let Json::Obj(b) = &m["b\"c"] else { panic!() };
    assert_eq!(b["x"], Json::Str("été ok".into()));
    assert!(parse_json(b"{\"a\": 1,}").is_err());
    assert!(parse_json(b"[1] x").is_err());
}

#[test]
fn generate_defaults_match_the_library() {
    assert_eq!(GenerateParams::library_defaults().unwrap(), GenerateParams::default());
    let raw = GenerateParams::default().to_raw().unwrap();
    assert_eq!(raw.struct_size as usize, std::mem::size_of::<sys::flamingo_generate_params>());
    assert!(raw.callback.is_none() && raw.callback_user_data.is_null());
    assert_eq!(SessionParams::default().n_ctx, 0);

    let mut p = sys::flamingo_generate_params::zeroed();
    for size in [0usize, 4, 56, 79] {
        assert_eq!(
            unsafe { sys::flamingo_generate_default_params(&mut p, size) },
            sys::FLAMINGO_ERROR_INVALID_ARGUMENT
        );
    }
    assert_eq!(
        unsafe { sys::flamingo_generate_default_params(std::ptr::null_mut(), 80) },
        sys::FLAMINGO_ERROR_INVALID_ARGUMENT
    );
    let mut sp = sys::flamingo_session_params::default();
    assert_eq!(unsafe { sys::flamingo_session_default_params(&mut sp, 8) }, sys::FLAMINGO_OK);
    assert_eq!((sp.struct_size, sp.n_ctx), (8, 0));
    assert_eq!(unsafe { sys::flamingo_session_default_params(&mut sp, 7) }, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
}

#[test]
fn info_visual_dim() {
    each_fixture(|name, _, model, r| {
        let i = model.info();
        assert_eq!(i.visual_dim as usize, r.dim, "{name}");
        assert_eq!(i.num_latents as usize, r.latents, "{name}");
        assert_eq!(i.vocab_size as usize, r.vocab, "{name}");
        assert_eq!(i.image_size as usize, r.image_size, "{name}");
        assert_eq!(i.media_floats(), r.latents * r.dim);
    });
}

// ---- images -------------------------------------------------------------------

#[test]
fn encode_images_matches_reference() {
    each_fixture(|name, _, model, r| {
        let out = model.encode_images(&r.pixels, r.n_images).unwrap();
        assert_eq!(out.len(), r.n_images * r.latents * r.dim);
        let e = rel_err(&out, &r.resampler);
        assert!(e <= TOL, "{name}: encode_images: max|d|/max|ref| = {e:.3e}");
        let per = r.latents * r.dim;
        for k in 0..r.n_images {
            let one = model.encode_images(&r.pixels[k * r.image_floats()..(k + 1) * r.image_floats()], 1).unwrap();
            assert!(rel_err(&one, &r.resampler[k * per..(k + 1) * per]) <= TOL, "{name}: image {k}");
        }
        // Into a larger buffer: only the visual tokens are written.
        let mut buf = vec![7.0f32; out.len() + 5];
        model.encode_images_into(&r.pixels, r.n_images, &mut buf).unwrap();
        assert_eq!(&buf[..out.len()], &out[..]);
        assert!(buf[out.len()..].iter().all(|&x| x == 7.0));
    });
}

#[test]
fn encode_images_errors() {
    each_fixture(|name, _, model, r| {
        let e = model.encode_images(&r.pixels, r.n_images + 1).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument, "{name}: length mismatch");
        let e = model.encode_images(&r.pixels[1..], r.n_images).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        let e = model.encode_images(&[], 0).unwrap_err(); // n_images 0: refused by the library
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.message.contains("flamingo_model_encode_images"), "{}", e.message);
        let mut bad = r.pixels.clone();
        bad[3] = f32::NAN;
        assert_eq!(model.encode_images(&bad, r.n_images).unwrap_err().status, Status::InvalidArgument);
        bad[3] = f32::INFINITY;
        assert_eq!(model.encode_images(&bad, r.n_images).unwrap_err().status, Status::InvalidArgument);
        let mut small = vec![5.0f32; r.n_images * r.latents * r.dim - 1];
        let e = model.encode_images_into(&r.pixels, r.n_images, &mut small).unwrap_err();
        assert_eq!(e.status, Status::BufferTooSmall);
        assert!(small.iter().all(|&x| x == 5.0), "{name}: out modified on error");
    });
}

// ---- evaluation -----------------------------------------------------------------

#[test]
fn eval_matches_reference() {
    each_fixture(|name, _, model, r| {
        let l = r.ids.len();
        let mut s = model.session(&SessionParams::default()).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.n_ctx(), model.info().max_seq_len as usize);
        s.set_images(&r.pixels, r.n_images).unwrap();
        let all = s.eval(&r.ids, true).unwrap();
        assert_eq!(all.len(), l * r.vocab);
        let e = rel_err(&all, &r.logits);
        assert!(e <= TOL, "{name}: all logits: max|d|/max|ref| = {e:.3e}");
        assert_eq!(s.len(), l);

        let mut s = model.session(&SessionParams::default()).unwrap();
        s.set_images(&r.pixels, r.n_images).unwrap();
        let last = s.eval(&r.ids, false).unwrap();
        assert_eq!(last.len(), r.vocab);
        assert!(rel_err(&last, r.rows(l - 1, l)) <= TOL, "{name}: last logits");

        // In two pieces.
        let k = l / 2;
        let mut s = model.session(&SessionParams::default()).unwrap();
        s.set_images(&r.pixels, r.n_images).unwrap();
        let mut both = s.eval(&r.ids[..k], true).unwrap();
        both.extend(s.eval(&r.ids[k..], true).unwrap());
        assert!(rel_err(&both, &r.logits) <= TOL, "{name}: two pieces");
    });
}

#[test]
fn set_media_equals_set_images() {
    each_fixture(|name, _, model, r| {
        let mut visual = model.encode_images(&r.pixels, r.n_images).unwrap();
        let mut a = model.session(&SessionParams::default()).unwrap();
        let mut b = model.session(&SessionParams::default()).unwrap();
        a.set_images(&r.pixels, r.n_images).unwrap();
        b.set_media(&visual, r.n_images).unwrap();
        visual.iter_mut().for_each(|x| *x = 1e6); // set_media copied the data
        let la = a.eval(&r.ids, true).unwrap();
        let lb = b.eval(&r.ids, true).unwrap();
        assert!(rel_err(&lb, &la) <= 1e-6, "{name}: set_media vs set_images");
        assert!(rel_err(&lb, &r.logits) <= TOL, "{name}: set_media vs reference");
        b.set_media(&[], 0).unwrap();
        assert_eq!(b.set_media(&visual[1..], r.n_images).unwrap_err().status, Status::InvalidArgument);
        assert_eq!(b.set_images(&r.pixels, r.n_images + 1).unwrap_err().status, Status::InvalidArgument);
        assert_eq!(b.set_images(&[], 0).unwrap_err().status, Status::InvalidArgument);
    });
}

#[test]
fn eval_errors_leave_the_session_unchanged() {
    each_fixture(|name, _, model, r| {
        let l = r.ids.len();
        let k = l / 2;
        let v = r.vocab;
        let mut s = model.session(&SessionParams::default()).unwrap();
        s.set_images(&r.pixels, r.n_images).unwrap();
        s.eval_into(&r.ids[..k], false, None).unwrap();
        assert_eq!(s.eval(&[], false).unwrap_err().status, Status::InvalidArgument);
        for bad in [v as i32, -1, i32::MAX, i32::MIN] {
            let e = s.eval(&[r.ids[k], bad], true).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{name}: token {bad}");
            assert!(!e.message.is_empty());
            assert_eq!(s.len(), k, "{name}: token {bad} changed the session");
        }
        let rest = &r.ids[k..];
        let mut buf = vec![3.0f32; rest.len() * v];
        let n = buf.len();
        let e = s.eval_into(rest, true, Some(&mut buf[..n - 1])).unwrap_err();
        assert_eq!(e.status, Status::BufferTooSmall);
        let e = s.eval_into(rest, false, Some(&mut buf[..v - 1])).unwrap_err();
        assert_eq!(e.status, Status::BufferTooSmall);
        let e = s.eval_into(rest, false, Some(&mut [])).unwrap_err();
        assert_eq!(e.status, Status::BufferTooSmall);
        assert!(buf.iter().all(|&x| x == 3.0), "{name}: logits modified on error");
        assert_eq!(s.len(), k);
        s.eval_into(rest, true, Some(&mut buf)).unwrap();
        assert!(rel_err(&buf, r.rows(k, l)) <= TOL, "{name}: logits after failed evals");
    });
}

#[test]
fn context_limits() {
    each_fixture(|name, _, model, r| {
        let (l, g) = (r.ids.len(), r.greedy.len());
        let max = model.info().max_seq_len;
        let e = model.session(&SessionParams { n_ctx: max + 1 }).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument, "{name}");
        model.session(&SessionParams { n_ctx: max }).unwrap();

        let mut s = prompt_session(model, r, (l + g - 1) as u32);
        assert_eq!(s.n_ctx(), l + g - 1);
        let e = s.generate(&greedy(g), None).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument, "{name}: context too small for max_new_tokens");
        assert_eq!(s.len(), l);
        assert_eq!(s.generate(&greedy(g - 1), None).unwrap().tokens, r.greedy[..g - 1]);

        let mut s = prompt_session(model, r, l as u32);
        assert_eq!(s.eval(&r.ids[..1], false).unwrap_err().status, Status::InvalidArgument);
        assert_eq!(s.len(), l);
    });
}

// ---- generation ---------------------------------------------------------------

#[test]
fn greedy_generate() {
    each_fixture(|name, _, model, r| {
        let mut s = prompt_session(model, r, 0);
        let mut seen = Vec::new();
        let mut cb = |t: i32| {
            seen.push(t);
            false
        };
        let out = s.generate(&greedy(r.greedy.len()), Some(&mut cb)).unwrap();
        assert_eq!(out.tokens, r.greedy, "{name}");
        assert_eq!(out.stop_reason, StopReason::MaxTokens);
        assert_eq!(seen, out.tokens);
        assert_eq!(s.len(), r.ids.len() + r.greedy.len());

        // Defaults (max_new_tokens 20): a greedy continuation.
        let mut s = prompt_session(model, r, 0);
        let out = s.generate(&GenerateParams::default(), None).unwrap();
        let m = out.tokens.len().min(r.greedy.len());
        assert!(!out.tokens.is_empty() && out.tokens.len() <= 20);
        assert_eq!(out.tokens[..m], r.greedy[..m]);
        let want = if out.tokens.len() == 20 { StopReason::MaxTokens } else { StopReason::Token };
        assert_eq!(out.stop_reason, want);

        // Two calls continue each other.
        let mut s = prompt_session(model, r, 0);
        let h = r.greedy.len() / 2;
        let mut a = s.generate(&greedy(h), None).unwrap().tokens;
        a.extend(s.generate(&greedy(r.greedy.len() - h), None).unwrap().tokens);
        assert_eq!(a, r.greedy);
    });
}

#[test]
fn callback_cancels() {
    each_fixture(|name, _, model, r| {
        for stop_after in [1usize, 3] {
            let mut s = prompt_session(model, r, 0);
            let mut seen = Vec::new();
            let mut cb = |t: i32| {
                seen.push(t);
                seen.len() >= stop_after
            };
            let out = s.generate(&greedy(r.greedy.len()), Some(&mut cb)).unwrap();
            assert_eq!(out.stop_reason, StopReason::Cancelled, "{name}");
            assert_eq!(out.tokens, r.greedy[..stop_after]);
            assert_eq!(seen, out.tokens);
            assert_eq!(s.len(), r.ids.len() + stop_after);
        }
    });
}

#[test]
fn callback_panic_is_resumed() {
    let Some(dir) = common::any_fixture() else { return };
    let r = Reference::load(&dir);
    let model = Model::load(&dir, &ModelParams::default()).unwrap();
    let mut s = prompt_session(&model, &r, 0);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut cb = |t: i32| -> bool { panic!("boom {t}") };
        let _ = s.generate(&greedy(r.greedy.len()), Some(&mut cb));
    }));
    let payload = caught.unwrap_err();
    let msg = payload.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(msg, format!("boom {}", r.greedy[0]));
    assert_eq!(s.len(), r.ids.len() + 1);
}

#[test]
fn generate_reference_cases() {
    // (tensor, prompt tensor or "" for the main prompt, beams, length_penalty,
    //  no_repeat_ngram_size, repetition_penalty)
    let cases: [(&str, &str, u32, f32, u32, f32); 7] = [
        ("beam3_lp0.ids", "", 3, 0.0, 0, 1.0),
        ("beam3_lp1.ids", "", 3, 1.0, 0, 1.0),
        ("greedy_nr2.ids", "", 1, 1.0, 2, 1.0),
        ("greedy_rp15.ids", "", 1, 1.0, 0, 1.5),
        ("stop.greedy.ids", "stop.input_ids", 1, 1.0, 0, 1.0),
        ("stop.beam3_lp0.ids", "stop.input_ids", 3, 0.0, 0, 1.0),
        ("stop.beam3_lp1.ids", "stop.input_ids", 3, 1.0, 0, 1.0),
    ];
    each_fixture(|name, _, model, r| {
        let info = model.info();
        for (key, prompt_key, beams, lp, nr, rp) in cases {
            let (Some(want), prompt) =
                (r.optional.get(key), if prompt_key.is_empty() { Some(&r.ids) } else { r.optional.get(prompt_key) })
            else {
                eprintln!("skipped: {name}: no {key} in the reference");
                continue;
            };
            let Some(prompt) = prompt else { continue };
            let mut s = model.session(&SessionParams::default()).unwrap();
            s.set_images(&r.pixels, r.n_images).unwrap();
            s.eval_into(prompt, false, None).unwrap();
            let p = GenerateParams {
                max_new_tokens: 8,
                num_beams: beams,
                length_penalty: lp,
                no_repeat_ngram_size: nr,
                repetition_penalty: rp,
                stop_at_endofchunk: true,
                ..GenerateParams::default()
            };
            let mut seen = Vec::new();
            let mut cb = |t: i32| {
                seen.push(t);
                false
            };
            let out = s.generate(&p, Some(&mut cb)).unwrap();
            assert_eq!(&out.tokens, want, "{name}: {key}");
            assert_eq!(seen, out.tokens, "{name}: {key}: callback");
            let last = *want.last().unwrap();
            let stopped = last == info.endofchunk_token_id || last == info.eos_token_id;
            let reason = if stopped { StopReason::Token } else { StopReason::MaxTokens };
            assert_eq!(out.stop_reason, reason, "{name}: {key}");
            assert_eq!(s.len(), prompt.len() + want.len());
        }
    });
}

#[test]
fn sampling_is_seeded() {
    each_fixture(|name, _, model, r| {
        let mut s = prompt_session(model, r, 0);
        let mut t = s.copy().unwrap();
        let p = GenerateParams {
            max_new_tokens: 8,
            do_sample: true,
            temperature: 0.8,
            top_k: 20,
            top_p: 0.95,
            seed: u64::MAX,
            ..GenerateParams::default()
        };
        let a = s.generate(&p, None).unwrap();
        let b = t.generate(&p, None).unwrap();
        assert_eq!(a, b, "{name}");
        assert!(a.tokens.iter().all(|&x| x >= 0 && (x as usize) < r.vocab));
        let mut u = prompt_session(model, r, 0);
        let other = GenerateParams {
            max_new_tokens: 6,
            min_new_tokens: 2,
            no_repeat_ngram_size: 2,
            repetition_penalty: 1.2,
            early_stopping: true,
            stop_at_eos: false,
            ..GenerateParams::default()
        };
        u.generate(&other, None).unwrap();
    });
}

#[test]
fn generate_errors() {
    each_fixture(|name, _, model, r| {
        let g = r.greedy.len();
        let mut s = model.session(&SessionParams::default()).unwrap();
        assert_eq!(s.generate(&greedy(4), None).unwrap_err().status, Status::InvalidArgument, "{name}");
        s.set_images(&r.pixels, r.n_images).unwrap();
        assert_eq!(s.generate(&greedy(4), None).unwrap_err().status, Status::InvalidArgument);

        let mut s = prompt_session(model, r, 0);
        let bad = [
            GenerateParams { num_beams: 0, ..greedy(g) },
            GenerateParams { do_sample: true, temperature: 0.0, ..greedy(g) },
            GenerateParams { do_sample: true, top_p: 0.0, ..greedy(g) },
            GenerateParams { do_sample: true, top_p: 1.5, ..greedy(g) },
            GenerateParams { do_sample: true, temperature: f32::NAN, ..greedy(g) },
        ];
        for p in &bad {
            assert_eq!(s.generate(p, None).unwrap_err().status, Status::InvalidArgument, "{name}: {p:?}");
        }
        // Raw: bad struct_size, capacity < max_new_tokens, NULL out_count;
        // the out parameters stay untouched.
        let mut p = greedy(g).to_raw().unwrap();
        let mut out = [-5i32; 64];
        let mut count = 999usize;
        let mut reason: sys::flamingo_stop_reason = -9;
        for size in [0u32, 4, 56, 79] {
            p.struct_size = size;
            let st = unsafe {
                sys::flamingo_session_generate(s.as_ptr(), &p, out.as_mut_ptr(), 64, &mut count, &mut reason)
            };
            assert_eq!(st, sys::FLAMINGO_ERROR_INVALID_ARGUMENT, "{name}: struct_size {size}");
        }
        p.struct_size = std::mem::size_of::<sys::flamingo_generate_params>() as u32;
        let st =
            unsafe { sys::flamingo_session_generate(s.as_ptr(), &p, out.as_mut_ptr(), g - 1, &mut count, &mut reason) };
        assert_eq!(st, sys::FLAMINGO_ERROR_BUFFER_TOO_SMALL);
        let st = unsafe {
            sys::flamingo_session_generate(s.as_ptr(), &p, out.as_mut_ptr(), 64, std::ptr::null_mut(), &mut reason)
        };
        assert_eq!(st, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
        assert!(out.iter().all(|&x| x == -5) && count == 999 && reason == -9, "{name}: outs modified on error");
        assert_eq!(s.len(), r.ids.len());
        assert_eq!(s.generate(&greedy(g), None).unwrap().tokens, r.greedy);
    });
}

// ---- copy, truncate, lifetime ---------------------------------------------------

#[test]
fn copy_is_independent() {
    each_fixture(|name, _, model, r| {
        let (l, g) = (r.ids.len(), r.greedy.len());
        let mut s = prompt_session(model, r, 0);
        let mut c = s.copy().unwrap();
        assert_ne!(c.as_ptr(), s.as_ptr());
        assert_eq!(c.len(), l);
        assert_eq!(c.generate(&greedy(g), None).unwrap().tokens, r.greedy, "{name}");
        assert_eq!((c.len(), s.len()), (l + g, l));
        let mut d = s.copy().unwrap();
        assert_eq!(s.generate(&greedy(g), None).unwrap().tokens, r.greedy);
        drop(s);
        drop(c);
        assert_eq!(d.len(), l);
        let mut e = d.copy().unwrap();
        assert_eq!(d.generate(&greedy(g), None).unwrap().tokens, r.greedy);
        drop(d);
        assert_eq!(e.generate(&greedy(g), None).unwrap().tokens, r.greedy);
    });
}

#[test]
fn truncate_and_reeval() {
    each_fixture(|name, _, model, r| {
        let l = r.ids.len();
        let mut s = model.session(&SessionParams::default()).unwrap();
        s.set_images(&r.pixels, r.n_images).unwrap();
        let full = s.eval(&r.ids, true).unwrap();
        for k in [l - 1, l / 2, 0] {
            s.truncate(k).unwrap();
            assert_eq!(s.len(), k);
            let again = s.eval(&r.ids[k..], true).unwrap();
            assert!(rel_err(&again, &full[k * r.vocab..]) <= 1e-6, "{name}: truncate({k})");
            assert!(rel_err(&again, r.rows(k, l)) <= TOL, "{name}: truncate({k}) vs reference");
        }
        assert_eq!(s.generate(&greedy(r.greedy.len()), None).unwrap().tokens, r.greedy);
        s.truncate(l).unwrap();
        assert_eq!(s.generate(&greedy(4), None).unwrap_err().status, Status::InvalidArgument, "needs a new eval");
        assert_eq!(s.truncate(l + 1).unwrap_err().status, Status::InvalidArgument);
        assert_eq!(s.truncate(usize::MAX).unwrap_err().status, Status::InvalidArgument);
        assert_eq!(s.len(), l);
    });
}

#[test]
fn session_outlives_model() {
    each_fixture(|name, dir, _, r| {
        let model = Model::load(dir, &ModelParams::default()).unwrap();
        let mut s = model.session(&SessionParams::default()).unwrap();
        drop(model);
        s.set_images(&r.pixels, r.n_images).unwrap();
        assert!(rel_err(&s.eval(&r.ids, true).unwrap(), &r.logits) <= TOL, "{name}");
        assert_eq!(s.generate(&greedy(r.greedy.len()), None).unwrap().tokens, r.greedy);
    });
}

#[test]
fn freed_session_is_rejected() {
    let Some(dir) = common::any_fixture() else { return };
    let model = Model::load(&dir, &ModelParams::default()).unwrap();
    let s = model.session(&SessionParams::default()).unwrap();
    let stale = s.as_ptr();
    drop(s);
    let mut n = 12345usize;
    assert_eq!(unsafe { sys::flamingo_session_length(stale, &mut n) }, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    assert_eq!(n, 12345);
    assert!(!flamingo::last_error().is_empty());
    let mut out = [0i32; 4];
    let mut count = 777usize;
    let st = unsafe {
        sys::flamingo_session_generate(stale, std::ptr::null(), out.as_mut_ptr(), 4, &mut count, std::ptr::null_mut())
    };
    assert_eq!(st, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    assert_eq!(count, 777);
    assert_eq!(unsafe { sys::flamingo_session_truncate(stale, 0) }, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    let mut copy: *mut sys::flamingo_session = std::ptr::null_mut();
    assert_eq!(unsafe { sys::flamingo_session_copy(stale, &mut copy) }, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    assert!(copy.is_null());
    // NULL handles.
    assert_eq!(unsafe { sys::flamingo_session_length(std::ptr::null(), &mut n) }, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    let mut s: *mut sys::flamingo_session = std::ptr::null_mut();
    let st = unsafe { sys::flamingo_session_init(std::ptr::null_mut(), std::ptr::null(), &mut s) };
    assert_eq!(st, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    assert!(s.is_null());
    let bad = sys::flamingo_session_params { struct_size: 4, n_ctx: 0 };
    let st = unsafe { sys::flamingo_session_init(model.as_ptr(), &bad, &mut s) };
    assert_eq!(st, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    assert!(s.is_null());
    unsafe { sys::flamingo_session_free(std::ptr::null_mut()) };
}

// ---- threads --------------------------------------------------------------------

fn assert_send<T: Send>() {}

// Compiles only while Session is not Sync (the static_assertions trick:
// with a Sync Session both impls apply and the call is ambiguous).
trait AmbiguousIfSync<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
#[allow(dead_code)]
struct IsSync;
impl<T: ?Sized + Sync> AmbiguousIfSync<IsSync> for T {}

#[test]
fn session_is_send_not_sync() {
    assert_send::<Session>();
    <Session as AmbiguousIfSync<_>>::check();
}

#[test]
fn sessions_on_threads() {
    let Some(dir) = common::any_fixture() else { return };
    let r = Arc::new(Reference::load(&dir));
    let model = Arc::new(Model::load(&dir, &ModelParams::default()).unwrap());
    // Sessions created here and moved to other threads, and sessions
    // created on them, all from one shared model.
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let moved = if i % 2 == 0 { Some(prompt_session(&model, &r, 0)) } else { None };
            let (model, r) = (Arc::clone(&model), Arc::clone(&r));
            std::thread::spawn(move || {
                let mut s = moved.unwrap_or_else(|| prompt_session(&model, &r, 0));
                s.generate(&greedy(r.greedy.len()), None).unwrap().tokens
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), r.greedy);
    }
}
