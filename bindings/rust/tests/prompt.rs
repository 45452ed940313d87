//! Media, interleaved prompts, image preprocessing, batch generation and
//! the high-level API (logits, encode_media, generate_text, caption, vqa).

mod common;

use common::safetensors::{Reference, read, rel_err};
use common::{at, image, json_ids, json_str, reference_json};
use flamingo::{
    GenerateParams, Media, Model, ModelParams, SessionParams, Status, StopReason, batch_generate, caption_prompt,
    postprocess_caption, postprocess_vqa, sys, vqa_prompt,
};
use std::path::{Path, PathBuf};

const PROMPT: &str = "<image>Output:a photo<|endofchunk|>\n<image>Output:";

fn each_fixture(mut f: impl FnMut(&str, &Path, &Model)) {
    for name in common::FIXTURES {
        let Some(dir) = common::fixture(name) else { continue };
        let model = Model::load(&dir, &ModelParams::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        f(name, &dir, &model);
    }
}

/// Pillow's decoded RGB pixels of an image: (bytes, width, height).
fn decoded(name: &str) -> (Vec<u8>, u32, u32) {
    let g = read(&common::images_dir().join("goldens.safetensors")).unwrap();
    let t = &g[&format!("{name}.decoded")];
    assert_eq!(t.shape[2], 3);
    (t.u8.clone(), t.shape[1] as u32, t.shape[0] as u32)
}

fn greedy(n: u32) -> GenerateParams {
    GenerateParams { max_new_tokens: n, ..GenerateParams::default() }
}

// ---- preprocessing and media kinds ---------------------------------------------

#[test]
fn preprocess_kinds_agree() {
    each_fixture(|name, _, model| {
        for file in ["exif1_40x24.jpg", "rgb_37x53.png", "exif6_40x24.jpg"] {
            let path = image(file);
            let a = model.preprocess_image(&Media::file(&path)).unwrap();
            assert_eq!(a.len(), model.info().image_floats());
            let bytes = std::fs::read(&path).unwrap();
            assert_eq!(model.preprocess_image(&Media::Encoded(&bytes)).unwrap(), a, "{name}: {file}");
            let (rgb, w, h) = decoded(file);
            assert_eq!(model.preprocess_image(&Media::rgb(&rgb, w, h)).unwrap(), a, "{name}: {file} as RGB");
        }
        let g = read(&common::images_dir().join("goldens.safetensors")).unwrap();
        let t = &g["rgba_80x64.png.raw"];
        let rgba = Media::Rgb { data: &t.u8, width: t.shape[1] as u32, height: t.shape[0] as u32, channels: 4 };
        assert_eq!(
            model.preprocess_image(&rgba).unwrap(),
            model.preprocess_image(&Media::file(&image("rgba_80x64.png"))).unwrap()
        );
        let golden = &g["rgb_37x53.png@32.normalized"];
        assert!(rel_err(&model.preprocess_image(&Media::file(&image("rgb_37x53.png"))).unwrap(), &golden.f32) <= 1e-5);
    });
}

#[test]
fn preprocess_errors() {
    let Some(dir) = common::any_fixture() else { return };
    let model = Model::load(&dir, &ModelParams::default()).unwrap();
    let cases: &[(&str, Status)] = &[
        ("bad/truncated.jpg", Status::InvalidFormat),
        ("bad/truncated.png", Status::InvalidFormat),
        ("bad/garbage.bin", Status::InvalidFormat),
        ("bad/bad_crc.png", Status::InvalidFormat),
        ("bad/no_eoi.jpg", Status::InvalidFormat),
        ("bad/huge.png", Status::Unsupported),
        ("bad/image.gif", Status::Unsupported),
    ];
    for (file, want) in cases {
        let p = image(file);
        assert_eq!(model.preprocess_image(&Media::file(&p)).unwrap_err().status, *want, "{file}");
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(model.preprocess_image(&Media::Encoded(&bytes)).unwrap_err().status, *want, "{file}");
    }
    let missing = common::images_dir().join("no-such-image.jpg");
    assert_eq!(model.preprocess_image(&Media::file(&missing)).unwrap_err().status, Status::Io);
    let px = vec![0.0f32; model.info().image_floats()];
    assert_eq!(model.preprocess_image(&Media::Pixels(&px)).unwrap_err().status, Status::InvalidArgument);
    assert_eq!(model.preprocess_image(&Media::rgb(&[0u8; 11], 2, 2)).unwrap_err().status, Status::InvalidArgument);
    let nul = PathBuf::from("a\0b");
    assert_eq!(model.preprocess_image(&Media::file(&nul)).unwrap_err().status, Status::InvalidArgument);
}

#[test]
fn set_prompt_kinds_give_identical_logits() {
    each_fixture(|name, _, model| {
        let files = ["rgb_37x53.png", "exif1_40x24.jpg"];
        let paths: Vec<PathBuf> = files.iter().map(|f| image(f)).collect();
        let bytes: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
        let rgb: Vec<(Vec<u8>, u32, u32)> = files.iter().map(|f| decoded(f)).collect();
        let pixels: Vec<Vec<f32>> = paths.iter().map(|p| model.preprocess_image(&Media::file(p)).unwrap()).collect();
        let visual: Vec<Vec<f32>> = pixels.iter().map(|p| model.encode_images(p, 1).unwrap()).collect();
        let kinds: Vec<(&str, Vec<Media<'_>>)> = vec![
            ("file", paths.iter().map(Media::file).collect()),
            ("encoded", bytes.iter().map(|b| Media::Encoded(b)).collect()),
            ("rgb", rgb.iter().map(|(d, w, h)| Media::rgb(d, *w, *h)).collect()),
            ("pixels", pixels.iter().map(|p| Media::Pixels(p)).collect()),
            ("visual tokens", visual.iter().map(|v| Media::VisualTokens(v)).collect()),
            ("mixed", vec![Media::rgb(&rgb[0].0, rgb[0].1, rgb[0].2), Media::VisualTokens(&visual[1])]),
        ];
        let mut want: Option<(Vec<f32>, usize, Vec<i32>)> = None;
        for (kind, media) in &kinds {
            let mut s = model.session(&SessionParams::default()).unwrap();
            let logits = s.set_prompt(PROMPT, media).unwrap();
            let n = s.len();
            let tokens = s.generate(&greedy(5), None).unwrap().tokens;
            match &want {
                None => want = Some((logits, n, tokens)),
                Some(w) => assert!(w.0 == logits && w.1 == n && w.2 == tokens, "{name}: {kind} differs from file"),
            }
        }
        // encode_media and logits agree with set_prompt's media.
        let v = model.encode_media(&kinds[0].1).unwrap();
        assert_eq!(v, [visual[0].clone(), visual[1].clone()].concat());
        for (_, media) in &kinds[1..] {
            assert_eq!(model.encode_media(media).unwrap(), v, "{name}");
        }
        let ids = model.tokenize(PROMPT, true).unwrap();
        let all = model.logits(&ids, &kinds[0].1).unwrap();
        assert_eq!(all.len(), ids.len() * model.info().vocab_size as usize);
        let last = &all[all.len() - model.info().vocab_size as usize..];
        assert!(rel_err(last, &want.as_ref().unwrap().0) <= 1e-5, "{name}");
    });
}

#[test]
fn set_prompt_and_logits_match_reference() {
    each_fixture(|name, dir, model| {
        let r = Reference::load(dir);
        let j = reference_json(dir);
        let f = r.image_floats();
        let media: Vec<Media<'_>> = (0..r.n_images).map(|k| Media::Pixels(&r.pixels[k * f..(k + 1) * f])).collect();
        let mut s = model.session(&SessionParams::default()).unwrap();
        let last = s.set_prompt(json_str(at(&j, &["prompt"])), &media).unwrap();
        assert_eq!(s.len(), r.ids.len(), "{name}");
        assert!(rel_err(&last, r.rows(r.ids.len() - 1, r.ids.len())) <= 1e-4, "{name}");
        let g = s.generate(&GenerateParams { max_new_tokens: r.greedy.len() as u32, ..Default::default() }, None);
        assert_eq!(g.unwrap().tokens, r.greedy, "{name}");
        let all = model.logits(&r.ids, &media).unwrap();
        assert!(rel_err(&all, &r.logits) <= 1e-4, "{name}: Model::logits");
        let v = model.encode_media(&media).unwrap();
        assert!(rel_err(&v, &r.resampler) <= 1e-4, "{name}: encode_media");
    });
}

#[test]
fn set_prompt_errors_leave_the_session_unchanged() {
    each_fixture(|name, dir, model| {
        let j = reference_json(dir);
        let img = image("exif1_40x24.jpg");
        let m = Media::file(&img);
        let mut s = model.session(&SessionParams::default()).unwrap();
        s.set_prompt("<image>Output:", &[m]).unwrap();
        let n = s.len();
        let truncated = image("bad/truncated.jpg");
        let missing = common::images_dir().join("no-such-image.jpg");
        let short = vec![0.0f32; 5];
        let cases: Vec<(&[u8], Vec<Media<'_>>, Status)> = vec![
            (PROMPT.as_bytes(), vec![m], Status::InvalidArgument),
            (PROMPT.as_bytes(), vec![m, m, m], Status::InvalidArgument),
            (b"no marker", vec![m], Status::InvalidArgument),
            (json_str(at(&j, &["extra_markers", "prompt"])).as_bytes(), vec![m, m], Status::InvalidArgument),
            (b"<image>\xff", vec![m], Status::InvalidArgument),
            (b"<image>", vec![Media::Pixels(&short)], Status::InvalidArgument),
            (b"<image>", vec![Media::VisualTokens(&short)], Status::InvalidArgument),
            (PROMPT.as_bytes(), vec![m, Media::file(&truncated)], Status::InvalidFormat),
            (PROMPT.as_bytes(), vec![m, Media::file(&missing)], Status::Io),
            (b"a\0b", vec![], Status::InvalidArgument),
        ];
        for (prompt, media, want) in &cases {
            let mut logits = vec![3.0f32; model.info().vocab_size as usize];
            let e = s.set_prompt_into(prompt, media, Some(&mut logits)).unwrap_err();
            assert_eq!(e.status, *want, "{name}: {}", String::from_utf8_lossy(prompt));
            assert!(logits.iter().all(|&x| x == 3.0), "{name}: logits written on error");
            assert_eq!(s.len(), n, "{name}: session changed on error");
        }
        let mut small = vec![0.0f32; 4];
        assert_eq!(s.set_prompt_into(b"<image>", &[m], Some(&mut small)).unwrap_err().status, Status::BufferTooSmall);
        // The session continues as a fresh one does.
        let mut fresh = model.session(&SessionParams::default()).unwrap();
        fresh.set_prompt("<image>Output:", &[m]).unwrap();
        assert_eq!(s.generate(&greedy(5), None).unwrap(), fresh.generate(&greedy(5), None).unwrap(), "{name}");
        let mut tiny = model.session(&SessionParams { n_ctx: 4 }).unwrap();
        let e = tiny.set_prompt("<image>Output: a prompt longer than four tokens", &[m]).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(tiny.is_empty());
    });
}

#[test]
fn media_stride_is_struct_size() {
    each_fixture(|name, _, model| {
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Bigger {
            m: sys::flamingo_media,
            tail: [u8; 40],
        }
        let paths = [image("rgb_37x53.png"), image("exif1_40x24.jpg")];
        let cpaths: Vec<std::ffi::CString> =
            paths.iter().map(|p| std::ffi::CString::new(p.to_str().unwrap()).unwrap()).collect();
        let mut big = [Bigger { m: sys::flamingo_media::new(sys::FLAMINGO_MEDIA_FILE), tail: [0xA5; 40] }; 2];
        for (k, b) in big.iter_mut().enumerate() {
            b.m.struct_size = std::mem::size_of::<Bigger>() as u32;
            b.m.path = cpaths[k].as_ptr();
        }
        let v = model.info().vocab_size as usize;
        let mut got = vec![0.0f32; v];
        let s = model.session(&SessionParams::default()).unwrap();
        let prompt = std::ffi::CString::new(PROMPT).unwrap();
        let st = unsafe {
            sys::flamingo_session_set_prompt(s.as_ptr(), prompt.as_ptr(), big.as_ptr().cast(), 2, got.as_mut_ptr(), v)
        };
        assert_eq!(st, sys::FLAMINGO_OK, "{name}: {}", flamingo::last_error());
        let mut s2 = model.session(&SessionParams::default()).unwrap();
        let want = s2.set_prompt(PROMPT, &[Media::file(&paths[0]), Media::file(&paths[1])]).unwrap();
        assert_eq!(got, want, "{name}");
        big[0].m.struct_size = 8;
        let st = unsafe {
            sys::flamingo_session_set_prompt(s.as_ptr(), prompt.as_ptr(), big.as_ptr().cast(), 2, got.as_mut_ptr(), v)
        };
        assert_eq!(st, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    });
}

// ---- batch generation --------------------------------------------------------------

#[test]
fn batch_generate_equals_alone() {
    each_fixture(|name, _, model| {
        let imgs = [image("rgb_37x53.png"), image("exif1_40x24.jpg"), image("exif6_40x24.jpg")];
        let prompts: Vec<(&str, Vec<Media<'_>>)> = vec![
            (PROMPT, vec![Media::file(&imgs[0]), Media::file(&imgs[1])]),
            ("<image>Output:", vec![Media::file(&imgs[2])]),
            ("<image>Question:What is it? Short answer:", vec![Media::file(&imgs[1])]),
        ];
        let base =
            GenerateParams { max_new_tokens: 10, stop_at_endofchunk: false, stop_at_eos: false, ..Default::default() };
        for params in [
            base,
            GenerateParams { num_beams: 3, length_penalty: 0.0, ..base },
            GenerateParams { do_sample: true, top_k: 5, seed: 9, ..base },
        ] {
            let alone: Vec<_> = prompts
                .iter()
                .enumerate()
                .map(|(i, (p, m))| {
                    let mut s = model.session(&SessionParams::default()).unwrap();
                    s.set_prompt(p, m).unwrap();
                    s.generate(&GenerateParams { seed: params.seed + i as u64, ..params }, None).unwrap()
                })
                .collect();
            let mut sessions: Vec<_> = prompts
                .iter()
                .map(|(p, m)| {
                    let mut s = model.session(&SessionParams::default()).unwrap();
                    s.set_prompt(p, m).unwrap();
                    s
                })
                .collect();
            let lens: Vec<usize> = sessions.iter().map(|s| s.len()).collect();
            let mut refs: Vec<&mut flamingo::Session> = sessions.iter_mut().collect();
            let got = batch_generate(&mut refs, &params).unwrap();
            assert_eq!(got, alone, "{name}: {params:?}");
            for (k, s) in sessions.iter().enumerate() {
                assert_eq!(s.len(), lens[k] + got[k].tokens.len());
            }
        }
    });
}

#[test]
fn batch_generate_matches_reference() {
    each_fixture(|name, dir, model| {
        let j = reference_json(dir);
        let t = read(&dir.join("reference.safetensors")).unwrap();
        let px = &t["batch.pixels"];
        let (per_row, f) = (px.shape[1], 3 * px.shape[4] * px.shape[5]);
        let counts = json_ids(at(&j, &["batch", "images_per_row"]));
        let common::safetensors::Json::Arr(prompts) = at(&j, &["batch", "prompts"]) else { panic!() };
        let common::safetensors::Json::Arr(want) = at(&j, &["batch", "greedy_ids"]) else { panic!() };
        let mut sessions: Vec<_> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let media: Vec<Media<'_>> = (0..counts[i] as usize)
                    .map(|k| Media::Pixels(&px.f32[(i * per_row + k) * f..(i * per_row + k + 1) * f]))
                    .collect();
                let mut s = model.session(&SessionParams::default()).unwrap();
                s.set_prompt(json_str(p), &media).unwrap();
                s
            })
            .collect();
        let mut refs: Vec<&mut flamingo::Session> = sessions.iter_mut().collect();
        let steps = json_ids(&want[0]).len() as u32;
        let params = GenerateParams {
            max_new_tokens: steps,
            stop_at_endofchunk: false,
            stop_at_eos: false,
            ..Default::default()
        };
        let got = batch_generate(&mut refs, &params).unwrap();
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.tokens, json_ids(&want[i]), "{name}: row {i}");
            assert_eq!(g.stop_reason, StopReason::MaxTokens);
        }
    });
}

#[test]
fn batch_generate_errors() {
    let Some(dir) = common::any_fixture() else { return };
    let model = Model::load(&dir, &ModelParams::default()).unwrap();
    let img = image("exif1_40x24.jpg");
    let mut a = model.session(&SessionParams::default()).unwrap();
    let mut b = model.session(&SessionParams::default()).unwrap();
    a.set_prompt("<image>Output:", &[Media::file(&img)]).unwrap();
    let n = a.len();
    let e = batch_generate(&mut [&mut a, &mut b], &greedy(4)).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert_eq!((a.len(), b.len()), (n, 0));
    assert_eq!(batch_generate(&mut [], &greedy(4)).unwrap_err().status, Status::InvalidArgument);
    let bad = GenerateParams { num_beams: 0, ..greedy(4) };
    assert_eq!(batch_generate(&mut [&mut a], &bad).unwrap_err().status, Status::InvalidArgument);
    // Sessions of two models.
    let other = Model::load(&dir, &ModelParams::default()).unwrap();
    let mut o = other.session(&SessionParams::default()).unwrap();
    o.set_prompt("<image>Output:", &[Media::file(&img)]).unwrap();
    assert_eq!(batch_generate(&mut [&mut a, &mut o], &greedy(4)).unwrap_err().status, Status::InvalidArgument);
    // Raw: the same session twice.
    let raws = [a.as_ptr(), a.as_ptr()];
    let p = greedy(4).to_raw().unwrap();
    let mut out = [0i32; 8];
    let mut counts = [0usize; 2];
    let st = unsafe {
        sys::flamingo_batch_generate(
            raws.as_ptr(),
            2,
            &p,
            out.as_mut_ptr(),
            4,
            counts.as_mut_ptr(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(st, sys::FLAMINGO_ERROR_INVALID_ARGUMENT);
    assert_eq!(a.len(), n);
    let g = batch_generate(&mut [&mut a], &greedy(4)).unwrap();
    assert_eq!(a.len(), n + g[0].tokens.len());
}

// ---- high-level API -----------------------------------------------------------------

#[test]
fn prompts_and_postprocessing() {
    assert_eq!(caption_prompt(&[]), "<image>Output:");
    assert_eq!(
        caption_prompt(&["A cat.", "Two dogs."]),
        "<image>Output:A cat.<|endofchunk|>\n<image>Output:Two dogs.<|endofchunk|>\n<image>Output:"
    );
    assert_eq!(vqa_prompt("What is it?", &[]), "<image>Question:What is it? Short answer:");
    assert_eq!(
        vqa_prompt("Color?", &[("Shape?", "round")]),
        "<image>Question:Shape? Short answer:round<|endofchunk|>\n<image>Question:Color? Short answer:"
    );
    assert_eq!(postprocess_caption(" A \"cat\" on a mat. Output: more"), "A cat on a mat.");
    assert_eq!(postprocess_caption("\u{3000}x\u{1c}\n"), "x"); // Python's str.strip() set
    assert_eq!(postprocess_caption("Output"), "");
    assert_eq!(postprocess_vqa(" red, blue Question: x"), "red");
    assert_eq!(postprocess_vqa("yes Short answer: no"), "yes");
    assert_eq!(postprocess_vqa("two Answer: three, four"), "two");
    assert_eq!(postprocess_vqa("a,b, c"), "a,b");
    let c = GenerateParams::captioning();
    assert_eq!((c.num_beams, c.length_penalty, c.max_new_tokens), (3, 0.0, 20));
    assert_eq!(GenerateParams::vqa().max_new_tokens, 5);
}

#[test]
fn generate_text_caption_and_vqa() {
    each_fixture(|name, _, model| {
        let q = image("exif1_40x24.jpg");
        let shot = image("rgb_48x48.png");
        let params = GenerateParams::captioning();
        let g = model.generate_tokens("<image>Output:", &[Media::file(&q)], &params, None).unwrap();
        let mut s = model.session(&SessionParams::default()).unwrap();
        s.set_prompt("<image>Output:", &[Media::file(&q)]).unwrap();
        assert_eq!(s.generate(&params, None).unwrap(), g, "{name}");

        let mut pieces: Vec<String> = Vec::new();
        let mut push = |p: &str| pieces.push(p.to_string());
        let text = model.generate_text("<image>Output:", &[Media::file(&q)], &params, Some(&mut push)).unwrap();
        assert_eq!(text, pieces.concat(), "{name}");
        assert!(pieces.iter().all(|p| !p.is_empty()));
        let mut d = model.detokenizer(true).unwrap();
        let mut again = String::new();
        for &t in &g.tokens {
            again.push_str(&d.push(t).unwrap());
        }
        again.push_str(&d.finish().unwrap());
        assert_eq!(text, again, "{name}");

        assert_eq!(model.caption(&Media::file(&q), &[]).unwrap(), postprocess_caption(&text), "{name}");
        let one =
            model.generate_text(&caption_prompt(&["A square."]), &[Media::file(&shot), Media::file(&q)], &params, None);
        assert_eq!(
            model.caption(&Media::file(&q), &[(Media::file(&shot), "A square.")]).unwrap(),
            postprocess_caption(&one.unwrap())
        );
        let raw =
            model.generate_text(&vqa_prompt("What is it?", &[]), &[Media::file(&q)], &GenerateParams::vqa(), None);
        assert_eq!(model.vqa(&Media::file(&q), "What is it?", &[]).unwrap(), postprocess_vqa(&raw.unwrap()));
        let raw = model.generate_text(
            &vqa_prompt("What is it?", &[("Shape?", "square")]),
            &[Media::file(&shot), Media::file(&q)],
            &GenerateParams::vqa(),
            None,
        );
        assert_eq!(
            model.vqa(&Media::file(&q), "What is it?", &[(Media::file(&shot), "Shape?", "square")]).unwrap(),
            postprocess_vqa(&raw.unwrap())
        );
        // The same image as bytes gives the same caption.
        let bytes = std::fs::read(&q).unwrap();
        assert_eq!(model.caption(&Media::Encoded(&bytes), &[]).unwrap(), model.caption(&Media::file(&q), &[]).unwrap());
        // Errors come back as errors.
        let bad = image("bad/truncated.png");
        assert_eq!(model.caption(&Media::file(&bad), &[]).unwrap_err().status, Status::InvalidFormat);
        let e = model.generate_text("<image><image>", &[Media::file(&q)], &params, None).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
    });
}

#[test]
fn caption_example_prints_the_caption() {
    let Some(dir) = common::fixture("mpt_tiny") else { return };
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/caption");
    if !exe.is_file() {
        eprintln!("skipped: {} is not built (cargo build --example caption)", exe.display());
        return;
    }
    let q = image("exif1_40x24.jpg");
    let out = std::process::Command::new(&exe).arg(&dir).arg(&q).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let model = Model::load(&dir, &ModelParams::default()).unwrap();
    let want = model.caption(&Media::file(&q), &[]).unwrap() + "\n";
    assert_eq!(out.stdout, want.as_bytes());
}
