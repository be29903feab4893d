//! One small bounded pool per database target, shared by every policy on it. The seed
//! incident: application pools exhausted max_connections and maintenance starved; pgpart
//! never holds more than `max` sessions per target.
//!
//! deadpool does the pooling. pgpart adds what its sessions need: each session is reset
//! before it is handed out again (a pass that ended early must not leave its table's
//! advisory lock or a lock_timeout behind), a wait for a free session is bounded, and idle
//! sessions are closed. `db::targets` keeps one pool per target.

use std::time::Duration;

use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult};
use tokio_postgres::Client;

use crate::db::connect::Target;
use crate::error::{Error, Result};

/// Longest wait for a free session of a target before the pass reports it.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle sessions older than this are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// What a session may carry from one pass to the next, undone before reuse. ROLLBACK
/// only warns outside a transaction.
const RESET_SESSION: &str =
    "ROLLBACK; SELECT pg_advisory_unlock_all(); RESET lock_timeout; RESET statement_timeout";

pub struct Manager {
    target: Target,
}

impl Manager {
    pub fn new(target: Target) -> Self {
        Manager { target }
    }
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
