//! A real Kubernetes API server for integration tests.
//!
//! The control plane (etcd + kube-apiserver, built from source by `tools/testenv`) is
//! started outside the test binary with `scripts/lib/kube.sh`:
//!
//! ```text
//! source scripts/lib/kube.sh && kube_up "$DIR"   # exports the variables below
//! cargo test ...
//! kube_down "$DIR"
//! ```
//!
//! * `PGPART_TEST_KUBECONFIG` — kubeconfig of a cluster-admin (group `system:masters`);
//!   required. A missing variable is a test failure (panic), never a skip.
//! * `PGPART_TEST_KUBE_VERSION` — optional: the `gitVersion` the server must report.
//!
//! There is no kubelet and no controller-manager: objects are stored and served, RBAC and
//! admission run, but pods never start and deleted namespaces stay `Terminating`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// Kubeconfig of the test control plane (admin).
pub const KUBECONFIG_ENV: &str = "PGPART_TEST_KUBECONFIG";
/// Optional: the exact `gitVersion` the test API server reports (e.g. `v1.36.3`).
pub const VERSION_ENV: &str = "PGPART_TEST_KUBE_VERSION";
/// Label put on every namespace made by [`TestNamespace`].
pub const TEST_LABEL: &str = "pgpart.io/test";

/// Path of the admin kubeconfig. Panics if it is not configured or not readable.
pub fn kubeconfig_path() -> PathBuf {
    let path = match std::env::var(KUBECONFIG_ENV) {
        Ok(p) if !p.trim().is_empty() => PathBuf::from(p.trim()),
        _ => panic!(
            "{KUBECONFIG_ENV} is not set: integration tests need a real Kubernetes API server. \
             Start one with `source scripts/lib/kube.sh && kube_up \"$DIR\"` \
             (it exports {KUBECONFIG_ENV}), and stop it with `kube_down \"$DIR\"`"
        ),
    };
    assert!(
        path.is_file(),
        "{KUBECONFIG_ENV}={} does not exist (was kube_down run?)",
        path.display()
    );
    path
}

/// The `gitVersion` the server is expected to report, if the harness exported one.
pub fn expected_version() -> Option<String> {
    std::env::var(VERSION_ENV)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Admin client configuration read from [`KUBECONFIG_ENV`].
pub async fn admin_config() -> Config {
    let path = kubeconfig_path();
    let kubeconfig = Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read kubeconfig {}: {e}", path.display()));
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("bad kubeconfig {}: {e}", path.display()))
}

/// A cluster-admin client.
pub async fn client() -> Client {
    Client::try_from(admin_config().await).expect("build kube client")
}

/// A client for the same server that authenticates with `token` only (e.g. a service
/// account token from a TokenRequest).
pub async fn client_with_token(token: &str) -> Client {
    let mut config = admin_config().await;
    config.auth_info =
        serde_json::from_value(serde_json::json!({ "token": token })).expect("AuthInfo from token");
    Client::try_from(config).expect("build kube client with token")
}

/// A fresh namespace for one test, labelled [`TEST_LABEL`]`=true`.
///
/// Call [`TestNamespace::cleanup`] at the end of the test. If the test panics first, `Drop`
/// deletes the namespace best-effort from a helper thread (bounded to a few seconds); the
/// whole control plane is thrown away after the run anyway.
pub struct TestNamespace {
    name: String,
    client: Client,
    done: bool,
}

impl TestNamespace {
    /// Create `pgpart-<prefix>-<random>` (DNS-1123 label, at most 63 characters).
    pub async fn new(client: &Client, prefix: &str) -> TestNamespace {
        let name = unique_name(prefix);
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some([(TEST_LABEL.to_owned(), "true".to_owned())].into()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create test namespace {name}: {e}"));
        TestNamespace {
            name,
            client: client.clone(),
            done: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The client the namespace was made with.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// An API handle for namespaced resources `K` in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Delete the namespace (a namespace that is already gone is fine).
    pub async fn cleanup(mut self) {
        self.done = true;
        delete_namespace(&self.client, &self.name)
            .await
            .unwrap_or_else(|e| panic!("delete test namespace {}: {e}", self.name));
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The test's runtime is blocked in this drop, so use a new runtime and client on
        // another thread, and do not wait for it for long.
        let name = std::mem::take(&mut self.name);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                let _ = rt.block_on(async {
                    let client = Client::try_from(admin_config().await).ok()?;
                    delete_namespace(&client, &name).await.ok()
                });
            }
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(Duration::from_secs(5));
    }
}

async fn delete_namespace(client: &Client, name: &str) -> Result<(), kube::Error> {
    match Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// `pgpart-<prefix>-<12 hex>`: lower-case, at most 63 characters.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher(); // randomly seeded per process and per call
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    let prefix: String = prefix
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(36)
        .collect();
    let prefix = prefix.trim_matches('-');
    format!("pgpart-{prefix}-{:012x}", h.finish() & 0xffff_ffff_ffff)
}
