//! The OpenCL backend from Rust: each fixture model gives the CPU backend's
//! logits (within 1e-3 relative) and greedy tokens. Skipped without an
//! OpenCL device (CI runs it on PoCL).

mod common;

use common::image;
use flamingo::{Backend, GenerateParams, Media, Model, ModelParams, Status, devices};

fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    let num = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
    num / b.iter().map(|y| y.abs()).fold(f32::MIN_POSITIVE, f32::max)
}

#[test]
fn opencl_matches_cpu() {
    let opencl: Vec<_> = devices().unwrap().into_iter().filter(|d| d.backend == Backend::OpenCl).collect();
    if opencl.is_empty() {
        eprintln!("skip: no OpenCL device");
        return;
    }
    let img = image("exif1_40x24.jpg");
    let media = [Media::file(&img)];
    let greedy = GenerateParams { max_new_tokens: 6, stop_at_endofchunk: false, ..GenerateParams::default() };
    for name in common::FIXTURES {
        let Some(dir) = common::fixture(name) else { continue };
        let cpu = Model::load(&dir, &ModelParams::default()).unwrap();
        let dev = Model::load(&dir, &ModelParams { backend: Backend::OpenCl, ..ModelParams::default() })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let ids = cpu.tokenize("<image>Output:a photo", true).unwrap();
        let (a, b) = (cpu.logits(&ids, &media).unwrap(), dev.logits(&ids, &media).unwrap());
        assert!(rel_err(&b, &a) <= 1e-3, "{name}: {}", rel_err(&b, &a));
        let ta = cpu.generate_tokens("<image>Output:", &media, &greedy, None).unwrap();
        let tb = dev.generate_tokens("<image>Output:", &media, &greedy, None).unwrap();
        assert_eq!(ta.tokens, tb.tokens, "{name}: greedy tokens");
    }
    let dir = common::any_fixture().unwrap();
    let e = Model::load(&dir, &ModelParams { backend: Backend::OpenCl, device_index: 0, ..ModelParams::default() })
        .unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{e}");
}
