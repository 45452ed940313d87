mod common;

use flamingo::{Backend, DeviceType, Model, ModelParams, Status};
use std::sync::Arc;

#[test]
fn version_and_abi() {
    let v = flamingo::version();
    let parts: Vec<&str> = v.split(['.', '-', '+']).collect();
    assert!(parts.len() >= 3 && parts[..3].iter().all(|p| p.parse::<u32>().is_ok()), "{v}");
    assert_eq!(flamingo::abi_version(), 1);
    flamingo::check_abi().unwrap();
}

#[test]
fn status_strings() {
    let all = [
        Status::InvalidArgument,
        Status::Io,
        Status::InvalidFormat,
        Status::Unsupported,
        Status::OutOfMemory,
        Status::Backend,
        Status::NotFound,
        Status::BufferTooSmall,
        Status::Cancelled,
        Status::Internal,
    ];
    let mut seen = std::collections::HashSet::new();
    for s in all {
        assert_eq!(Status::from_raw(s.raw()), Some(s));
        let d = s.description();
        assert!(!d.is_empty() && d != "unknown status", "{s:?}");
        assert!(seen.insert(d));
    }
    assert_eq!(Status::from_raw(0), None);
    assert_eq!(Status::from_raw(42), Some(Status::Unknown(42)));
    assert_eq!(flamingo::status_string(42), "unknown status");
    assert!(!flamingo::status_string(0).is_empty());
}

#[test]
fn devices_start_with_cpu() {
    let devs = flamingo::devices().unwrap();
    assert!(!devs.is_empty());
    assert_eq!(devs.len(), flamingo::device_count().unwrap());
    let cpu = &devs[0];
    assert_eq!(cpu.index, 0);
    assert_eq!(cpu.backend, Backend::Cpu);
    assert_eq!(cpu.device_type, DeviceType::Cpu);
    assert_eq!((cpu.platform_index, cpu.device_index), (-1, -1));
    assert!(!cpu.name.is_empty());
    assert_eq!(cpu.platform_name, "");
    assert!(cpu.compute_units >= 1 && cpu.memory_bytes > 0);
    for d in &devs[1..] {
        assert_eq!(d.backend, Backend::OpenCl);
    }
}

#[test]
fn device_out_of_range() {
    let n = flamingo::device_count().unwrap();
    let e = flamingo::device(n).unwrap_err();
    assert_eq!(e.status, Status::NotFound);
    assert!(!e.message.is_empty());
    assert_eq!(flamingo::device(usize::MAX).unwrap_err().status, Status::NotFound);
}

#[test]
fn load_missing_dir() {
    let dir = std::env::temp_dir().join("flamingo-rust-does-not-exist/model");
    let e = Model::load(&dir, &ModelParams::default()).unwrap_err();
    assert_eq!(e.status, Status::Io, "{e}");
    assert!(!e.message.is_empty());
    assert_eq!(e.to_string(), format!("{}: {}", Status::Io.description(), e.message));
    let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
    assert!(!boxed.to_string().is_empty());
}

#[test]
fn load_garbage_config() {
    let dir = common::garbage_model_dir("garbage");
    let e = Model::load(&dir, &ModelParams::default()).unwrap_err();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(e.status, Status::InvalidFormat, "{e}");
    assert!(!e.message.is_empty());
}

#[test]
fn load_path_with_nul() {
    let e = Model::load("a\0b", &ModelParams::default()).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
}

#[test]
fn last_error_is_per_thread() {
    let mine = flamingo::device(1 << 30).unwrap_err().message;
    assert_eq!(flamingo::last_error(), mine);
    let (before, other) = std::thread::spawn(|| {
        let before = flamingo::last_error();
        let e = Model::load("/nonexistent/flamingo/model", &ModelParams::default()).unwrap_err();
        (before, e)
    })
    .join()
    .unwrap();
    assert_eq!(before, "");
    assert_eq!(other.status, Status::Io);
    assert_ne!(other.message, mine);
    assert_eq!(flamingo::last_error(), mine);
}

#[allow(clippy::excessive_precision)] // the literals of config.json
fn assert_sane(info: &flamingo::ModelInfo, name: &str) {
    assert_eq!(info.architecture, "openflamingo");
    assert_eq!(info.vision_kind, "clip_vit");
    let families: &[&str] = match name {
        "mpt_tiny" => &["mpt", "mosaic_gpt"],
        "gpt_neox_tiny" => &["gpt_neox"],
        "llama_tiny" => &["llama"],
        _ => &["mpt", "mosaic_gpt", "gpt_neox", "llama"],
    };
    assert!(families.contains(&info.lm_family.as_str()), "{name}: lm_family {}", info.lm_family);
    assert!(info.image_size > 0 && info.patch_size > 0 && info.image_size % info.patch_size == 0);
    let g = info.image_size / info.patch_size;
    assert!(info.vision_tokens == g * g || info.vision_tokens == g * g + 1, "vision_tokens {}", info.vision_tokens);
    assert!(info.vision_width > 0 && info.vision_layers > 0 && info.vision_heads > 0);
    assert_eq!(info.vision_width % info.vision_heads, 0);
    assert!(info.resampler_depth > 0 && info.resampler_heads > 0 && info.resampler_dim_head > 0);
    assert!(info.num_latents > 0);
    assert!(info.hidden_size > 0 && info.num_layers > 0 && info.num_heads > 0);
    assert_eq!(info.hidden_size % info.num_heads, 0);
    assert!(info.intermediate_size > 0 && info.max_seq_len > 0 && info.vocab_size > 0);
    assert!(info.cross_attn_every_n_layers >= 1);
    assert_eq!(info.num_cross_attn_layers, info.num_layers / info.cross_attn_every_n_layers);
    for id in [info.image_token_id, info.endofchunk_token_id, info.pad_token_id, info.bos_token_id, info.eos_token_id] {
        assert!(id >= -1 && (id as i64) < info.vocab_size as i64, "token id {id}");
    }
    assert!(info.image_token_id >= 0 && info.endofchunk_token_id >= 0);
    assert_ne!(info.image_token_id, info.endofchunk_token_id);
    for k in 0..3 {
        assert!(info.image_mean[k] > 0.0 && info.image_mean[k] < 1.0);
        assert!(info.image_std[k] > 0.0 && info.image_std[k] < 1.0);
    }
    assert_eq!(info.image_mean, [0.48145466f32, 0.4578275, 0.40821073]);
    assert_eq!(info.image_std, [0.26862954f32, 0.26130258, 0.27577711]);
    assert!(info.num_parameters > 0);
    assert!(info.weight_bytes >= 2 * info.num_parameters && info.weight_bytes <= 4 * info.num_parameters);
}

#[test]
fn model_info_of_each_fixture() {
    for name in common::FIXTURES {
        let Some(dir) = common::fixture(name) else { continue };
        let model = Model::load(&dir, &ModelParams::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_sane(model.info(), name);
        assert_eq!(&model.query_info().unwrap(), model.info());
        let files: u64 = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        assert!(model.info().weight_bytes <= files);
    }
}

#[test]
fn explicit_params_and_bad_device() {
    let Some(dir) = common::any_fixture() else { return };
    let a = Model::load(&dir, &ModelParams { backend: Backend::Cpu, device_index: -1, n_threads: 1 }).unwrap();
    let b = Model::load(&dir, &ModelParams { device_index: 0, ..ModelParams::default() }).unwrap();
    assert_eq!(a.info(), b.info());
    let e = Model::load(&dir, &ModelParams { device_index: 1 << 20, ..ModelParams::default() }).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{e}");
    let e = Model::load(&dir, &ModelParams { backend: Backend::Unknown(77), ..ModelParams::default() }).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument, "{e}");
}

#[test]
fn drop_releases() {
    let Some(dir) = common::any_fixture() else { return };
    for _ in 0..3 {
        let m = Model::load(&dir, &ModelParams::default()).unwrap();
        drop(m);
    }
}

fn assert_send_sync<T: Send + Sync>() {}

#[test]
fn model_is_send_and_sync() {
    assert_send_sync::<Model>();
    assert_send_sync::<flamingo::Error>();
}

#[test]
fn concurrent_loads_and_shared_model() {
    let Some(dir) = common::any_fixture() else { return };
    let shared = Arc::new(Model::load(&dir, &ModelParams::default()).unwrap());
    let expect = shared.info().clone();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let shared = Arc::clone(&shared);
            let dir = dir.clone();
            std::thread::spawn(move || {
                let own = Model::load(&dir, &ModelParams { n_threads: 1, ..ModelParams::default() }).unwrap();
                (own.info().clone(), shared.query_info().unwrap())
            })
        })
        .collect();
    for h in handles {
        let (own, from_shared) = h.join().unwrap();
        assert_eq!(own, expect);
        assert_eq!(from_shared, expect);
    }
}
