//! One small bounded pool per database target, shared by every policy on it. The
//! seed incident: application pools exhausted max_connections and maintenance starved;
//! pgpart never holds more than `max` sessions per target.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::Client;

use crate::db::connect::Target;
use crate::error::Result;

pub struct Pool {
    target: Target,
    idle: Mutex<Vec<Client>>,
    slots: Arc<Semaphore>,
    pub max: usize,
}

/// A session borrowed from a pool; returned on drop if still healthy.
pub struct Conn {
    client: Option<Client>,
    pool: Arc<Pool>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until drop")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(c) = self.client.take()
            && !c.is_closed()
            && let Ok(mut idle) = self.pool.idle.lock()
        {
            idle.push(c);
        }
    }
}

impl Pool {
    pub fn in_use(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    pub async fn get(self: &Arc<Self>) -> Result<Conn> {
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let reused = self.idle.lock().ok().and_then(|mut idle| {
            while let Some(c) = idle.pop() {
                if !c.is_closed() {
                    return Some(c);
                }
            }
            None
        });
        let client = match reused {
            Some(c) => c,
            None => self.target.connect().await?,
        };
        Ok(Conn {
            client: Some(client),
            pool: self.clone(),
            _permit: permit,
        })
    }
}

/// Pools by target. The key hashes every connection setting, password included, so a
/// rotated credential gets a fresh pool and the old one is dropped with its last user.
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<u64, Arc<Pool>>>,
}

pub fn target_key(settings: &[(&str, &str)]) -> u64 {
    let mut h = DefaultHasher::new();
    settings.hash(&mut h);
    h.finish()
}

impl Pools {
    pub fn get(&self, key: u64, target: &Target, max: usize) -> Arc<Pool> {
        let mut pools = self.pools.lock().expect("pool map lock");
        pools
            .entry(key)
            .or_insert_with(|| {
                Arc::new(Pool {
                    target: target.clone(),
                    idle: Mutex::new(Vec::new()),
                    slots: Arc::new(Semaphore::new(max)),
                    max,
                })
            })
            .clone()
    }

    /// Forget pools of a target whose credentials changed (same description, other key).
    pub fn retain_current(&self, description: &str, current: u64) {
        if let Ok(mut pools) = self.pools.lock() {
            pools.retain(|k, p| *k == current || p.target.describe() != description);
        }
    }

    pub fn snapshot(&self) -> Vec<(String, usize)> {
        self.pools
            .lock()
            .map(|p| {
                p.values()
                    .map(|p| (p.target.describe(), p.in_use()))
                    .collect()
            })
            .unwrap_or_default()
    }
}
