//! The operator: kube-runtime Controllers over PartitionPolicy, status by server-side
//! apply, events, metrics, leader election on a Lease, graceful shutdown.

mod reconcile;
mod secret;
mod status;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{Controller, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::policy::PartitionPolicy;
use crate::telemetry::{self, LogFormat, Metrics};

pub use reconcile::Ctx;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Watch only these namespaces (repeat or comma-separate); all when absent.
    #[arg(long = "namespace", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Elect a leader on a Lease so only one replica acts; the others stand by.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    #[arg(long, default_value = "pgpart-controller")]
    pub lease_name: String,
    /// Seconds a leader's lease lasts without renewal: a dead leader is replaced after this.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// This replica's identity in the Lease (default: pod name or host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Connections per database target, shared by every policy on it.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub pool_size: u16,
    /// Passes in flight at once (each also waits for a session of its database's pool):
    /// bounds the burst at start, when every policy is due.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub reconcile_concurrency: u16,
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// Start the clock at this instant (RFC 3339) instead of the wall clock's; it then
    /// advances with real time. For tests and what-ifs, like the CLI's --now.
    #[arg(long, env = "PGPART_NOW")]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// Which Secrets to watch, metadata only, so that a policy acts at once when the Secret
    /// it names is created, fixed or rotated. Both `labeled` and `all` need list and watch
    /// on Secrets in the watched namespaces.
    #[arg(long, value_enum, default_value = "none")]
    pub secret_watch: SecretWatch,
}

/// Which Secrets pgpart watches (names and versions only, never their data).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretWatch {
    /// None: pgpart only `get`s the Secrets policies name, so a change is seen at the
    /// policy's next pass or retry (within a minute).
    None,
    /// Secrets labeled `pgpart.io/watch=true`.
    Labeled,
    /// Every Secret.
    All,
}

/// The label that `--secret-watch=labeled` selects.
pub const SECRET_WATCH_LABEL: &str = "pgpart.io/watch=true";

/// The API of `K` in one watched scope: a namespace, or all of them.
fn scoped<K>(client: &Client, scope: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Resolves when SIGTERM or Ctrl-C arrives.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

pub async fn run(args: Args) -> Result<()> {
    telemetry::init_tracing(args.log_format, &args.log_level);
    let client = Client::try_default()
        .await
        .map_err(|e| Error::KubeApi(e.to_string()))?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing the actions in flight");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(telemetry::serve(
        args.metrics_addr,
        metrics.clone(),
        ready.clone(),
        stopped(stop_rx.clone()),
    ));

    // Prove the API works (and the CRD is installed) before saying ready, in the scope the
    // controller watches: a namespaced install may not list across namespaces.
    let scopes: Vec<Option<&str>> = if args.namespaces.is_empty() {
        vec![None]
    } else {
        args.namespaces.iter().map(|ns| Some(ns.as_str())).collect()
    };
    let apis: Vec<Api<PartitionPolicy>> = scopes.iter().map(|s| scoped(&client, *s)).collect();
    for api in &apis {
        api.list(&kube::api::ListParams::default().limit(1))
            .await
            .map_err(|e| {
                Error::KubeApi(format!(
                    "listing PartitionPolicies (is the CRD installed?): {e}"
                ))
            })?;
    }
    ready.store(true, Ordering::Relaxed);

    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "pgpart".into());
        format!("{host}-{}", std::process::id())
    });
    let mut lease = None;
    if args.leader_elect {
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &args.lease_name)
                .with_namespace(&args.lease_namespace)
                .with_identity(&identity)
                .with_duration(args.lease_duration_seconds)
                .with_grace(args.lease_duration_seconds.div_ceil(3).max(1))
                .build()
                .await
                .map_err(|e| Error::KubeApi(format!("leader election: {e}")))?;
        let (mut leader_rx, task) = manager.watch().await;
        tracing::info!(%identity, lease = %args.lease_name, "waiting to become the leader");
        let mut stop = stop_rx.clone();
        let stop_first = tokio::select! {
            r = leader_rx.wait_for(|l| *l) => { r.map_err(|_| Error::KubeApi("leader election ended".into()))?; false }
            _ = stop.wait_for(|s| *s) => true,
        };
        if stop_first {
            drop(leader_rx);
            let _ = task.await;
            let _ = server.await;
            return Ok(());
        }
        tracing::info!(%identity, "became the leader");
        lease = Some((leader_rx, task));
    }

    let reporter = Reporter {
        controller: "pgpart".into(),
        instance: Some(identity.clone()),
    };
    let mut stores = Vec::new();
    let mut writers = Vec::new();
    for _ in &apis {
        let (reader, writer) = reflector::store();
        stores.push(reader);
        writers.push(writer);
    }
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), reporter),
        pools: crate::db::targets::Pools::counting_observations(metrics.observations.clone()),
        pool_size: args.pool_size as usize,
        metrics: metrics.clone(),
        claims: Default::default(),
        policies: stores.clone(),
        failures: Default::default(),
        series: Default::default(),
        clock: crate::clock::Clock::new(args.now),
        secrets: Default::default(),
    });
    // Only spec changes (a new generation) start a pass: the status each pass writes
    // must not start another one. A deleted policy is forgotten (claims, back-off,
    // metric series): on its delete event, or, deleted while the watch was down, when the
    // relist that follows no longer holds it.
    let mut streams = Vec::new();
    for (((api, writer), reader), scope) in apis
        .into_iter()
        .zip(writers)
        .zip(stores.iter().cloned())
        .zip(scopes.iter().copied())
    {
        let secrets = secret::changes(scoped(&client, scope), args.secret_watch);
        let ctx = ctx.clone();
        let cache = reader.clone();
        let mut before_relist = std::collections::HashSet::new();
        let uids = move || -> std::collections::HashSet<String> {
            cache.state().iter().filter_map(|p| p.uid()).collect()
        };
        let policies = watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            // managedFields are most of a policy's bytes and pgpart never reads them.
            .modify(|p| p.managed_fields_mut().clear())
            .reflect(writer)
            .inspect(move |event| match event {
                Ok(watcher::Event::Delete(p)) => ctx.forget(&p.uid().unwrap_or_default()),
                // The cache still holds the old list at Init and the new one at InitDone.
                Ok(watcher::Event::Init) => before_relist = uids(),
                Ok(watcher::Event::InitDone) => {
                    let now = uids();
                    for gone in before_relist.drain().filter(|u| !now.contains(u)) {
                        ctx.forget(&gone);
                    }
                }
                _ => {}
            })
            .applied_objects()
            .predicate_filter(predicates::generation, Default::default());
        streams.push((policies, reader, secrets));
    }
    let config = kube::runtime::controller::Config::default().concurrency(
        args.reconcile_concurrency
            .div_ceil(streams.len().max(1) as u16)
            .max(1),
    );
    let controllers =
        futures::future::join_all(streams.into_iter().map(|(policies, reader, secrets)| {
            let ctx = ctx.clone();
            let stop = stopped(stop_rx.clone());
            let mut controller = Controller::for_stream(policies, reader.clone());
            if let Some(secrets) = secrets {
                let ctx = ctx.clone();
                controller = controller.watches_stream(secrets, move |s| {
                    ctx.secret_changed(&reader, &s.namespace().unwrap_or_default(), &s.name_any())
                });
            }
            controller
                .with_config(config.clone())
                .graceful_shutdown_on(stop)
                .run(reconcile::reconcile, reconcile::error_policy, ctx)
                .for_each(|res| async move {
                    if let Err(e) = res {
                        tracing::debug!("reconcile: {e}");
                    }
                })
        }));

    let result = match &mut lease {
        Some((leader_rx, _)) => {
            tokio::select! {
                _ = controllers => Ok(()),
                _ = leader_rx.wait_for(|l| !*l) => Err(Error::KubeApi("lost leadership; exiting so a fresh start can stand by".into())),
            }
        }
        None => {
            controllers.await;
            Ok(())
        }
    };
    if let Some((leader_rx, task)) = lease {
        drop(leader_rx); // releases the lease so a standby takes over at once
        let _ = task.await;
    }
    let _ = server.await;
    tracing::info!("stopped");
    result
}
