//! Fault injection helpers: a test's own throw-away PostgreSQL server (so it can be
//! restarted, starved of connections or given TLS without disturbing the shared servers),
//! and a controller process with any log level.
//!
//! * [`OwnPg`]: `pg_up` from `scripts/lib/postgres.sh` in a fresh directory, optionally
//!   restarted at once with extra `-c name=value` settings; stopped (`pg_down`) and its
//!   directory removed on drop, also when the test panics.
//! * [`TraceController`]: `pgpart controller` with a chosen `--log-level` and extra flags,
//!   its output in a file; killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// Runs a bash script with `scripts/lib/postgres.sh` sourced; panics with its output on failure.
pub fn pg_sh(script: &str) -> String {
    let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lib/postgres.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e; source {lib}; {script}"))
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "bash failed ({}): {script}\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A PostgreSQL server of the test's own.
pub struct OwnPg {
    pub major: u32,
    /// Parent directory (removed on drop).
    pub dir: PathBuf,
    /// `dir/pg`: data, sock, postgres.log.
    pub base: PathBuf,
    pub port: u16,
    /// Superuser URL to the `postgres` database.
    pub url: String,
    stopped: bool,
}

impl OwnPg {
    /// Starts a new server. With `settings` (e.g. `["max_connections=10"]`), it is restarted
    /// at once with those added to the command line (where they win over pg_up's own).
    pub fn start(major: u32, settings: &[&str]) -> OwnPg {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/pgf-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create server dir");
        let url = pg_sh(&format!("pg_up {} pg {major}", dir.display()))
            .trim()
            .to_owned();
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|s| s.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        let pg = OwnPg {
            major,
            base: dir.join("pg"),
            dir,
            port,
            url,
            stopped: false,
        };
        if !settings.is_empty() {
            pg.restart_with(settings);
        }
        pg
    }

    pub fn data(&self) -> PathBuf {
        self.base.join("data")
    }

    /// The command-line options pg_up uses, plus `settings`.
    fn options(&self, settings: &[&str]) -> String {
        let mut o = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories='{}' \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=200 -c shared_preload_libraries=''",
            self.port,
            self.base.join("sock").display()
        );
        for s in settings {
            o.push_str(" -c ");
            o.push_str(s);
        }
        o
    }

    /// Restarts with pg_up's settings plus `settings` (fast shutdown).
    pub fn restart_with(&self, settings: &[&str]) {
        let opts = self.options(settings);
        pg_sh(&format!(
            "_pg_as \"$(pg_bindir {})\"/pg_ctl restart -w -t 60 -m fast -D {} -l {}/postgres.log -o \"{}\" >/dev/null",
            self.major,
            self.data().display(),
            self.base.display(),
            opts.replace('"', "\\\"")
        ));
    }

    /// Restarts with the same settings; `mode` is a pg_ctl shutdown mode (fast, immediate).
    pub fn restart(&self, mode: &str) {
        pg_sh(&format!(
            "_pg_as \"$(pg_bindir {})\"/pg_ctl restart -w -t 60 -m {mode} -D {} -l {}/postgres.log >/dev/null",
            self.major,
            self.data().display(),
            self.base.display(),
        ));
    }

    /// Password authentication (scram) for every role but `postgres` over TCP; reloads.
    pub fn password_auth(&self) {
        let hba = self.data().join("pg_hba.conf");
        std::fs::write(
            &hba,
            "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        pg_sh(&format!(
            "chown \"$PGPART_PG_USER:\" {hba}; _pg_as \"$(pg_bindir {})\"/pg_ctl reload -D {} >/dev/null",
            self.major,
            self.data().display(),
            hba = hba.display()
        ));
    }

    /// URL of database `db` as `user` (no password), with `query` appended when not empty.
    pub fn url_for(&self, user: &str, db: &str) -> String {
        format!("postgresql://{user}@127.0.0.1:{}/{db}", self.port)
    }

    /// Writes a file into the server's directory, owned by the server's user with `mode`.
    pub fn write_owned(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.base.join(name);
        std::fs::write(&path, contents).expect("write server file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        pg_sh(&format!("chown \"$PGPART_PG_USER:\" {}", path.display()));
        path
    }

    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source {}/scripts/lib/postgres.sh; pg_down {} pg",
                env!("CARGO_MANIFEST_DIR"),
                self.dir.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// `pgpart controller` watching `ns` with `--log-level level` and `extra` flags; output in
/// a log file. Killed (and reaped) on drop.
pub struct TraceController {
    child: Child,
    pub log_path: PathBuf,
}

impl TraceController {
    pub fn spawn(ns: &str, level: &str, extra: &[&str]) -> TraceController {
        Self::spawn_on(&super::kube::kubeconfig_path(), ns, level, extra)
    }

    /// The same against the control plane of `kubeconfig`.
    pub fn spawn_on(kubeconfig: &Path, ns: &str, level: &str, extra: &[&str]) -> TraceController {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let log_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("{ns}-trace-{}-{n}.log", std::process::id()));
        let log = std::fs::File::create(&log_path).expect("create controller log");
        let port = super::controller::free_port();
        let child = Command::new(super::controller::PGPART)
            .arg("controller")
            .args(["--namespace", ns, "--leader-elect=false"])
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--log-level", level])
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            // The test's clock (a `--now` in the args wins over it).
            .env("PGPART_NOW", super::clock::now_arg())
            .env_remove("PGPART_LOG")
            .env_remove("RUST_LOG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn pgpart controller");
        TraceController { child, log_path }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_file(&self) -> &Path {
        &self.log_path
    }
}

impl Drop for TraceController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(40).collect();
            eprintln!(
                "--- last controller log lines ({})",
                self.log_path.display()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// A control plane of the test's own (`kube_up` from `scripts/lib/kube.sh` in a fresh
/// directory), whose kube-apiserver can be restarted; `kube_down` on drop.
pub struct OwnKube {
    pub dir: PathBuf,
}

impl OwnKube {
    pub fn up() -> OwnKube {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/pgk-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let kube = OwnKube { dir };
        let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lib/kube.sh");
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -e; source {lib}; kube_up {} >/dev/null",
                kube.dir.display()
            ))
            .stdin(Stdio::null())
            .output()
            .expect("run kube_up");
        assert!(
            out.status.success(),
            "kube_up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        kube
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub async fn client(&self) -> kube::Client {
        let kc = kube::config::Kubeconfig::read_from(self.kubeconfig()).expect("read kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kubeconfig");
        kube::Client::try_from(config).expect("kube client")
    }

    /// Kills the kube-apiserver (SIGKILL, waits for it to exit) and starts it again with
    /// the same command line (same port, same etcd); does not wait for it to be ready.
    pub fn restart_apiserver(&self) {
        let pid_file = self.dir.join("kube-apiserver.pid");
        let pid: i32 = std::fs::read_to_string(&pid_file)
            .expect("apiserver pid")
            .trim()
            .parse()
            .unwrap();
        let argv: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .expect("apiserver cmdline")
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(
            argv.iter()
                .any(|a| a.contains(&*self.dir.to_string_lossy()))
        );
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists()
            && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "apiserver {pid} did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // The thread-group leader shows as a zombie before its other threads are gone, and
        // with them the listening socket: a restart in that moment fails with "bind: address
        // already in use" (seen as 120 s of refused connections). Wait until the port is free.
        let port: u16 = argv
            .iter()
            .find_map(|a| a.strip_prefix("--secure-port="))
            .and_then(|p| p.parse().ok())
            .expect("the apiserver's --secure-port");
        while std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "port {port} of the killed apiserver {pid} stays in use"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        // Started from a shell that exits at once, so init reaps it (as kube_up does).
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "\"$@\" </dev/null >>{}/kube-apiserver.log 2>&1 & echo $!",
                self.dir.display()
            ))
            .arg("bash")
            .args(&argv)
            .stdin(Stdio::null())
            .output()
            .expect("restart kube-apiserver");
        let new_pid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!new_pid.is_empty(), "no pid for the restarted apiserver");
        std::fs::write(&pid_file, new_pid).expect("write pid file");
    }
}

impl OwnKube {
    /// Whether the apiserver of the pid file runs, and the end of its log: what a test
    /// shows when the apiserver does not answer.
    pub fn apiserver_report(&self) -> String {
        let pid = std::fs::read_to_string(self.dir.join("kube-apiserver.pid")).unwrap_or_default();
        let state = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .ok()
            .and_then(|s| {
                s.rsplit(") ")
                    .next()
                    .and_then(|r| r.split(' ').next())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "gone".into());
        let log = std::fs::read_to_string(self.dir.join("kube-apiserver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        format!(
            "apiserver pid {} state {state}; log tail:\n{}",
            pid.trim(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

/// An error with its whole chain of causes (kube's Display stops at "client error (Connect)").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl Drop for OwnKube {
    fn drop(&mut self) {
        let lib = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/lib/kube.sh");
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!("source {lib}; kube_down {}", self.dir.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
