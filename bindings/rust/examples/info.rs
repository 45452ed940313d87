//! cargo run --example info -- [MODEL_DIR]
//!
//! Prints the library version, the devices and the model info of MODEL_DIR,
//! byte-for-byte like bindings/c/example.c and `python -m flamingo info`.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

fn float(x: f32) -> String {
    let x = f64::from(x);
    if x.is_nan() {
        "nan".into()
    } else if x.is_infinite() {
        if x > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{x:.8}")
    }
}

/// "  key: value", or "  key:" when the value is empty.
fn line(out: &mut String, key: &str, value: impl ToString) {
    let v = value.to_string();
    if v.is_empty() {
        out.push_str(&format!("  {key}:\n"));
    } else {
        out.push_str(&format!("  {key}: {v}\n"));
    }
}

fn floats(v: &[f32; 3]) -> String {
    v.iter().map(|&x| float(x)).collect::<Vec<_>>().join(" ")
}

fn flush(out: &mut String) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.as_bytes());
    let _ = stdout.flush();
    out.clear();
}

fn run(path: Option<&OsStr>, out: &mut String) -> Result<(), flamingo::Error> {
    out.push_str(&format!("flamingo {} (abi {})\n", flamingo::version(), flamingo::abi_version()));
    flush(out);
    let n = flamingo::device_count()?;
    out.push_str(&format!("devices: {n}\n"));
    for i in 0..n {
        let d = flamingo::device(i)?;
        out.push_str(&format!("device {i}: {}\n", d.name));
        let backend = match d.backend {
            flamingo::Backend::Cpu => "cpu".to_string(),
            flamingo::Backend::OpenCl => "opencl".to_string(),
            flamingo::Backend::Unknown(raw) => raw.to_string(),
        };
        let ty = match d.device_type {
            flamingo::DeviceType::Cpu => "cpu".to_string(),
            flamingo::DeviceType::Gpu => "gpu".to_string(),
            flamingo::DeviceType::Accelerator => "accelerator".to_string(),
            flamingo::DeviceType::Other => "other".to_string(),
            flamingo::DeviceType::Unknown(raw) => raw.to_string(),
        };
        line(out, "backend", backend);
        line(out, "type", ty);
        line(out, "platform_index", d.platform_index);
        line(out, "device_index", d.device_index);
        line(out, "compute_units", d.compute_units);
        line(out, "memory_bytes", d.memory_bytes);
        line(out, "platform_name", &d.platform_name);
        line(out, "vendor", &d.vendor);
        line(out, "driver_version", &d.driver_version);
    }
    flush(out);
    let Some(path) = path else { return Ok(()) };
    let model = flamingo::Model::load(path, &flamingo::ModelParams::default())?;
    let m = model.info();
    // The path as given, byte for byte (it need not be UTF-8).
    flush(out);
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(b"model: ");
    let _ = stdout.write_all(path.as_bytes());
    let _ = stdout.write_all(b"\n");
    drop(stdout);
    line(out, "architecture", &m.architecture);
    line(out, "vision_kind", &m.vision_kind);
    line(out, "lm_family", &m.lm_family);
    line(out, "image_size", m.image_size);
    line(out, "patch_size", m.patch_size);
    line(out, "vision_width", m.vision_width);
    line(out, "vision_layers", m.vision_layers);
    line(out, "vision_heads", m.vision_heads);
    line(out, "vision_tokens", m.vision_tokens);
    line(out, "resampler_depth", m.resampler_depth);
    line(out, "resampler_heads", m.resampler_heads);
    line(out, "resampler_dim_head", m.resampler_dim_head);
    line(out, "num_latents", m.num_latents);
    line(out, "hidden_size", m.hidden_size);
    line(out, "num_layers", m.num_layers);
    line(out, "num_heads", m.num_heads);
    line(out, "intermediate_size", m.intermediate_size);
    line(out, "max_seq_len", m.max_seq_len);
    line(out, "vocab_size", m.vocab_size);
    line(out, "cross_attn_every_n_layers", m.cross_attn_every_n_layers);
    line(out, "num_cross_attn_layers", m.num_cross_attn_layers);
    line(out, "image_token_id", m.image_token_id);
    line(out, "endofchunk_token_id", m.endofchunk_token_id);
    line(out, "pad_token_id", m.pad_token_id);
    line(out, "bos_token_id", m.bos_token_id);
    line(out, "eos_token_id", m.eos_token_id);
    line(out, "image_mean", floats(&m.image_mean));
    line(out, "image_std", floats(&m.image_std));
    line(out, "num_parameters", m.num_parameters);
    line(out, "weight_bytes", m.weight_bytes);
    line(out, "visual_dim", m.visual_dim);
    flush(out);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() > 1 {
        eprintln!("usage: info [MODEL_DIR]");
        return ExitCode::from(2);
    }
    let mut out = String::new();
    match run(args.first().map(OsString::as_os_str), &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            flush(&mut out);
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
