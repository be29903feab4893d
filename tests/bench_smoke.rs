//! `scripts/bench --smoke --no-write` runs every benchmark scenario at tiny scale against
//! its own PostgreSQL 15 + pg_partman 4.7 and exits 0, and draws the scale curve's plot
//! (s5) as a PNG. No timing is asserted: this only keeps the benchmark runnable. Needs root
//! (the server runs as pgpart-test), like scripts/test, and the first run makes
//! tools/bench/.venv (matplotlib, from PyPI). Takes about a minute or two. The operator's
//! bench runs the same way against the test environment (`scripts/test` starts it).

use std::process::Command;

#[test]
fn bench_smoke_runs_every_scenario() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = std::env::temp_dir().join(format!("pgpart-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let png = tmp.join("bench-scale.png");
    let out = Command::new(format!("{root}/scripts/bench"))
        .args(["--smoke", "--no-write", "--plot"])
        .arg(&png)
        .env("PGPART_BENCH_BIN", env!("CARGO_BIN_EXE_pgpart"))
        .current_dir(root)
        .output()
        .expect("run scripts/bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let plot = std::fs::read(&png);
    let _ = std::fs::remove_dir_all(&tmp);
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
        "### 5. Scale curve",
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
    let plot = plot.unwrap_or_else(|e| panic!("no plot at {}: {e}\n{stderr}", png.display()));
    assert!(
        plot.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG ({} bytes)",
        png.display(),
        plot.len()
    );
}

/// `scripts/bench-operator` at tiny size against the test environment's API server and
/// PostgreSQL 17: it completes and prints each of its measures (no timing asserted).
#[test]
fn bench_operator_smoke_measures_everything() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut path = std::env::var("PATH").unwrap_or_default();
    if let Ok(kubectl) = std::env::var("PGPART_TEST_KUBECTL")
        && let Some(dir) = std::path::Path::new(&kubectl).parent()
    {
        path = format!("{}:{path}", dir.display());
    }
    let out = Command::new(format!("{root}/scripts/bench-operator"))
        .args(["6", "2", "2"])
        .env("PGPART_BENCH_BIN", env!("CARGO_BIN_EXE_pgpart"))
        .env("BENCH_OPERATOR_IDLE", "3")
        .env("PATH", path)
        .current_dir(root)
        .output()
        .expect("run scripts/bench-operator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scripts/bench-operator failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for measure in [
        "policies: 6 over 2 database(s); all Ready after",
        "restart over existing partitions: all 6 passed again after",
        "(0 not Ready)",
        "controller RSS with 6 idle policies",
        "kubectl apply -> Ready=True over 2 policies",
        "api server, start on empty tables: APPLY partitionpolicies/status: ",
    ] {
        assert!(
            stdout.contains(measure),
            "missing {measure:?}:\n{stdout}\n{stderr}"
        );
    }
}
