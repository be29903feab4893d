//! One catalog observation per database for every policy on it: the controller's passes
//! ask for their tables here, and every request that arrives while an observation runs is
//! served by the next one, over the union of the tables asked for. A request is always
//! served by an observation that started after it (no stale answer), and the observer
//! takes its session from the target's pool before any pass holds one.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use crate::db::observe::observe;
use crate::db::pool::{self, Pool};
use crate::error::{Error, Result};
use crate::plan::model::ObservedTable;

/// What one policy gets from a shared observation.
pub struct Seen {
    /// The policy's table; `None` when it is not a partitioned table.
    pub table: Option<ObservedTable>,
    pub server_version_num: i32,
    pub db_now: DateTime<Utc>,
}

type Table = (String, String);

#[derive(Default)]
struct Batch {
    /// Each request: its table, whether the table's key holds time (see
    /// `observe::time_keyed`), where the answer goes.
    waiting: Vec<(Table, bool, oneshot::Sender<Result<Seen>>)>,
    running: bool,
}

#[derive(Default)]
pub struct SharedObserver {
    batch: Mutex<Batch>,
    /// Observations made, for the metrics.
    observations: Counter,
}

impl SharedObserver {
    pub fn new(observations: Counter) -> Self {
        SharedObserver {
            batch: Default::default(),
            observations,
        }
    }

    /// Observe `schema.table` in the next observation of this database; `time_keyed`: its
    /// integer key holds time (`keyEncoding`), so its max(key) is not needed.
    pub async fn observe(
        self: &Arc<Self>,
        pool: &Pool,
        schema: &str,
        table: &str,
        time_keyed: bool,
    ) -> Result<Seen> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut batch = self.batch.lock().expect("observer lock");
            batch
                .waiting
                .push(((schema.to_owned(), table.to_owned()), time_keyed, tx));
            !std::mem::replace(&mut batch.running, true)
        };
        if start {
            let (me, pool) = (self.clone(), pool.clone());
            tokio::spawn(async move { me.run(pool).await });
        }
        rx.await
            .map_err(|_| Error::Database("the shared observation ended without an answer".into()))?
    }

    /// Serve batches until nobody waits.
    async fn run(&self, pool: Pool) {
        loop {
            let batch = {
                let mut batch = self.batch.lock().expect("observer lock");
                if batch.waiting.is_empty() {
                    batch.running = false;
                    return;
                }
                std::mem::take(&mut batch.waiting)
            };
            let tables: Vec<Table> = batch
                .iter()
                .map(|(t, ..)| t.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            // max(key) is skipped only where no request needs it.
            let time_keyed: Vec<Table> = tables
                .iter()
                .filter(|t| batch.iter().all(|(u, keyed, _)| u != *t || *keyed))
                .cloned()
                .collect();
            self.observations.inc();
            let observed = async {
                let conn = pool::get(&pool).await?;
                observe(&conn, Some(&tables), &time_keyed, false).await
            }
            .await;
            for ((schema, table), _, tx) in batch {
                let answer = match &observed {
                    Ok(o) => Ok(Seen {
                        table: o.table(&schema, &table).cloned(),
                        server_version_num: o.server_version_num,
                        db_now: o.db_now,
                    }),
                    Err(e) => Err(e.clone()),
                };
                let _ = tx.send(answer); // a pass that gave up no longer listens
            }
        }
    }
}
