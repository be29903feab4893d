#![allow(dead_code)]
pub mod cli;
pub mod clock;
pub mod controller;
pub mod faults;
pub mod flux;
pub mod helm;
pub mod kube;
pub mod pg;
pub mod traffic;

/// Runs `cmd` (no stdin) to success and returns its stdout; panics with its output otherwise.
#[track_caller]
pub fn run(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
