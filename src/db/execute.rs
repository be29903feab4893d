//! Executing a plan: each action its own short transaction with `lock_timeout` set, under
//! a per-table advisory lock. A request queues for at most `lockTimeout` (and so holds up
//! the sessions behind it no longer). After a timeout, and before every request for
//! ACCESS EXCLUSIVE on the parent, pgpart looks for sessions that have held a conflicting
//! lock for long (see [`long_hold`]) and waits them out without queueing; timeouts are
//! retried after a jittered pause, for up to [`LOCK_PATIENCE`] per pass.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::archive;
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::plan::action::{self, Action, RangeSlot, TableCtx};
use crate::plan::quote::{ident, literal};
use crate::policy::RetentionAction;

/// How long one pass keeps trying for its locks, in all: a 20 s report query or ANALYZE
/// is waited out, a session that holds on for longer is named in a `LockTimeout`.
/// `PGPART_LOCK_PATIENCE` (a duration like `10s`) sets another.
pub const LOCK_PATIENCE: Duration = Duration::from_secs(60);

fn lock_patience() -> Duration {
    std::env::var("PGPART_LOCK_PATIENCE")
        .ok()
        .and_then(|v| crate::policy::units::parse_short_duration(&v).ok())
        .unwrap_or(LOCK_PATIENCE)
}
/// At most this many rows outside the repaired range (other gaps, NULL keys, keys past
/// retention) move to the new default inside a repair's transaction, which holds every
/// session of the table off while it runs.
pub const REPAIR_MAX_MOVED_ROWS: i64 = 10_000;
/// First key of pgpart's two-key advisory locks ("pgpt").
const ADVISORY_NAMESPACE: i32 = 0x7067_7074;

#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub description: String,
    /// For a repair: the rows outside its range that moved to the new default.
    pub rows: i64,
    pub result: Result<()>,
}

/// Whether `DETACH ... CONCURRENTLY` may be used: PostgreSQL 14+, and not with a default partition.
pub fn can_detach_concurrently(server_version_num: i32, ctx: &TableCtx) -> bool {
    server_version_num >= 140000 && ctx.default_partition.is_none()
}

/// Run `sql` outside a transaction block (as DETACH CONCURRENTLY and FINALIZE must run)
/// with the session's lock_timeout set to `timeout` for it, then reset.
async fn with_session_lock_timeout(client: &Client, timeout: Duration, sql: &str) -> Result<()> {
    client
        .batch_execute(&format!(
            "SET lock_timeout = {}",
            literal(&format!("{}ms", timeout.as_millis().max(1)))
        ))
        .await?;
    let res = client.batch_execute(sql).await;
    client.batch_execute("RESET lock_timeout").await?;
    Ok(res?)
}

/// Hold the table's advisory lock (session level), waiting up to `wait` for another
/// pgpart run that holds it. Callers observe and plan again once they have it.
pub async fn lock_table(client: &Client, ctx: &TableCtx, wait: Duration) -> Result<()> {
    let name = format!("{}.{}", ctx.schema, ctx.table);
    let sql = format!(
        "SELECT pg_advisory_lock({ADVISORY_NAMESPACE}, hashtext({}))",
        literal(&name)
    );
    with_session_lock_timeout(client, wait, &sql)
        .await
        .map_err(|e| match e {
            Error::LockTimeout(_) => {
                Error::LockTimeout(format!("another pgpart run is working on {name}"))
            }
            other => other,
        })
}

pub async fn unlock_table(client: &Client, ctx: &TableCtx) -> Result<()> {
    let name = format!("{}.{}", ctx.schema, ctx.table);
    client
        .execute(
            "SELECT pg_advisory_unlock($1, hashtext($2))",
            &[&ADVISORY_NAMESPACE, &name],
        )
        .await?;
    Ok(())
}

/// Execute the plan's actions in order, reporting each outcome as it completes. After a
/// failure to make or repair a partition nothing is retired in this pass: coverage is never
/// reduced while something is wrong. A retirement that fails (say, a foreign key still
/// points at the partition) holds up no other, except that a failed archive holds up the
/// other archives.
pub async fn execute_plan(
    client: &mut Client,
    plan: &Plan,
    server_version_num: i32,
    on_outcome: &mut (dyn FnMut(&Outcome) + Send),
) -> Vec<Outcome> {
    let ctx = &plan.ctx;
    let patience = lock_patience();
    let deadline = Instant::now() + patience;
    let concurrently = can_detach_concurrently(server_version_num, ctx);
    let mut outcomes = Vec::new();
    let mut failed = false;
    let mut archive_failed = false;
    let mut contended = false;
    for a in &plan.actions {
        let retires = matches!(a, Action::Retire { .. } | Action::FinishRetire { .. });
        // After an archive failed (the store refused, the disk is full), no other
        // partition is detached to be archived in this pass: it would only wait, detached.
        let archives = matches!(
            a,
            Action::Retire {
                action: RetentionAction::Archive,
                ..
            } | Action::FinishRetire {
                action: RetentionAction::Archive,
                ..
            }
        );
        if (failed && retires) || (archive_failed && archives) {
            continue;
        }
        let mut rows = 0;
        let needs = strong_locks(a, ctx, concurrently);
        // Until a lock of this pass has timed out, a create just asks (one query fewer per
        // partition on a catch-up); what takes the whole table always looks first.
        let mut look_first = contended
            || needs
                .iter()
                .any(|(rel, mode)| *rel == ctx.parent() && *mode == ACCESS_EXCLUSIVE);
        let result = loop {
            let holder = if look_first {
                long_holder(client, &needs, long_hold(ctx.lock_timeout)).await
            } else {
                Ok(None)
            };
            match holder {
                Err(e) => break Err(e),
                Ok(Some(holder)) if Instant::now() >= deadline => {
                    break Err(Error::LockTimeout(format!(
                        "{holder}; pgpart waited {}s for it this pass without queueing behind it",
                        patience.as_secs()
                    )));
                }
                Ok(Some(holder)) => {
                    tracing::debug!(table = %ctx.table, "waiting, not queueing: {holder}");
                    tokio::time::sleep(jitter(Duration::from_millis(200))).await;
                    continue;
                }
                Ok(None) => {}
            }
            match execute_action(client, ctx, a, concurrently, &mut rows).await {
                Err(Error::LockTimeout(m)) if Instant::now() < deadline => {
                    (look_first, contended) = (true, true);
                    tracing::debug!(table = %ctx.table, "lock timeout, retrying: {m}");
                    tokio::time::sleep(jitter(ctx.lock_timeout.max(Duration::from_millis(50))))
                        .await;
                }
                other => break other,
            }
        };
        failed |= result.is_err() && !retires;
        archive_failed |= result.is_err() && archives;
        let outcome = Outcome {
            action: a.clone(),
            description: a.describe(ctx),
            rows,
            result,
        };
        on_outcome(&outcome);
        outcomes.push(outcome);
    }
    outcomes
}

/// A holder in a transaction older than this is waited out without asking: it is not
/// about to finish (an ANALYZE, a report, a session idle in its transaction). Younger ones,
/// a stream of short statements, are queued behind for at most `lockTimeout`.
fn long_hold(lock_timeout: Duration) -> Duration {
    (lock_timeout * 10).max(Duration::from_secs(1))
}

/// `base` to twice `base`, at random: retries of many pgpart runs don't fall in step.
fn jitter(base: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    base + base.mul_f64((r % 1000) as f64 / 1000.0)
}

/// The lock modes a requested mode waits for (PostgreSQL's conflict table).
fn conflicting_modes(mode: &str) -> &'static str {
    match mode {
        "ShareUpdateExclusiveLock" => {
            "ShareUpdateExclusiveLock,ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock"
        }
        _ => {
            "AccessShareLock,RowShareLock,RowExclusiveLock,ShareUpdateExclusiveLock,ShareLock,ShareRowExclusiveLock,ExclusiveLock,AccessExclusiveLock"
        }
    }
}

const SHARE_UPDATE_EXCLUSIVE: &str = "ShareUpdateExclusiveLock";
const ACCESS_EXCLUSIVE: &str = "AccessExclusiveLock";

/// The locks an action takes that other sessions could be waiting behind: (relation, mode).
fn strong_locks(a: &Action, ctx: &TableCtx, concurrently: bool) -> Vec<(String, &'static str)> {
    let parent = ctx.parent();
    let default = ctx.default_partition.as_deref().map(|d| ctx.child(d));
    match a {
        Action::CreateRange { .. } | Action::CreateList { .. } | Action::CreateHash { .. } => {
            // ATTACH: the parent, and the default partition it scans.
            let mut v = vec![(parent, SHARE_UPDATE_EXCLUSIVE)];
            v.extend(default.map(|d| (d, ACCESS_EXCLUSIVE)));
            v
        }
        Action::CreateDefault { .. } | Action::FinishDetach { .. } => {
            vec![(parent, SHARE_UPDATE_EXCLUSIVE)]
        }
        Action::Retire { .. } if concurrently => vec![(parent, SHARE_UPDATE_EXCLUSIVE)],
        Action::Retire { .. } | Action::Repair { .. } => vec![(parent, ACCESS_EXCLUSIVE)],
        Action::Adopt { partition } => vec![(ctx.child(partition), ACCESS_EXCLUSIVE)],
        Action::DropDefaultGuard => default.map(|d| (d, ACCESS_EXCLUSIVE)).into_iter().collect(),
        Action::RestoreOrphan { .. }
        | Action::FinishRetire { .. }
        | Action::AbandonRetire { .. } => Vec::new(),
    }
}

/// A session of this database holding a lock that conflicts with one of `needs`, in a
/// transaction older than `older_than`: asking now would queue behind it (and every
/// session after us behind our request). Only pid, mode, relation and age are named.
async fn long_holder(
    client: &Client,
    needs: &[(String, &'static str)],
    older_than: Duration,
) -> Result<Option<String>> {
    if needs.is_empty() {
        return Ok(None);
    }
    let rels: Vec<&str> = needs.iter().map(|(r, _)| r.as_str()).collect();
    let modes: Vec<&str> = needs.iter().map(|(_, m)| conflicting_modes(m)).collect();
    let row = client
        .query_opt(
            "SELECT format('pid %s holds %s on %s in a transaction open for %s s', l.pid, l.mode, \
                    l.relation::regclass, to_char(extract(epoch FROM clock_timestamp() - a.xact_start), 'FM999990.0')) \
               FROM pg_locks l \
               LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
               JOIN unnest($1::text[], $2::text[]) AS want(rel, modes) ON l.relation = to_regclass(want.rel) \
              WHERE l.locktype = 'relation' AND l.granted AND l.pid IS DISTINCT FROM pg_backend_pid() \
                AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                AND l.mode = ANY (string_to_array(want.modes, ',')) \
                AND (a.xact_start IS NULL OR a.xact_start < clock_timestamp() - make_interval(secs => $3)) \
              ORDER BY a.xact_start NULLS FIRST LIMIT 1",
            &[&rels, &modes, &older_than.as_secs_f64()],
        )
        .await?;
    Ok(row.map(|r| r.get(0)))
}

/// Run statements as one transaction; on error roll back so the session stays usable.
async fn in_transaction(client: &Client, ctx: &TableCtx, statements: &[String]) -> Result<()> {
    let sql = format!(
        "BEGIN; {}; {}; COMMIT",
        action::lock_timeout_sql(ctx),
        statements.join("; ")
    );
    match client.batch_execute(&sql).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e.into())
        }
    }
}

async fn execute_action(
    client: &mut Client,
    ctx: &TableCtx,
    a: &Action,
    concurrently: bool,
    rows: &mut i64,
) -> Result<()> {
    match a {
        Action::FinishDetach { .. } => {
            let finalize = action::statements(a, ctx, false).join("; ");
            with_session_lock_timeout(client, ctx.lock_timeout, &finalize).await
        }
        Action::Retire {
            partition,
            action: how,
            target,
        } => {
            // Mark first (Drop/MoveToSchema/Archive), so a pass dying after the detach
            // leaves a table the next pass finishes; then detach; then drop, move, or
            // archive and drop. An archive's mark keeps the bound, which the detach clears.
            // A retry of this action (after a lock timeout) finds it detached already: the
            // bound is then the one its mark kept, never lost to the placeholder.
            let bound = match how {
                RetentionAction::Archive => match partition_bound(client, ctx, partition).await? {
                    Some(b) => Some(b),
                    None => retiring_bound(client, ctx, partition).await?,
                },
                _ => None,
            };
            if let Some(mark) =
                action::mark_retiring(ctx, partition, *how, target.as_deref(), bound.as_deref())
            {
                in_transaction(client, ctx, &[mark]).await?;
            }
            if concurrently {
                // A try of this pass may have timed out waiting in DETACH CONCURRENTLY's
                // second transaction: the partition is then pending detach, and only
                // FINALIZE may go on (any other DETACH on the table is refused).
                let detach = match attachment(client, ctx, partition).await? {
                    Attachment::Attached => action::detach(ctx, partition, true),
                    Attachment::PendingDetach => action::finalize_detach(ctx, partition),
                    Attachment::Detached => String::new(),
                };
                if !detach.is_empty() {
                    with_session_lock_timeout(client, ctx.lock_timeout, &detach).await?;
                }
            } else {
                let detach = action::detach(ctx, partition, false);
                in_transaction(client, ctx, std::slice::from_ref(&detach)).await?;
            }
            finish_retire(client, ctx, partition, *how, target.as_deref(), bound, rows).await
        }
        Action::FinishRetire {
            partition,
            action: how,
            target,
        } => {
            let bound = match how {
                RetentionAction::Archive => retiring_bound(client, ctx, partition).await?,
                _ => None,
            };
            finish_retire(client, ctx, partition, *how, target.as_deref(), bound, rows).await
        }
        Action::Repair { slot } => repair(client, ctx, slot, rows).await,
        Action::RestoreOrphan { table } => {
            let cols = columns(client, ctx).await?;
            in_transaction(
                client,
                ctx,
                &action::restore_orphan(ctx, table, Some(&cols)),
            )
            .await
        }
        _ => in_transaction(client, ctx, &action::statements(a, ctx, false)).await,
    }
}

/// After the detach: drop or move the partition, or archive and drop it (`rows`: how many
/// were archived).
async fn finish_retire(
    client: &Client,
    ctx: &TableCtx,
    partition: &str,
    how: RetentionAction,
    target: Option<&str>,
    bound: Option<String>,
    rows: &mut i64,
) -> Result<()> {
    if how == RetentionAction::Archive {
        let manifest = archive::archive_and_drop(client, ctx, partition, bound).await?;
        *rows = manifest.rows as i64;
        return Ok(());
    }
    let rest = action::finish_retire(ctx, partition, how, target);
    if !rest.is_empty() {
        in_transaction(client, ctx, &rest).await?;
    }
    Ok(())
}

/// The partition's `FOR VALUES ...`, while it is still attached.
async fn partition_bound(
    client: &Client,
    ctx: &TableCtx,
    partition: &str,
) -> Result<Option<String>> {
    Ok(client
        .query_opt(
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class \
              WHERE oid = to_regclass($1) AND relispartition",
            &[&ctx.child(partition)],
        )
        .await?
        .and_then(|r| r.get::<_, Option<String>>(0)))
}

/// The bound an archive's retiring mark kept, for a retirement an earlier pass began.
async fn retiring_bound(
    client: &Client,
    ctx: &TableCtx,
    partition: &str,
) -> Result<Option<String>> {
    let comment: Option<String> = client
        .query_one(
            "SELECT obj_description(to_regclass($1), 'pg_class')",
            &[&ctx.child(partition)],
        )
        .await?
        .get(0);
    Ok(comment.and_then(|c| action::retiring_bound(&ctx.table, &c).map(str::to_string)))
}

enum Attachment {
    Attached,
    PendingDetach,
    Detached,
}

/// Whether `partition` is attached to the parent, pending detach, or not a partition of it.
async fn attachment(client: &Client, ctx: &TableCtx, partition: &str) -> Result<Attachment> {
    let row = client
        .query_opt(
            "SELECT inhdetachpending FROM pg_inherits \
              WHERE inhrelid = to_regclass($1) AND inhparent = to_regclass($2)",
            &[&ctx.child(partition), &ctx.parent()],
        )
        .await?;
    Ok(match row.map(|r| r.get::<_, bool>(0)) {
        Some(false) => Attachment::Attached,
        Some(true) => Attachment::PendingDetach,
        None => Attachment::Detached,
    })
}

/// The parent's columns that an INSERT may name (generated ones are computed), quoted.
async fn columns(client: &Client, ctx: &TableCtx) -> Result<String> {
    let names: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 \
             AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
            &[&ctx.parent()],
        )
        .await?
        .iter()
        .map(|r| ident(r.get::<_, &str>(0)))
        .collect();
    Ok(names.join(", "))
}

/// Give the default partition's rows in `slot` a partition by making the default that
/// partition (see [`Action::Repair`]), in one transaction under ACCESS EXCLUSIVE on the
/// parent: no row is copied, so none is ever hidden and every UPDATE or DELETE finds its
/// row; a crash at any point leaves the table as it was. The lock is held for one scan of
/// the default (ATTACH checks its rows are in `slot`) plus moving the few rows outside it.
async fn repair(
    client: &mut Client,
    ctx: &TableCtx,
    slot: &RangeSlot,
    moved: &mut i64,
) -> Result<()> {
    let default = ctx
        .default_partition
        .as_deref()
        .ok_or_else(|| Error::Database("repair planned without a default partition".into()))?;
    let d = ctx.child(default);
    let range = format!("[{}, {})", ctx.show(slot.from), ctx.show(slot.to));
    // Before any strong lock: how many rows would have to move (bounded), and whether
    // moving them would fire anything.
    let tx = client.transaction().await?;
    tx.batch_execute(&action::lock_timeout_sql(ctx)).await?;
    let outside: i64 = tx
        .query_one(
            &format!(
                "SELECT count(*) FROM (SELECT FROM ONLY {d} WHERE NOT ({}) LIMIT {}) o",
                ctx.range_predicate(slot.from, slot.to),
                REPAIR_MAX_MOVED_ROWS + 1
            ),
            &[],
        )
        .await?
        .get(0);
    let triggers: i64 = tx
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal",
            &[&d],
        )
        .await?
        .get(0);
    tx.commit().await?;
    if outside > REPAIR_MAX_MOVED_ROWS {
        return Err(Error::RepairRefused(format!(
            "default partition {default} holds more than {REPAIR_MAX_MOVED_ROWS} rows outside {range} as well; making it the partition for {range} would move them under a lock that holds off every session of the table. Move the rows of the other ranges out by hand (or widen spec.range.interval), and the next pass repairs the rest"
        )));
    }
    if outside > 0 && triggers > 0 {
        return Err(Error::RepairRefused(format!(
            "default partition {default} holds {outside} rows outside {range}, and moving them to a new default would fire its {triggers} triggers; pgpart leaves them where they are. Move or delete them by hand, and the next pass repairs {range}"
        )));
    }
    let cols = if outside > 0 {
        Some(columns(client, ctx).await?)
    } else {
        None
    };
    let tx = client.transaction().await?;
    tx.batch_execute(&action::lock_timeout_sql(ctx)).await?;
    // Without rows to move, the move step is the comment `plan` shows in its place.
    for st in action::repair(ctx, slot, cols.as_deref()) {
        if !st.starts_with("--") {
            // Only the move reports rows; the DDL reports none.
            *moved = (*moved).max(tx.execute(&st, &[]).await? as i64);
        }
    }
    tx.commit().await?;
    Ok(())
}
