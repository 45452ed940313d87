#![allow(dead_code)]
//! Fixture lookup shared by the integration tests.
//!
//! Fixture models live in `Tests/Fixtures/<name>/` of the repository (or
//! `FLAMINGO_FIXTURES_DIR`). A missing fixture skips the test (it passes with
//! a note on stderr) unless `FLAMINGO_REQUIRE_FIXTURES=1`, which makes it fail.

use std::path::PathBuf;

pub mod safetensors;

pub const FIXTURES: [&str; 3] = ["mpt_tiny", "gpt_neox_tiny", "llama_tiny"];

pub fn fixtures_dir() -> PathBuf {
    match std::env::var_os("FLAMINGO_FIXTURES_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Tests/Fixtures"),
    }
}

fn required() -> bool {
    std::env::var("FLAMINGO_REQUIRE_FIXTURES").as_deref() == Ok("1")
}

/// The fixture directory, or None (after a note) when it is missing.
/// Panics when it is missing and FLAMINGO_REQUIRE_FIXTURES=1.
pub fn fixture(name: &str) -> Option<PathBuf> {
    let d = fixtures_dir().join(name);
    if d.join("config.json").is_file() {
        return Some(d);
    }
    if required() {
        panic!("fixture model {} is missing (FLAMINGO_REQUIRE_FIXTURES=1)", d.display());
    }
    eprintln!("skipped: fixture model {} is missing", d.display());
    None
}

/// The first fixture that exists.
pub fn any_fixture() -> Option<PathBuf> {
    FIXTURES
        .iter()
        .map(|n| fixtures_dir().join(n))
        .find(|d| d.join("config.json").is_file())
        .or_else(|| fixture(FIXTURES[0]))
}

pub fn garbage_model_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flamingo-rust-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("config.json"), "this is { not json").unwrap();
    std::fs::write(d.join("model.safetensors"), "garbage").unwrap();
    d
}

/// Tests/Fixtures/images (beside the fixture models).
pub fn images_dir() -> PathBuf {
    fixtures_dir().join("images")
}

/// An image of Tests/Fixtures/images; panics when it is missing.
pub fn image(name: &str) -> PathBuf {
    let p = images_dir().join(name);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// A fixture's reference.json.
pub fn reference_json(fixture_dir: &std::path::Path) -> safetensors::Json {
    let raw = std::fs::read(fixture_dir.join("reference.json")).unwrap();
    safetensors::parse_json(&raw).unwrap()
}

/// `json[key1][key2]...` (panics when missing).
pub fn at<'a>(json: &'a safetensors::Json, path: &[&str]) -> &'a safetensors::Json {
    let mut v = json;
    for k in path {
        match v {
            safetensors::Json::Obj(m) => v = m.get(*k).unwrap_or_else(|| panic!("no {k} in reference.json")),
            _ => panic!("{k}: not an object"),
        }
    }
    v
}

pub fn json_str(v: &safetensors::Json) -> &str {
    match v {
        safetensors::Json::Str(s) => s,
        _ => panic!("not a string: {v:?}"),
    }
}

pub fn json_ids(v: &safetensors::Json) -> Vec<i32> {
    match v {
        safetensors::Json::Arr(a) => a
            .iter()
            .map(|x| match x {
                safetensors::Json::Num(n) => *n as i32,
                _ => panic!("not a number"),
            })
            .collect(),
        _ => panic!("not an array: {v:?}"),
    }
}
