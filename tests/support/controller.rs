//! The `pgpart controller` as a child process of a test, and waiting for what it does.
//!
//! * [`install_crd`]: server-side apply of the PartitionPolicy CRD (idempotent, safe from
//!   tests running in parallel), then wait until it is Established.
//! * [`Controller`]: one controller process watching the test's namespace, with
//!   `--leader-elect=false` unless an [`Election`] is given, `/metrics` on a free local port
//!   and its logs in a file under `CARGO_TARGET_TMPDIR`. Dropping it kills it and waits for
//!   it, so no controller outlives its test; when the test is panicking, the end of its log
//!   is printed.
//! * [`wait_for`], [`eventually`]: poll every 200 ms up to a deadline (never a fixed sleep)
//!   and panic with the last state seen.

use std::fmt::Debug;
use std::fs::File;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use pgpart::policy::PartitionPolicy;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::kube::kubeconfig_path;

/// Path of the binary cargo built for this test run.
pub const PGPART: &str = env!("CARGO_BIN_EXE_pgpart");
/// Field manager of everything the tests apply.
pub const MANAGER: &str = "pgpart-tests";
/// Poll period of every wait.
pub const POLL: Duration = Duration::from_millis(200);
/// Default deadline of a wait for the controller to act.
pub const WAIT: Duration = Duration::from_secs(60);

/// Name of the CRD.
pub const CRD_NAME: &str = "partitionpolicies.pgpart.io";

/// Apply the PartitionPolicy CRD this build generates (server-side apply, forced, one field
/// manager: idempotent, and harmless when many tests do it at once), and wait until the
/// apiserver reports it Established. Returns the CRD as stored.
pub async fn install_crd(client: &Client) -> CustomResourceDefinition {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = PartitionPolicy::crd();
    let mut last_err = None;
    // Parallel applies of the same object may race on resourceVersion (409); retry briefly.
    for _ in 0..20 {
        match api
            .patch(
                CRD_NAME,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&crd),
            )
            .await
        {
            Ok(_) => {
                last_err = None;
                break;
            }
            Err(kube::Error::Api(s)) if s.code == 409 || s.code >= 500 => {
                last_err = Some(format!("{s:?}"));
                tokio::time::sleep(POLL).await;
            }
            Err(e) => panic!("server-side apply of CRD {CRD_NAME}: {e}"),
        }
    }
    if let Some(e) = last_err {
        panic!("server-side apply of CRD {CRD_NAME} kept failing: {e}");
    }
    wait_for(
        &api,
        CRD_NAME,
        "CRD Established",
        WAIT,
        |c: &CustomResourceDefinition| {
            crd_condition(c, "Established") == Some("True")
                && crd_condition(c, "NamesAccepted") == Some("True")
        },
    )
    .await
}

/// Status of one condition of a CRD.
pub fn crd_condition<'a>(crd: &'a CustomResourceDefinition, type_: &str) -> Option<&'a str> {
    crd.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

/// Server-side apply `obj` (JSON with apiVersion, kind, metadata.name) with the tests'
/// field manager. Returns the API's answer, so a refusal can be inspected.
pub async fn apply<K>(api: &Api<K>, obj: &serde_json::Value) -> Result<K, kube::Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let name = obj["metadata"]["name"]
        .as_str()
        .expect("object to apply has metadata.name");
    api.patch(
        name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await
}

/// A Secret holding `uri`, as the policy's `spec.database.secretRef` expects.
pub fn uri_secret(name: &str, uri: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": name },
        "type": "Opaque",
        "stringData": { "uri": uri },
    })
}

/// A PartitionPolicy document named `name` with `spec.database.secretRef.name: secret` and
/// the fields of `spec` merged in.
pub fn policy(name: &str, secret: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "apiVersion": "pgpart.io/v1alpha1",
        "kind": "PartitionPolicy",
        "metadata": { "name": name },
        "spec": { "database": { "secretRef": { "name": secret } } },
    });
    for (k, v) in spec.as_object().expect("spec is an object") {
        doc["spec"][k] = v.clone();
    }
    doc
}

/// The instant of the policy's last pass, on the controller's clock (`status.lastPassTime`).
#[track_caller]
pub fn last_pass_time(p: &PartitionPolicy) -> chrono::DateTime<chrono::Utc> {
    let t = p
        .status
        .as_ref()
        .and_then(|s| s.last_pass_time.as_deref())
        .unwrap_or_else(|| panic!("no status.lastPassTime: {:?}", p.status));
    super::clock::parse(t)
}

/// Wait until the partitions of `table` (read with `db`) are what `accept` expects from the
/// instant of the policy's last pass, reading the policy again each time: a policy
/// re-checked often may pass again (and a month may begin) between the two reads.
pub async fn wait_partitions_of_last_pass(
    policies: &Api<PartitionPolicy>,
    name: &str,
    db: &tokio_postgres::Client,
    table: &str,
    accept: impl Fn(&[String], chrono::DateTime<chrono::Utc>) -> bool,
) -> PartitionPolicy {
    let accept = &accept;
    let what = format!("the partitions of {table} that the passes of {name} made");
    eventually(&what, WAIT, || async move {
        let p = policies.get(name).await.map_err(|e| e.to_string())?;
        let names = super::cli::partition_names(db, table).await;
        let pass = last_pass_time(&p);
        if accept(&names, pass) {
            Ok(p)
        } else {
            Err(format!("{names:?} after the pass at {pass}"))
        }
    })
    .await
}

/// Leader election settings of one controller process.
#[derive(Clone, Debug)]
pub struct Election {
    pub lease_name: String,
    pub lease_namespace: String,
    pub identity: String,
    pub duration_seconds: u64,
}

/// How to start a controller.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `--namespace` values (at least one: tests never watch the whole cluster).
    pub namespaces: Vec<String>,
    /// `None`: `--leader-elect=false`.
    pub election: Option<Election>,
    /// More flags.
    pub extra_args: Vec<String>,
}

impl Options {
    pub fn namespace(ns: &str) -> Options {
        Options {
            namespaces: vec![ns.to_owned()],
            ..Options::default()
        }
    }
}

/// A running `pgpart controller` child process; killed (and reaped) on drop.
pub struct Controller {
    child: Child,
    pid: u32,
    pub log_path: PathBuf,
    pub metrics_addr: SocketAddr,
    pub options: Options,
}

/// A local port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

impl Controller {
    /// Start a controller for namespace `ns` without leader election and wait until its
    /// /readyz answers 200.
    pub async fn start(ns: &str) -> Controller {
        Controller::start_with(Options::namespace(ns)).await
    }

    /// Start a controller and wait until its /readyz answers 200.
    pub async fn start_with(options: Options) -> Controller {
        let mut c = Controller::spawn(options);
        c.wait_ready().await;
        c
    }

    /// Start a controller process; does not wait for anything.
    pub fn spawn(options: Options) -> Controller {
        assert!(
            !options.namespaces.is_empty(),
            "a test controller must be limited to its test namespaces"
        );
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let tag = options
            .election
            .as_ref()
            .map(|e| e.identity.clone())
            .unwrap_or_else(|| "controller".to_owned());
        let log_path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{}-{tag}-{}-{n}.log",
            options.namespaces[0],
            std::process::id()
        ));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("create controller log {}: {e}", log_path.display()));
        let metrics_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();

        let mut cmd = Command::new(PGPART);
        cmd.arg("controller");
        for ns in &options.namespaces {
            cmd.args(["--namespace", ns]);
        }
        match &options.election {
            None => {
                cmd.arg("--leader-elect=false");
            }
            Some(e) => {
                cmd.arg("--leader-elect=true")
                    .args(["--lease-name", &e.lease_name])
                    .args(["--lease-namespace", &e.lease_namespace])
                    .args(["--identity", &e.identity])
                    .args(["--lease-duration-seconds", &e.duration_seconds.to_string()]);
            }
        }
        cmd.args(["--metrics-addr", &metrics_addr.to_string()])
            .args(["--log-level", "info,pgpart=debug"])
            .args(&options.extra_args)
            .env("KUBECONFIG", kubeconfig_path())
            // The test's clock (a `--now` in the args wins over it).
            .env("PGPART_NOW", super::clock::now_arg())
            .env_remove("PGPART_LOG")
            .env_remove("RUST_LOG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log file handle"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {PGPART} controller: {e}"));
        let pid = child.id();
        Controller {
            child,
            pid,
            log_path,
            metrics_addr,
            options,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The identity it was given (leader election only).
    pub fn identity(&self) -> Option<&str> {
        self.options.election.as_ref().map(|e| e.identity.as_str())
    }

    /// Everything it logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Still running?
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL and reap it (no chance to release a lease or finish anything).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Panic (with its log) if it exited.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "controller {} exited ({status}); its log ({}):\n{}",
                self.pid,
                self.log_path.display(),
                self.logs()
            );
        }
    }

    /// Wait until /readyz answers 200 (and the process is still alive).
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok((200, _)) = self.get("/readyz").await {
                return;
            }
            let exited = !matches!(self.child.try_wait(), Ok(None));
            if exited {
                panic!(
                    "controller {} exited before it was ready; its log ({}):\n{}",
                    self.pid,
                    self.log_path.display(),
                    self.logs()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "controller {} not ready within {WAIT:?}; its log ({}):\n{}",
                    self.pid,
                    self.log_path.display(),
                    self.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// GET `path` from its metrics server: (status code, body).
    pub async fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        http_get(self.metrics_addr, path).await
    }

    /// The /metrics text (panics unless 200).
    pub async fn metrics(&self) -> String {
        let (code, body) = self
            .get("/metrics")
            .await
            .unwrap_or_else(|e| panic!("GET /metrics from {}: {e}", self.metrics_addr));
        assert_eq!(code, 200, "GET /metrics: {body}");
        body
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!(
                "--- last lines of controller {} log ({}):\n{tail}\n---",
                self.pid,
                self.log_path.display()
            );
        }
    }
}

/// A minimal HTTP/1.1 GET (no TLS, `Connection: close`): (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad HTTP answer: {head:?}")))?;
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        Ok((code, body))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| std::io::Error::other(format!("GET {path} from {addr} timed out")))?
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Poll `api.get(name)` every 200 ms until `pred` holds, up to `timeout`; panic with `what`
/// and the last object seen (as YAML) otherwise. A missing object counts as "not yet".
pub async fn wait_for<K, F>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    mut pred: F,
) -> K
where
    K: Clone + DeserializeOwned + Debug + Serialize,
    F: FnMut(&K) -> bool,
{
    let deadline = Instant::now() + timeout;
    let mut last: Option<K> = None;
    let mut last_err = String::new();
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) => {
                if pred(&obj) {
                    return obj;
                }
                last = Some(obj);
            }
            Ok(None) => last_err = format!("{name} does not exist"),
            Err(e) => last_err = format!("get {name}: {e}"),
        }
        if Instant::now() > deadline {
            let shown = last
                .as_ref()
                .map(|o| serde_yaml_ng::to_string(o).unwrap_or_else(|_| format!("{o:?}")))
                .unwrap_or(last_err);
            panic!("timed out after {timeout:?} waiting for {what} ({name}); last seen:\n{shown}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Call `check` every 200 ms until it returns `Ok`, up to `timeout`; panic with `what` and
/// the last `Err` (a description of the state seen) otherwise.
pub async fn eventually<T, Fut, F>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(state) => {
                if Instant::now() > deadline {
                    panic!("timed out after {timeout:?} waiting for {what}; last state: {state}");
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Check that `check` keeps returning `Ok` for `period` (polling every 200 ms); panic with
/// `what` and the first `Err` otherwise.
pub async fn stays<Fut, F>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let end = Instant::now() + period;
    loop {
        if let Err(state) = check().await {
            panic!("{what} stopped holding: {state}");
        }
        if Instant::now() > end {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One condition of a policy's status.
pub fn condition<'a>(p: &'a PartitionPolicy, type_: &str) -> Option<&'a Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// `type_` has `status` ("True"/"False") and, when given, `reason`.
pub fn has_condition(p: &PartitionPolicy, type_: &str, status: &str, reason: Option<&str>) -> bool {
    condition(p, type_).is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
}

/// The controller has seen this generation.
pub fn observed_current(p: &PartitionPolicy) -> bool {
    let status = p.status.as_ref().and_then(|s| s.observed_generation);
    status.is_some() && status == p.metadata.generation
}

/// Ready=True for the current generation (status.observedGeneration and the condition's).
pub fn ready_now(p: &PartitionPolicy) -> bool {
    observed_current(p)
        && condition(p, "Ready")
            .is_some_and(|c| c.status == "True" && c.observed_generation == p.metadata.generation)
}

/// Poll until the policy is Ready=True at its current generation.
pub async fn wait_ready(
    api: &Api<PartitionPolicy>,
    name: &str,
    timeout: Duration,
) -> PartitionPolicy {
    wait_for(
        api,
        name,
        "Ready=True at the current generation",
        timeout,
        ready_now,
    )
    .await
}

/// A one-line summary of a policy's conditions, for messages.
pub fn conditions_summary(p: &PartitionPolicy) -> String {
    p.status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .map(|c| format!("{}={} ({}: {})", c.type_, c.status, c.reason, c.message))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| "no status".to_owned())
}
