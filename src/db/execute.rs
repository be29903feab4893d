//! Executing a plan: each action its own short transaction with `lock_timeout` set,
//! retried with backoff on lock timeouts, under a per-table advisory lock.

use std::time::Duration;

use tokio_postgres::Client;

use crate::db::quote::{ident, literal};
use crate::error::{Error, Result};
use crate::plan::Plan;
use crate::plan::action::{self, Action, OWNER_MARK, RangeSlot, TableCtx};

/// Rows moved per transaction when repairing a default partition: small enough that no
/// batch holds its locks for long, large enough that the per-batch overhead is small.
pub const REPAIR_BATCH_ROWS: i64 = 20_000;
/// Attempts per action when its lock can't be had within lockTimeout.
pub const LOCK_ATTEMPTS: u32 = 3;
/// First key of pgpart's two-key advisory locks ("pgpt").
const ADVISORY_NAMESPACE: i32 = 0x7067_7074;

#[derive(Debug)]
pub struct Outcome {
    pub action: Action,
    pub description: String,
    /// Rows moved, for repairs.
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
/// points at the partition) holds up no other.
pub async fn execute_plan(
    client: &mut Client,
    plan: &Plan,
    server_version_num: i32,
    on_outcome: &mut (dyn FnMut(&Outcome) + Send),
) -> Vec<Outcome> {
    let ctx = &plan.ctx;
    let mut outcomes = Vec::new();
    let mut failed = false;
    let mut guarded = false;
    for a in &plan.actions {
        let retires = matches!(a, Action::Retire { .. } | Action::FinishRetire { .. });
        if failed && retires {
            continue;
        }
        let mut rows = 0;
        let mut delay = Duration::from_millis(100).max(ctx.lock_timeout / 10);
        let mut attempt = 1;
        let result = loop {
            match execute_action(client, ctx, a, server_version_num, &mut rows).await {
                Err(Error::LockTimeout(m)) if attempt < LOCK_ATTEMPTS => {
                    tracing::debug!(attempt, "lock timeout, retrying: {m}");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                other => break other,
            }
        };
        if result.is_err() && !failed && guarded {
            // Don't leave the default refusing rows for slots that were not attached.
            let drop = action::drop_guard(ctx);
            if let Err(e) = in_transaction(client, ctx, &[drop]).await {
                tracing::warn!(table = %ctx.table, "could not remove the default partition's guard: {e}");
            }
        }
        guarded |= matches!(a, Action::GuardDefault { .. }) && result.is_ok();
        failed |= result.is_err() && !retires;
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

fn lock_timeout_sql(ctx: &TableCtx) -> String {
    format!(
        "SET LOCAL lock_timeout = {}",
        literal(&format!("{}ms", ctx.lock_timeout.as_millis().max(1)))
    )
}

/// Run statements as one transaction; on error roll back so the session stays usable.
async fn in_transaction(client: &Client, ctx: &TableCtx, statements: &[String]) -> Result<()> {
    let sql = format!(
        "BEGIN; {}; {}; COMMIT",
        lock_timeout_sql(ctx),
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
    version: i32,
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
            to_schema,
        } => {
            // Mark first (Drop/MoveToSchema), so a pass dying after the detach leaves a
            // table the next pass finishes; then detach; then drop or move.
            if let Some(mark) = action::mark_retiring(ctx, partition, *how, to_schema.as_deref()) {
                in_transaction(client, ctx, &[mark]).await?;
            }
            let concurrently = can_detach_concurrently(version, ctx);
            let detach = action::detach(ctx, partition, concurrently);
            if concurrently {
                with_session_lock_timeout(client, ctx.lock_timeout, &detach).await?;
            } else {
                in_transaction(client, ctx, std::slice::from_ref(&detach)).await?;
            }
            let rest = action::finish_retire(ctx, partition, *how, to_schema.as_deref());
            if !rest.is_empty() {
                in_transaction(client, ctx, &rest).await?;
            }
            Ok(())
        }
        Action::Repair { slot } => repair(client, ctx, slot, rows).await,
        Action::GuardDefault { from, to } => {
            let [add, validate, swap] = action::guard_default(ctx, *from, *to);
            in_transaction(client, ctx, &add).await?;
            match in_transaction(client, ctx, &validate).await {
                Err(Error::CheckViolation(m)) => {
                    // Rows in the default inside the span: attaches will scan, as without a guard.
                    tracing::info!(table = %ctx.table, "default partition holds rows in the guarded span; not guarding: {m}");
                    in_transaction(client, ctx, &[action::drop_guard_next(ctx)]).await
                }
                Err(e) => {
                    let _ = in_transaction(client, ctx, &[action::drop_guard_next(ctx)]).await;
                    Err(e)
                }
                Ok(()) => in_transaction(client, ctx, &swap).await,
            }
        }
        _ => in_transaction(client, ctx, &action::statements(a, ctx, false)).await,
    }
}

/// Move one slot's rows out of the default partition into a new partition, losing none:
/// the child is made standalone with a CHECK of its bound, filled in batches (each batch
/// deletes from the default and inserts into the child in ONE transaction), then attached.
/// A run that dies midway leaves a marked standalone child that the next run continues.
async fn repair(
    client: &mut Client,
    ctx: &TableCtx,
    slot: &RangeSlot,
    moved_total: &mut i64,
) -> Result<()> {
    let default = ctx
        .default_partition
        .clone()
        .ok_or_else(|| Error::Database("repair planned without a default partition".into()))?;
    let child = ctx.child(&slot.name);
    if let Err(e) = in_transaction(client, ctx, &action::repair_create(ctx, slot)).await {
        // An earlier run may have died after creating the child: continue only with our own.
        let row = client
            .query_one(
                "SELECT obj_description(c.oid, 'pg_class'), c.relispartition FROM pg_class c WHERE c.oid = to_regclass($1)",
                &[&child],
            )
            .await;
        match row {
            Ok(r)
                if r.get::<_, Option<String>>(0).as_deref() == Some(OWNER_MARK)
                    && !r.get::<_, bool>(1) => {}
            _ => return Err(e),
        }
    }
    let columns: Vec<String> = client
        .query(
            "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 \
             AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
            &[&ctx.parent()],
        )
        .await?
        .iter()
        .map(|r| ident(r.get::<_, &str>(0)))
        .collect();
    let cols = columns.join(", ");
    let default_q = ctx.child(&default);
    let pred = ctx.range_predicate(slot.from, slot.to);
    let already: i64 = client
        .query_one(&format!("SELECT count(*) FROM {child}"), &[])
        .await?
        .get(0);
    let move_sql = |limit: Option<i64>| {
        let pick = match limit {
            Some(n) => {
                format!("ctid = ANY(ARRAY(SELECT ctid FROM {default_q} WHERE {pred} LIMIT {n}))")
            }
            None => pred.clone(),
        };
        format!(
            "WITH moved AS (DELETE FROM {default_q} WHERE {pick} RETURNING {cols}) INSERT INTO {child} ({cols}) SELECT {cols} FROM moved"
        )
    };
    // Rows moved by this call: `already` counts what an earlier attempt (a retry after a
    // lock timeout, or a killed run) moved, so `moved_total` must not be compared with it.
    let mut moved_here = 0;
    loop {
        let tx = client.transaction().await?;
        tx.batch_execute(&lock_timeout_sql(ctx)).await?;
        let n = tx.execute(&move_sql(Some(REPAIR_BATCH_ROWS)), &[]).await? as i64;
        tx.commit().await?;
        *moved_total += n;
        moved_here += n;
        if n < REPAIR_BATCH_ROWS {
            break;
        }
    }
    // Last step, one transaction: hold off new rows into the default, move the stragglers,
    // attach (which checks the default holds none of the slot), drop the helper CHECK.
    // The parent is locked first: an insert already routed to the default and waiting on
    // it would otherwise fail its re-check once the default's constraint narrows. Waiting
    // inserts proceed after the commit, routed to the new partition.
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "{}; LOCK TABLE ONLY {} IN SHARE ROW EXCLUSIVE MODE; LOCK TABLE {default_q} IN SHARE ROW EXCLUSIVE MODE",
        lock_timeout_sql(ctx),
        ctx.parent()
    ))
    .await?;
    let n = tx.execute(&move_sql(None), &[]).await? as i64;
    tx.batch_execute(&action::repair_attach(ctx, slot).join("; "))
        .await?;
    let in_child: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {child}"), &[])
        .await?
        .get(0);
    *moved_total += n;
    moved_here += n;
    if in_child != already + moved_here {
        // Roll back rather than attach a partition whose count we can't explain.
        return Err(Error::Database(format!(
            "repair of {}: {} rows in the new partition, expected {}; rolled back",
            slot.name,
            in_child,
            already + moved_here
        )));
    }
    tx.commit().await?;
    Ok(())
}
