//! Logging is process-wide, so these tests live in their own test binary and
//! run one after the other under a lock.

mod common;

use flamingo::{LogLevel, Model, ModelParams};
use std::sync::{Arc, Mutex};

static SERIAL: Mutex<()> = Mutex::new(());

type Got = Arc<Mutex<Vec<(LogLevel, String)>>>;

fn capture() -> Got {
    let got: Got = Arc::default();
    let sink = Arc::clone(&got);
    flamingo::set_log_callback(Some(Box::new(move |level, msg| sink.lock().unwrap().push((level, msg.to_owned())))));
    got
}

fn reset() {
    flamingo::set_log_callback(None);
    flamingo::set_log_level(LogLevel::Warn);
}

#[test]
fn set_and_clear() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let _got = capture();
    flamingo::set_log_level(LogLevel::Debug);
    flamingo::set_log_level(LogLevel::None);
    reset();
}

#[test]
fn callback_receives_load_messages() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(dir) = common::any_fixture() else { return };
    let got = capture();
    flamingo::set_log_level(LogLevel::Info);
    drop(Model::load(&dir, &ModelParams::default()).unwrap());
    let msgs = got.lock().unwrap().clone();
    reset();
    assert!(!msgs.is_empty(), "no log message at level INFO while loading a model");
    for (level, msg) in &msgs {
        assert!(*level >= LogLevel::Info && *level < LogLevel::None, "{level:?}");
        assert!(!msg.is_empty() && !msg.ends_with('\n'), "{msg:?}");
    }

    for quiet in [LogLevel::None, LogLevel::Warn] {
        let got = capture();
        flamingo::set_log_level(quiet);
        drop(Model::load(&dir, &ModelParams::default()).unwrap());
        let msgs = got.lock().unwrap().clone();
        reset();
        assert!(msgs.iter().all(|(l, _)| *l >= quiet), "{quiet:?}: {msgs:?}");
    }

    // After clearing, the handler is gone.
    let got = capture();
    flamingo::set_log_callback(None);
    flamingo::set_log_level(LogLevel::Info);
    drop(Model::load(&dir, &ModelParams::default()).unwrap());
    reset();
    assert!(got.lock().unwrap().is_empty());
}

#[test]
fn panicking_callback_does_not_unwind_into_c() {
    let _g = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let Some(dir) = common::any_fixture() else { return };
    flamingo::set_log_callback(Some(Box::new(|_, _| panic!("boom"))));
    flamingo::set_log_level(LogLevel::Info);
    let m = Model::load(&dir, &ModelParams::default());
    reset();
    assert!(m.is_ok());
}
