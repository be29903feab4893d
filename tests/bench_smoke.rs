//! `scripts/bench --smoke --no-write` runs every benchmark scenario at tiny scale against
//! its own PostgreSQL 15 + pg_partman 4.7 and exits 0. No timing is asserted: this only
//! keeps the benchmark runnable. Needs root (the server runs as pgpart-test), like
//! scripts/test. Takes about a minute.

use std::process::Command;

#[test]
fn bench_smoke_runs_every_scenario() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{root}/scripts/bench"))
        .args(["--smoke", "--no-write"])
        .env("PGPART_BENCH_BIN", env!("CARGO_BIN_EXE_pgpart"))
        .current_dir(root)
        .output()
        .expect("run scripts/bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/bench --smoke failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for section in [
        "### 1. Steady state",
        "### 2. Catch-up",
        "### 3. Inserts during maintenance",
        "### 4. Default repair",
    ] {
        assert!(
            stdout.contains(section),
            "missing {section:?}:\n{stdout}\n{stderr}"
        );
    }
    assert!(
        !stdout.contains("failed:**"),
        "a scenario failed:\n{stdout}\n{stderr}"
    );
}
