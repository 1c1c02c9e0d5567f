//! Test-only (the `failpoints` feature): fault points of a running broker, configured from
//! its environment. `FAILPOINTS` sets them at start; `FAILPOINTS_FILE` names a file that a
//! thread reads again every 100 ms, so a test changes them while the process runs (a disk
//! slow for a few seconds, then well again) by replacing the file.

use std::path::PathBuf;
use std::time::Duration;

/// How often the file is read again: a fault set by a test takes effect within this.
const POLL: Duration = Duration::from_millis(100);

pub(crate) fn configure_from_env() {
    if let Ok(spec) = std::env::var("FAILPOINTS") {
        apply(&spec);
    }
    if let Some(path) = std::env::var_os("FAILPOINTS_FILE") {
        let path = PathBuf::from(path);
        std::thread::Builder::new()
            .name("failpoints".into())
            .spawn(move || follow(path))
            .expect("spawning the FAILPOINTS_FILE reader");
    }
}

/// Applies the file's points each time it changes, and removes those it no longer names;
/// a missing file names none.
fn follow(path: PathBuf) {
    let mut applied = String::new();
    loop {
        let spec = std::fs::read_to_string(&path).unwrap_or_default();
        if spec != applied {
            for (name, _) in points(&applied) {
                fail::remove(name);
            }
            apply(&spec);
            tracing::info!(file = %path.display(), spec = spec.trim(), "fault points changed");
            applied = spec;
        }
        std::thread::sleep(POLL);
    }
}

/// `name=action;...`, the `fail` crate's syntax.
fn apply(spec: &str) {
    for (name, actions) in points(spec) {
        if let Err(error) = fail::cfg(name, actions) {
            tracing::error!(%name, %error, "bad fault point");
        }
    }
}

fn points(spec: &str) -> impl Iterator<Item = (&str, &str)> {
    spec.split(';')
        .filter_map(|point| point.split_once('='))
        .map(|(name, actions)| (name.trim(), actions.trim()))
}
