//! One table's pass, the only orchestration, shared by `pgpart apply` and the controller:
//! take the table's advisory lock, plan again if the table changed since the plan was
//! made, execute, look again, and report. The lock is released on every path (and a
//! pooled session is reset before reuse, see `db::pool`).

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Client;

use crate::db::execute::{self, Outcome};
use crate::db::observe::{observe_and_plan, replan_if_stale};
use crate::error::{Error, Result};
use crate::plan::{Action, Finding, Plan};
use crate::policy::ValidPolicy;

/// How far pgpart's clock may be from the database's before retention holds off: a clock
/// that jumped must not retire months of partitions.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);
/// Longest wait for another pgpart run's lock on the same table.
const MIN_TABLE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Where a pass starts from: the plan made from an observation, and what that observation
/// says about the server.
pub struct Start {
    pub plan: Plan,
    pub server_version_num: i32,
    /// The database's clock at the observation; `None` when pgpart's clock was given
    /// on purpose (`--now`), so no skew check applies.
    pub db_now: Option<DateTime<Utc>>,
}

/// What one pass found and did: CLI output, status, events and metrics are made from it.
pub struct Report {
    /// The table as it is after the pass (planned again when anything was done).
    pub plan: Plan,
    pub outcomes: Vec<Outcome>,
    /// The first action that failed, or else the holes left in the premake window.
    pub error: Option<Error>,
    /// Another run changed the table while this one waited for its lock: what it found
    /// then is what it did.
    pub replanned: bool,
}

impl Report {
    /// Actions still to do, for status and output.
    pub fn pending(&self) -> Vec<String> {
        self.plan
            .actions
            .iter()
            .map(|a| a.describe(&self.plan.ctx))
            .collect()
    }
}

pub async fn pass(
    client: &mut Client,
    policy: &ValidPolicy,
    start: Start,
    now: DateTime<Utc>,
    on_outcome: &mut (dyn FnMut(&Outcome) + Send),
) -> Result<Report> {
    let Start {
        mut plan,
        server_version_num,
        db_now,
    } = start;
    hold_retirements_on_skew(&mut plan, now, db_now);
    if policy.suspend || policy.dry_run || plan.actions.is_empty() {
        // Observe and report only; a suspended or dry-run policy lists what it holds back.
        let error = (!policy.suspend && !policy.dry_run)
            .then(|| hole_error(&plan))
            .flatten();
        return Ok(Report {
            plan,
            outcomes: Vec::new(),
            error,
            replanned: false,
        });
    }

    let wait = policy.lock_timeout.max(MIN_TABLE_LOCK_WAIT);
    execute::lock_table(client, &plan.ctx, wait).await?;
    // Nothing between the lock and the unlock may return early.
    let body = async {
        let replanned = replan_if_stale(client, &mut plan, policy, now).await?;
        if replanned {
            hold_retirements_on_skew(&mut plan, now, db_now);
        }
        let outcomes = execute::execute_plan(client, &plan, server_version_num, on_outcome).await;
        Ok::<_, Error>((replanned, outcomes))
    }
    .await;
    let unlocked = execute::unlock_table(client, &plan.ctx).await;
    let (replanned, outcomes) = body?;
    unlocked?;

    let plan = if outcomes.iter().any(|o| o.result.is_ok()) || replanned {
        observe_and_plan(client, policy, now).await?.0
    } else {
        plan
    };
    let error = outcomes
        .iter()
        .find_map(|o| o.result.as_ref().err())
        .cloned()
        .or_else(|| hole_error(&plan));
    Ok(Report {
        plan,
        outcomes,
        error,
        replanned,
    })
}

/// With pgpart's clock far from the database's, plan no retirement (and say why).
fn hold_retirements_on_skew(plan: &mut Plan, now: DateTime<Utc>, db_now: Option<DateTime<Utc>>) {
    let Some(db_now) = db_now else { return };
    let skew = (now - db_now).abs();
    if skew.to_std().unwrap_or(Duration::MAX) <= MAX_CLOCK_SKEW {
        return;
    }
    let before = plan.actions.len();
    plan.actions.retain(|a| !matches!(a, Action::Retire { .. }));
    if plan.actions.len() < before {
        plan.findings.push(Finding {
            reason: "ClockSkew",
            message: format!(
                "pgpart's clock ({now}) is {}s from the database's ({db_now}): no partition is retired until they agree",
                skew.num_seconds()
            ),
        });
    }
}

/// Keys between now and the end of the premake window with no partition are an error,
/// with the findings that say why pgpart could not make one.
fn hole_error(plan: &Plan) -> Option<Error> {
    if plan.summary.holes.is_empty() {
        return None;
    }
    let ranges: Vec<String> = plan
        .summary
        .holes
        .iter()
        .map(|(f, t)| format!("[{}, {})", plan.ctx.show(*f), plan.ctx.show(*t)))
        .collect();
    let why: Vec<&str> = plan
        .findings
        .iter()
        .filter(|f| matches!(f.reason, "BlockedByDefaultRows" | "Overlap" | "Hole"))
        .map(|f| f.message.as_str())
        .collect();
    let mut msg = format!(
        "{}.{} has no partition for {} inside the premake window",
        plan.ctx.schema,
        plan.ctx.table,
        ranges.join(", ")
    );
    if !why.is_empty() {
        msg.push_str(": ");
        msg.push_str(&why.join("; "));
    }
    Some(Error::Hole(msg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Bound, KeyValue, ObservedPartition, ObservedTable, Strategy};
    use crate::policy::{PartitionPolicySpec, validate};

    /// A plan with one retirement: a monthly policy keeping 1 month, at 2026-11-22, with
    /// pgpart's partition of January.
    fn plan_with_a_retirement(now: DateTime<Utc>) -> Plan {
        let spec: PartitionPolicySpec = serde_yaml_ng::from_str(
            "table: public.events\nrange: {interval: 1 month, premake: 1}\nretention: {keep: 1 month}",
        )
        .unwrap();
        let t = |m| {
            chrono::NaiveDate::from_ymd_opt(2026, m, 1)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
        };
        let table = ObservedTable {
            schema: "public".into(),
            name: "events".into(),
            strategy: Strategy::Range,
            key_columns: vec![Some("at".into())],
            key_types: vec!["timestamp with time zone".into()],
            partitions: vec![ObservedPartition {
                schema: "public".into(),
                name: "events_p20260101".into(),
                bound: Bound::Range {
                    from: KeyValue::Time(t(1)),
                    to: KeyValue::Time(t(2)),
                },
                managed: true,
                detach_pending: false,
                estimated_rows: 0,
                bytes: 0,
            }],
            default_rows: Default::default(),
            max_key: None,
            default_slot_keys: vec![],
            retiring: vec![],
            default_guard: false,
            referenced_by: vec![],
            orphans: vec![],
            fingerprint: String::new(),
            rows_unread: false,
        };
        crate::plan::plan(&validate(&spec).unwrap(), Some(&table), now).unwrap()
    }

    fn retires(p: &Plan) -> bool {
        p.actions.iter().any(|a| matches!(a, Action::Retire { .. }))
    }

    #[test]
    fn a_clock_far_from_the_databases_retires_nothing() {
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .to_utc();
        // In agreement (or the clock given on purpose): the retirement stays.
        for db_now in [Some(now + chrono::Duration::seconds(20)), None] {
            let mut p = plan_with_a_retirement(now);
            hold_retirements_on_skew(&mut p, now, db_now);
            assert!(retires(&p), "{db_now:?}: {:?}", p.actions);
        }
        // An hour apart, either way: held, and said why.
        for skew in [3600, -3600] {
            let mut p = plan_with_a_retirement(now);
            hold_retirements_on_skew(&mut p, now, Some(now + chrono::Duration::seconds(skew)));
            assert!(!retires(&p), "{skew}: {:?}", p.actions);
            assert!(p.findings.iter().any(|f| f.reason == "ClockSkew"));
            assert!(
                p.actions
                    .iter()
                    .any(|a| matches!(a, Action::CreateRange { .. })),
                "partitions are still made"
            );
        }
    }
}
