//! Logs (text or JSON), Prometheus metrics, and the /healthz /readyz /metrics server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{
    counter::Counter, family::Family, gauge::Gauge, histogram::Histogram,
};
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr; `PGPART_LOG` (or `RUST_LOG`) sets the filter.
pub fn init_tracing(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGPART_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| default_level.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub namespace: String,
    pub policy: String,
    pub table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub namespace: String,
    pub policy: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub kind: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub partitions: Family<PolicyLabels, Gauge>,
    pub coverage_seconds: Family<PolicyLabels, Gauge>,
    pub covered_until: Family<PolicyLabels, Gauge>,
    pub default_rows: Family<PolicyLabels, Gauge>,
    pub reconciles: Family<PolicyLabels, Counter>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub ddl_actions: Family<ActionLabels, Counter>,
    pub pool_in_use: Family<TargetLabels, Gauge>,
    pub observations: Family<TargetLabels, Counter>,
}

impl Metrics {
    /// Removes every series of one policy on one table.
    pub fn remove_policy(&self, labels: &PolicyLabels) {
        self.partitions.remove(labels);
        self.coverage_seconds.remove(labels);
        self.covered_until.remove(labels);
        self.default_rows.remove(labels);
        self.reconciles.remove(labels);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pgpart");
        let m = Metrics {
            partitions: Family::default(),
            coverage_seconds: Family::default(),
            covered_until: Family::default(),
            default_rows: Family::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_seconds: Histogram::new([
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            ddl_actions: Family::default(),
            pool_in_use: Family::default(),
            observations: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "partitions",
            "Managed partitions attached",
            m.partitions.clone(),
        );
        registry.register(
            "coverage_ahead_seconds",
            "Seconds from now to the end of the contiguous partitions",
            m.coverage_seconds.clone(),
        );
        registry.register(
            "covered_until_timestamp_seconds",
            "Unix time at which the contiguous partitions end (time keys)",
            m.covered_until.clone(),
        );
        registry.register(
            "default_partition_rows",
            "Rows in the DEFAULT partition",
            m.default_rows.clone(),
        );
        registry.register("reconciles", "Reconcile passes", m.reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed, by reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time per reconcile pass",
            m.reconcile_seconds.clone(),
        );
        registry.register(
            "observations",
            "Catalog observations of a database, each shared by the passes that asked meanwhile",
            m.observations.clone(),
        );
        registry.register(
            "ddl_actions",
            "DDL actions executed, by kind and result",
            m.ddl_actions.clone(),
        );
        registry.register(
            "pool_connections_in_use",
            "Database connections in use, per target",
            m.pool_in_use.clone(),
        );
        Metrics { registry, ..m }
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

/// Serve /healthz (process alive), /readyz (ready to work: leader or standby with a
/// working client) and /metrics until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(s): State<ServerState>| async move {
                if s.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                }
            }),
        )
        .route(
            "/metrics",
            get(|State(s): State<ServerState>| async move {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &s.metrics.registry) {
                    Ok(()) => (
                        StatusCode::OK,
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        out,
                    ),
                    Err(_) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [("content-type", "text/plain")],
                        String::new(),
                    ),
                }
            }),
        )
        .with_state(ServerState { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz /readyz /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
