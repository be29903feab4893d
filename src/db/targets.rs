//! The database targets in use: for each, its session pool (`db::pool`) and the observer
//! every policy on it shares (`db::shared`). Pools of targets no policy uses any more are
//! dropped.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::{counter::Counter, family::Family};

use crate::db::connect::Target;
use crate::db::pool::{Manager, Pool, WAIT_TIMEOUT};
use crate::db::shared::SharedObserver;
use crate::telemetry::TargetLabels;

/// Pools not used for this long are dropped (their policies are gone or moved).
pub const UNUSED_POOL: Duration = Duration::from_secs(900);

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
            pool: Pool::builder(Manager::new(target.clone()))
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
