//! Finds libflamingo for linking:
//!
//! 1. `FLAMINGO_LIB_DIR`: the directory containing `libflamingo.so`;
//! 2. otherwise `pkg-config --libs-only-L flamingo` (the command, not a crate);
//! 3. otherwise the linker's default search path.
//!
//! The directory found is also written into the binaries of this package
//! (tests, examples) as an rpath, so they run without `LD_LIBRARY_PATH`.
//! Dependent crates get it as `DEP_FLAMINGO_LIB_DIR` (the `links` metadata)
//! and must add their own rpath or set `LD_LIBRARY_PATH`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn pkg_config_dirs() -> Vec<PathBuf> {
    let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".into());
    let Ok(out) = Command::new(pkg_config).args(["--libs-only-L", "flamingo"]).output() else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|flag| flag.strip_prefix("-L"))
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=FLAMINGO_LIB_DIR");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");

    let dirs = match env::var_os("FLAMINGO_LIB_DIR") {
        // Made absolute for the rpath; a relative path is relative to
        // bindings/rust (build scripts run in the package directory).
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            vec![dir.canonicalize().unwrap_or(dir)]
        }
        _ => pkg_config_dirs(),
    };
    if dirs.is_empty() {
        println!(
            "cargo::warning=libflamingo: FLAMINGO_LIB_DIR is unset and `pkg-config --libs-only-L flamingo` \
             gave no directory; relying on the linker's default search path"
        );
    }
    for dir in &dirs {
        let d = dir.display();
        println!("cargo::rustc-link-search=native={d}");
        println!("cargo::rustc-link-arg=-Wl,-rpath,{d}");
    }
    if let Some(dir) = dirs.first() {
        println!("cargo::metadata=lib_dir={}", dir.display());
    }
    println!("cargo::rustc-link-lib=dylib=flamingo");
}
