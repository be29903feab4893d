//! One small bounded pool per database target, shared by every policy on it. The seed
//! incident: application pools exhausted max_connections and maintenance starved; pgpart
//! never holds more than `max` sessions per target.
//!
//! deadpool does the pooling. pgpart adds what its sessions need: each session is reset
//! before it is handed out again (a pass that ended early must not leave its table's
//! advisory lock or a lock_timeout behind), a wait for a free session is bounded, idle
//! sessions are closed, and the pools of targets no policy uses any more are dropped.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult};
use tokio_postgres::Client;

use crate::db::connect::Target;
use crate::db::shared::SharedObserver;
use crate::error::{Error, Result};
use crate::telemetry::TargetLabels;
use prometheus_client::metrics::{counter::Counter, family::Family};

/// Longest wait for a free session of a target before the pass reports it.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle sessions older than this are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Pools not used for this long are dropped (their policies are gone or moved).
pub const UNUSED_POOL: Duration = Duration::from_secs(900);

/// What a session may carry from one pass to the next, undone before reuse. ROLLBACK
/// only warns outside a transaction.
const RESET_SESSION: &str =
    "ROLLBACK; SELECT pg_advisory_unlock_all(); RESET lock_timeout; RESET statement_timeout";

pub struct Manager {
    target: Target,
}

impl managed::Manager for Manager {
    type Type = Client;
    type Error = Error;

    async fn create(&self) -> Result<Client> {
        self.target.connect().await
    }

    async fn recycle(&self, client: &mut Client, _: &Metrics) -> RecycleResult<Error> {
        if client.is_closed() {
            return Err(RecycleError::message("session closed"));
        }
        client
            .batch_execute(RESET_SESSION)
            .await
            .map_err(|e| RecycleError::Backend(e.into()))
    }
}

pub type Pool = managed::Pool<Manager>;
/// A session borrowed from a pool; reset and returned on drop.
pub type Conn = managed::Object<Manager>;

/// Borrow a session, waiting at most [`WAIT_TIMEOUT`] for one.
pub async fn get(pool: &Pool) -> Result<Conn> {
    pool.retain(|_, m| m.last_used() < IDLE_TIMEOUT);
    pool.get().await.map_err(|e| match e {
        PoolError::Backend(e) => e,
        PoolError::Timeout(_) => Error::Connect(format!(
            "no free database session within {}s: other passes on this database hold all {} (--pool-size)",
            WAIT_TIMEOUT.as_secs(),
            pool.status().max_size
        )),
        other => Error::Database(format!("database session pool: {other}")),
    })
}

/// Pools by target, each with the target's shared observer. The key hashes every
/// connection setting, password included, so a rotated credential gets a fresh pool and
/// the old one goes.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<u64, Entry>>,
    /// Where each target's observer counts its observations (none outside the controller).
    observations: Option<Family<TargetLabels, Counter>>,
}

struct Entry {
    pool: Pool,
    observer: Arc<SharedObserver>,
    description: String,
    used: Instant,
}

pub fn target_key(settings: &[(&str, &str)]) -> u64 {
    let mut h = DefaultHasher::new();
    settings.hash(&mut h);
    h.finish()
}

impl Pools {
    pub fn counting_observations(observations: Family<TargetLabels, Counter>) -> Self {
        Pools {
            pools: Default::default(),
            observations: Some(observations),
        }
    }

    /// The pool of `target` (created with `max` sessions on first use). Pools of the same
    /// target under other credentials, and pools nobody used for [`UNUSED_POOL`], are dropped.
    pub fn get(&self, key: u64, target: &Target, max: usize) -> Pool {
        self.get_with_observer(key, target, max).0
    }

    /// [`Pools::get`], with the observer every policy on the target shares.
    pub fn get_with_observer(
        &self,
        key: u64,
        target: &Target,
        max: usize,
    ) -> (Pool, Arc<SharedObserver>) {
        let description = target.describe();
        let mut pools = self.pools.lock().expect("pool map lock");
        pools.retain(|k, e| {
            *k == key || (e.description != description && e.used.elapsed() < UNUSED_POOL)
        });
        let entry = pools.entry(key).or_insert_with(|| Entry {
            pool: Pool::builder(Manager {
                target: target.clone(),
            })
            .max_size(max)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and timeouts builds"),
            observer: Arc::new(SharedObserver::new(
                self.observations
                    .as_ref()
                    .map(|f| {
                        f.get_or_create(&TargetLabels {
                            target: description.clone(),
                        })
                        .clone()
                    })
                    .unwrap_or_default(),
            )),
            description,
            used: Instant::now(),
        });
        entry.used = Instant::now();
        (entry.pool.clone(), entry.observer.clone())
    }

    /// Sessions in use per target, for the metrics.
    pub fn snapshot(&self) -> Vec<(String, usize)> {
        self.pools
            .lock()
            .map(|p| {
                p.values()
                    .map(|e| {
                        let s = e.pool.status();
                        (e.description.clone(), s.size - s.available)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}
