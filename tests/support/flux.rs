//! Flux for tests: its controllers and a git server, built from Go modules by
//! tools/testenv/flux (testenv exports `PGPART_TEST_FLUX_DIR`), run as processes on loopback
//! ports against the test apiserver; a git repository they read; kubectl views of what they
//! report. Used by tests/flux.rs (no node) and tests/node.rs (helm-controller on the node).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::controller::free_port;
use super::kube::kubeconfig_path;
use super::run;

/// Where the built controllers, gitserve and their CRDs (`crds/`) are.
pub fn flux_dir() -> PathBuf {
    PathBuf::from(std::env::var("PGPART_TEST_FLUX_DIR").unwrap_or_else(|_| {
        panic!("PGPART_TEST_FLUX_DIR is not set: run in the test environment (scripts/testenv up)")
    }))
}

pub fn kubectl() -> Command {
    Command::new(std::env::var("PGPART_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into()))
}

/// `kubectl apply --server-side` of one object (JSON is YAML).
pub fn kubectl_apply(obj: &Value) {
    let mut child = kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl apply");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        obj.to_string().as_bytes(),
    )
    .expect("write");
    assert!(child.wait().expect("kubectl").success(), "apply {obj}");
}

pub fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The CRDs of the built controllers, applied and Established.
pub fn install_crds() {
    run(kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(flux_dir().join("crds")));
    run(kubectl().args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gitrepositories.source.toolkit.fluxcd.io",
        "crd/kustomizations.kustomize.toolkit.fluxcd.io",
        "crd/helmcharts.source.toolkit.fluxcd.io",
        "crd/helmreleases.helm.toolkit.fluxcd.io",
    ]));
}

/// A child process killed (and reaped) on drop.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &Path, args: &[String], ns: &str, log: &Path) -> Proc {
    let log = std::fs::File::create(log).expect("log file");
    Proc(
        Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig_path())
            .env("RUNTIME_NAMESPACE", ns)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
    )
}

/// Flux controller `name` out of cluster, on free loopback ports, watching only `ns`; its
/// log is WORK/NAME.log. source-controller keeps its artifacts in WORK/storage.
pub fn controller(name: &str, ns: &str, work: &Path) -> Proc {
    let mut args = vec![
        format!("--metrics-addr=127.0.0.1:{}", free_port()),
        format!("--health-addr=127.0.0.1:{}", free_port()),
        "--enable-leader-election=false".into(),
        "--watch-all-namespaces=false".into(),
        "--log-encoding=console".into(),
    ];
    if name == "source-controller" {
        let storage = work.join("storage");
        std::fs::create_dir_all(&storage).expect("storage dir");
        let port = free_port();
        args.extend([
            format!("--storage-path={}", storage.display()),
            format!("--storage-addr=127.0.0.1:{port}"),
            format!("--storage-adv-addr=127.0.0.1:{port}"),
        ]);
    }
    spawn(
        &flux_dir().join(name),
        &args,
        ns,
        &work.join(format!("{name}.log")),
    )
}

/// A working copy (WORK/checkout) whose commits are pushed to a bare repository that
/// gitserve serves (WORK/git/pgpart.git, branch main).
pub struct Repo {
    pub work: PathBuf,
    bare: PathBuf,
}

impl Repo {
    /// Both repositories, the working copy holding a copy of each of `dirs` of this
    /// checkout (e.g. "gitops/policies"), nothing committed yet.
    pub fn new(work: &Path, dirs: &[&str]) -> Repo {
        let repo = Repo {
            work: work.join("checkout"),
            bare: work.join("git/pgpart.git"),
        };
        let _ = std::fs::remove_dir_all(work.join("checkout"));
        let _ = std::fs::remove_dir_all(work.join("git"));
        run(Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&repo.bare));
        run(Command::new("git")
            .args(["init", "-q", "-b", "main"])
            .arg(&repo.work));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for dir in dirs {
            let to = repo.work.join(dir);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            run(Command::new("cp").arg("-r").arg(root.join(dir)).arg(&to));
        }
        repo
    }

    pub fn git(&self, args: &[&str]) -> String {
        run(Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args([
                "-c",
                "user.name=pgpart-tests",
                "-c",
                "user.email=tests@pgpart.invalid",
            ])
            .args(args))
    }

    /// Commits everything and pushes it; returns the commit.
    pub fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["push", "-q", self.bare.to_str().expect("path"), "main"]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }
}

/// gitserve on a free loopback port serving WORK/git; returns it and the repository's URL.
pub fn gitserve(work: &Path) -> (Proc, String) {
    let addr_file = work.join("git.addr");
    let _ = std::fs::remove_file(&addr_file);
    let server = spawn(
        &flux_dir().join("gitserve"),
        &[
            "-root".into(),
            work.join("git").display().to_string(),
            "-addr-file".into(),
            addr_file.display().to_string(),
        ],
        "",
        &work.join("gitserve.log"),
    );
    let start = Instant::now();
    let addr = loop {
        if let Ok(a) = std::fs::read_to_string(&addr_file)
            && !a.trim().is_empty()
        {
            break a.trim().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "gitserve did not listen (see {})",
            work.join("gitserve.log").display()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (server, format!("http://{addr}/pgpart.git"))
}

/// `kubectl get` in `ns` as JSON: one object (`kind name`) or a list (`kind`).
pub fn get(ns: &str, what: &[&str]) -> Value {
    let out = run(kubectl()
        .args(["-n", ns, "get"])
        .args(what)
        .args(["-o", "json"]));
    serde_json::from_str(&out).expect("kubectl JSON")
}

/// (status, reason, message) of condition `type_`.
pub fn condition(obj: &Value, type_: &str) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("reason"), s("message"))
        })
}

pub fn conditions(obj: &Value) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={} {}: {}",
                c["type"], c["status"], c["reason"], c["message"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `flux reconcile source git` does: ask for a reconcile now.
pub fn request_reconcile(ns: &str, kind: &str, name: &str) {
    let nanos = std::time::UNIX_EPOCH.elapsed().expect("clock").as_nanos();
    let at = format!("reconcile.fluxcd.io/requestedAt={nanos}");
    run(kubectl().args(["-n", ns, "annotate", "--overwrite", kind, name, &at]));
}

/// Without the controllers nothing removes Flux's finalizers: drop them so that the
/// objects (and their namespace) can go.
pub fn drop_finalizers(ns: &str, objects: &[(&str, &str)]) {
    for (kind, name) in objects {
        run(kubectl().args([
            "-n",
            ns,
            "patch",
            kind,
            name,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]));
    }
}
