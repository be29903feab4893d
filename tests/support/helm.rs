//! The Helm chart in `charts/pgpart`, driven by the real `helm` binary against the test
//! apiserver, and a `pgpart controller` that runs as the chart's ServiceAccount.
//!
//! * [`helm_bin`]: `KUBE_TESTENV_HELM_BIN` (exported by `kube_build` in
//!   `scripts/lib/kube.sh`), else the newest `~/.cache/pgpart/bin/helm-*`. Missing: panic.
//! * [`helm`], [`template`]: run helm with its own cache/config/data dirs under
//!   `CARGO_TARGET_TMPDIR` and the admin kubeconfig; [`docs`] splits rendered YAML.
//! * [`Release`]: `helm install` (never `--wait`: there is no kubelet) and `helm uninstall`
//!   (best effort on drop).
//! * [`service_account_token`] (TokenRequest), [`token_kubeconfig`]: the admin kubeconfig's
//!   server and CA with only that token.
//! * [`SaController`]: `pgpart controller` with given args and that kubeconfig; killed and
//!   reaped on drop, its log printed when the test panics.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_yaml_ng::Value;

use super::controller::{PGPART, POLL, WAIT, free_port, http_get};
use super::kube::kubeconfig_path;

/// Environment variable naming the helm binary.
pub const HELM_ENV: &str = "KUBE_TESTENV_HELM_BIN";

/// The chart under test.
pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/pgpart")
}

/// Path of the helm binary; panics with how to get one.
pub fn helm_bin() -> PathBuf {
    if let Ok(p) = std::env::var(HELM_ENV) {
        let p = PathBuf::from(p.trim());
        assert!(
            p.is_file(),
            "{HELM_ENV}={} is not a file: run `source scripts/lib/kube.sh && kube_build`",
            p.display()
        );
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("PGPART_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(&home).join(".cache/pgpart"))
        .join("bin");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("helm-") && !n.ends_with(".stamp"))
        })
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no helm binary: {HELM_ENV} is not set and {} has no helm-*. \
             Build it with `source scripts/lib/kube.sh && kube_build` (it exports {HELM_ENV})",
            cache.display()
        )
    })
}

/// Run helm with `args`; its state dirs are private to the test run, and it talks to the
/// test apiserver as admin.
pub fn helm(args: &[&str]) -> Output {
    let bin = helm_bin();
    let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("helm-home");
    Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", kubeconfig_path())
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("HELM_NAMESPACE")
        .env_remove("HELM_KUBECONTEXT")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()))
}

/// Run helm; panic with its output unless it exits 0. Returns stdout.
#[track_caller]
pub fn helm_ok(args: &[&str]) -> String {
    let out = helm(args);
    assert!(
        out.status.success(),
        "helm {} exited {}:\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

/// `--set`-style arguments: each `k=v` becomes `--set k=v`.
fn set_args(sets: &[&str]) -> Vec<String> {
    sets.iter()
        .flat_map(|s| ["--set".to_owned(), (*s).to_owned()])
        .collect()
}

/// `helm template <release> charts/pgpart -n <ns> --set ...`: the rendered YAML.
#[track_caller]
pub fn template_text(release: &str, ns: &str, sets: &[&str]) -> String {
    let chart = chart_dir();
    let mut args: Vec<String> = vec![
        "template".into(),
        release.into(),
        chart.to_str().expect("UTF-8 path").into(),
        "--namespace".into(),
        ns.into(),
    ];
    args.extend(set_args(sets));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    helm_ok(&args)
}

/// [`template_text`], split into documents.
#[track_caller]
pub fn template(release: &str, ns: &str, sets: &[&str]) -> Vec<Value> {
    docs(&template_text(release, ns, sets))
}

/// The non-empty YAML documents of a multi-document string.
pub fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("helm output is not YAML: {e}\n{yaml}"))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

/// `kind` of a document.
pub fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

/// `metadata.name` of a document.
pub fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// `metadata.namespace` of a document.
pub fn namespace(doc: &Value) -> &str {
    doc["metadata"]["namespace"].as_str().unwrap_or("")
}

/// Every document of `kind`.
pub fn of_kind<'a>(docs: &'a [Value], k: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| kind(d) == k).collect()
}

/// The one document of `kind`; panics unless there is exactly one.
#[track_caller]
pub fn one<'a>(docs: &'a [Value], k: &str) -> &'a Value {
    let found = of_kind(docs, k);
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {k}, found {}: {:?}",
        found.len(),
        found.iter().map(|d| name(d)).collect::<Vec<_>>()
    );
    found[0]
}

/// The `controller` container of the chart's Deployment.
#[track_caller]
pub fn controller_container(docs: &[Value]) -> &Value {
    let deployment = one(docs, "Deployment");
    deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some("controller")))
        .unwrap_or_else(|| panic!("no container `controller` in the Deployment: {deployment:?}"))
}

/// The args of the `controller` container.
#[track_caller]
pub fn controller_args(docs: &[Value]) -> Vec<String> {
    controller_container(docs)["args"]
        .as_sequence()
        .expect("container args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_owned())
        .collect()
}

/// A Helm release installed by a test; uninstalled by [`Release::uninstall`] or, best
/// effort, on drop.
pub struct Release {
    pub name: String,
    pub namespace: String,
    done: bool,
}

impl Release {
    /// `helm install <name> charts/pgpart -n <namespace> --set ...` (no `--wait`).
    #[track_caller]
    pub fn install(name: &str, namespace: &str, sets: &[&str]) -> Release {
        let chart = chart_dir();
        let mut args: Vec<String> = vec![
            "install".into(),
            name.into(),
            chart.to_str().expect("UTF-8 path").into(),
            "--namespace".into(),
            namespace.into(),
            "--timeout".into(),
            "60s".into(),
        ];
        args.extend(set_args(sets));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        helm_ok(&args);
        Release {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            done: false,
        }
    }

    /// What the release holds (`helm get manifest`), as documents.
    #[track_caller]
    pub fn manifest(&self) -> Vec<Value> {
        docs(&helm_ok(&[
            "get",
            "manifest",
            &self.name,
            "--namespace",
            &self.namespace,
        ]))
    }

    /// `helm uninstall`; panics if it fails.
    #[track_caller]
    pub fn uninstall(mut self) {
        self.done = true;
        helm_ok(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--timeout",
            "60s",
        ]);
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.done {
            let _ = helm(&["uninstall", &self.name, "--namespace", &self.namespace]);
        }
    }
}

/// A release name unique to this test run (at most 53 characters, as Helm requires),
/// derived from the test namespace's random suffix.
pub fn release_name(prefix: &str, test_ns: &str) -> String {
    let suffix = test_ns.rsplit('-').next().unwrap_or(test_ns);
    let name = format!("{prefix}-{suffix}");
    assert!(name.len() <= 53, "release name {name} too long");
    name
}

/// A token for ServiceAccount `ns/sa` (TokenRequest, one hour).
pub async fn service_account_token(client: &Client, ns: &str, sa: &str) -> String {
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let req = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let deadline = Instant::now() + WAIT;
    loop {
        match api
            .create_token_request(sa, &PostParams::default(), &req)
            .await
        {
            Ok(tr) => {
                let token = tr.status.map(|s| s.token).unwrap_or_default();
                assert!(
                    !token.is_empty(),
                    "TokenRequest for {ns}/{sa} gave no token"
                );
                return token;
            }
            Err(e) if Instant::now() < deadline => {
                eprintln!("TokenRequest for {ns}/{sa}: {e}; retrying");
                tokio::time::sleep(POLL).await;
            }
            Err(e) => panic!("TokenRequest for ServiceAccount {ns}/{sa}: {e}"),
        }
    }
}

/// Write a kubeconfig at `path` with the admin kubeconfig's cluster (server and CA) and a
/// user that has only `token` (mode 0600).
pub fn token_kubeconfig(token: &str, path: &Path) -> PathBuf {
    let admin = std::fs::read_to_string(kubeconfig_path()).expect("read admin kubeconfig");
    let mut cfg: Value = serde_yaml_ng::from_str(&admin).expect("admin kubeconfig is YAML");
    let current = cfg["current-context"]
        .as_str()
        .expect("admin kubeconfig has current-context")
        .to_owned();
    let context = cfg["contexts"]
        .as_sequence()
        .and_then(|cs| cs.iter().find(|c| c["name"].as_str() == Some(&current)))
        .unwrap_or_else(|| panic!("context {current} not in the admin kubeconfig"))
        .clone();
    let cluster_name = context["context"]["cluster"]
        .as_str()
        .expect("context.cluster")
        .to_owned();
    let cluster = cfg["clusters"]
        .as_sequence()
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["name"].as_str() == Some(&cluster_name))
        })
        .unwrap_or_else(|| panic!("cluster {cluster_name} not in the admin kubeconfig"))
        .clone();
    cfg = serde_yaml_ng::from_str(&format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: sa\n\
         contexts: [{{name: sa, context: {{cluster: {cluster_name}, user: sa}}}}]\n\
         users: [{{name: sa, user: {{}}}}]\n"
    ))
    .expect("kubeconfig skeleton");
    cfg["clusters"] = Value::Sequence(vec![cluster]);
    cfg["users"][0]["user"]["token"] = Value::String(token.to_owned());
    let text = serde_yaml_ng::to_string(&cfg).expect("serialize kubeconfig");
    {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let mut f = opts
            .open(path)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        f.write_all(text.as_bytes()).expect("write kubeconfig");
    }
    path.to_owned()
}

/// `pgpart controller` run locally as a ServiceAccount: `args` are the container's args
/// from the chart (with `--metrics-addr` replaced by a free local port), `env` stands in
/// for the downward API, and KUBECONFIG holds only the token.
pub struct SaController {
    child: Child,
    pub log_path: PathBuf,
    pub metrics_addr: SocketAddr,
}

impl SaController {
    pub fn spawn(
        args: &[String],
        kubeconfig: &Path,
        env: &[(&str, &str)],
        tag: &str,
    ) -> SaController {
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("helm-{tag}-{}.log", std::process::id()));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        assert_eq!(
            args.first().map(String::as_str),
            Some("controller"),
            "the chart's first arg is the subcommand: {args:?}"
        );
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if a.starts_with("--metrics-addr") {
                    format!("--metrics-addr={metrics_addr}")
                } else {
                    a.clone()
                }
            })
            .collect();
        let mut cmd = Command::new(PGPART);
        cmd.args(&args)
            .env("KUBECONFIG", kubeconfig)
            // The test's clock (a `--now` in the args wins over it).
            .env("PGPART_NOW", super::clock::now_arg())
            .env_remove("PGPART_LOG")
            .env_remove("RUST_LOG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {PGPART} {args:?}: {e}"));
        SaController {
            child,
            log_path,
            metrics_addr,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Panic (with its log) if it exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "controller exited ({status}); its log ({}):\n{}",
                self.log_path.display(),
                self.logs()
            );
        }
    }

    /// Wait until /readyz answers 200 while the process lives.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok((200, _)) = http_get(self.metrics_addr, "/readyz").await {
                return;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "controller not ready within {WAIT:?}; its log ({}):\n{}",
                self.log_path.display(),
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL and reap.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SaController {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            eprintln!(
                "--- last lines of the controller log ({}):\n{}\n---",
                self.log_path.display(),
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
    }
}
