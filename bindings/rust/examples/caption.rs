//! cargo run --example caption -- MODEL_DIR IMAGE [SHOT_IMAGE=CAPTION ...]
//!
//! Captions IMAGE (a JPEG or PNG) with OpenFlamingo's captioning prompt,
//! optionally few-shot (each SHOT_IMAGE=CAPTION argument, split at its first
//! '=', adds "<image>Output:CAPTION<|endofchunk|>" before the query): beam
//! search with 3 beams, length_penalty 0, at most 20 new tokens, decoded with
//! the streaming detokenizer and post-processed (cut at the first "Output",
//! '"' removed, stripped). Prints the caption and a newline, byte-for-byte
//! what bindings/c/caption.c and `python -m flamingo caption` print. On a
//! failed call prints "error: <status string>: <message>" to stderr and
//! exits with status 1; bad usage exits with status 2.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::ExitCode;

use flamingo::{Error, Media, Model, ModelParams, Status};

fn run(model_dir: &OsString, image: &OsString, shots: &[(PathBuf, String)]) -> Result<String, Error> {
    let model = Model::load(model_dir, &ModelParams::default())?;
    let shot_media: Vec<(Media<'_>, &str)> = shots.iter().map(|(p, c)| (Media::file(p), c.as_str())).collect();
    model.caption(&Media::file(image), &shot_media)
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        eprintln!("usage: caption MODEL_DIR IMAGE [SHOT_IMAGE=CAPTION ...]");
        return ExitCode::from(2);
    }
    let mut shots = Vec::new();
    for shot in &args[2..] {
        let bytes = shot.as_bytes();
        let Some(eq) = bytes.iter().position(|&b| b == b'=') else {
            eprintln!("caption: a few-shot argument must be IMAGE=CAPTION, not '{}'", shot.to_string_lossy());
            return ExitCode::from(2);
        };
        let path = PathBuf::from(OsString::from_vec(bytes[..eq].to_vec()));
        let Ok(caption) = String::from_utf8(bytes[eq + 1..].to_vec()) else {
            let e = Error { status: Status::InvalidArgument, message: "a caption is not valid UTF-8".into() };
            eprintln!("error: {e}");
            return ExitCode::from(1);
        };
        shots.push((path, caption));
    }
    match run(&args[0], &args[1], &shots) {
        Ok(caption) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(caption.as_bytes());
            let _ = out.write_all(b"\n");
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
