//! The planner: (policy, observed table, now) → ordered actions, findings and a summary.
//! Pure: no I/O, the clock is an argument. This module checks the table against the policy,
//! plans what every table needs (a guard or orphan an older pgpart left, a pending detach,
//! the default partition) and hands the partitions to `range` (with `grid`, `repair` and
//! `retention`) or `sets` (list and hash).

use chrono::{DateTime, Utc};

use super::action::{Action, TableCtx};
use super::bounds::display_key_value;
use super::model::{Bound, KeyValue, ObservedPartition, ObservedTable, Strategy};
use super::range::{plan_range, range_key_kind};
use super::sets::{plan_hash, plan_list};
use crate::error::{Error, Result};
use crate::policy::validate::{Kind, ValidPolicy};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Stable machine-readable reason, e.g. `RowsInDefault`.
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary {
    /// Managed partitions attached now (pgpart's own, adopted, or declared list/hash members).
    pub partitions: usize,
    pub oldest: Option<String>,
    pub newest: Option<String>,
    /// End of the contiguous run of partitions from now (or from max(key)).
    pub covered_until: Option<String>,
    /// Seconds from now to `covered_until` (time keys).
    pub covered_seconds_ahead: Option<i64>,
    pub default_rows: i64,
    /// Ranges from now to the end of the premake window that no partition takes now.
    pub holes: Vec<(KeyValue, KeyValue)>,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub ctx: TableCtx,
    pub actions: Vec<Action>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// The fingerprint of the partitions the plan was made from (see `db::observe`).
    pub fingerprint: String,
}

pub(super) fn finding(reason: &'static str, message: String) -> Finding {
    Finding { reason, message }
}

pub fn plan(
    policy: &ValidPolicy,
    table: Option<&ObservedTable>,
    now: DateTime<Utc>,
) -> Result<Plan> {
    let qualified = format!("{}.{}", policy.schema, policy.table);
    let table = table.ok_or_else(|| Error::TableMissing {
        table: qualified.clone(),
    })?;
    let expected = match policy.kind {
        Kind::Range(_) => Strategy::Range,
        Kind::List(_) => Strategy::List,
        Kind::Hash { .. } => Strategy::Hash,
    };
    if table.strategy != expected {
        return Err(Error::mismatch(
            format!("spec.{}", expected.as_str()),
            format!(
                "table {qualified} is PARTITION BY {}: use spec.{} instead",
                table.strategy.as_str().to_uppercase(),
                table.strategy.as_str()
            ),
        ));
    }
    let key_kind = match &policy.kind {
        Kind::Range(r) => Some(range_key_kind(r, table)?),
        _ => None,
    };
    let default = table.default_partition().map(|p| p.name.clone());
    let ctx = TableCtx {
        schema: table.schema.clone(),
        table: table.name.clone(),
        key_column: table.key_columns.first().cloned().flatten(),
        key_kind,
        default_partition: default.clone(),
        lock_timeout: policy.lock_timeout,
        archive: policy.retention.as_ref().and_then(|r| r.archive.clone()),
    };
    let mut actions = Vec::new();
    let mut findings = Vec::new();

    if table.default_guard && default.is_some() {
        actions.push(Action::DropDefaultGuard);
        findings.push(finding(
            "DefaultGuardLeft",
            format!(
                "default partition {} carries a guard CHECK an older pgpart left; it refuses rows, so this pass removes it",
                default.clone().unwrap_or_default()
            ),
        ));
    }
    for orphan in &table.orphans {
        actions.push(Action::RestoreOrphan {
            table: orphan.clone(),
        });
        findings.push(finding(
            "HiddenRows",
            format!(
                "{orphan} is a standalone table an older pgpart's repair left when it was killed; its rows are not visible through {qualified} until this pass puts them back"
            ),
        ));
    }
    for p in table.partitions.iter().filter(|p| p.detach_pending) {
        actions.push(Action::FinishDetach {
            partition: p.name.clone(),
        });
    }
    for p in &table.partitions {
        if let Bound::RangeOther(text) = &p.bound {
            findings.push(finding(
                "UnreadableBound",
                format!(
                    "partition {} has a bound pgpart cannot read: {text}",
                    p.name
                ),
            ));
        }
    }
    let attached: Vec<&ObservedPartition> = table
        .partitions
        .iter()
        .filter(|p| !p.detach_pending)
        .collect();

    let mut summary = Summary {
        default_rows: table.default_rows.rows,
        ..Summary::default()
    };
    match (&policy.kind, key_kind) {
        (Kind::Range(r), Some(kind)) => plan_range(
            policy,
            r,
            kind,
            table,
            &attached,
            now,
            &mut actions,
            &mut findings,
            &mut summary,
        )?,
        (Kind::List(items), _) => {
            summary.partitions = plan_list(items, &attached, &mut actions, &mut findings);
        }
        (Kind::Hash { modulus }, _) => {
            summary.partitions = plan_hash(*modulus, table, &attached, &mut actions)?;
        }
        _ => unreachable!("range policies always have a key kind"),
    }

    if table.default_rows.rows > 0 {
        let span = match (
            key_kind,
            table.default_rows.min_key,
            table.default_rows.max_key,
        ) {
            (Some(k), Some(lo), Some(hi)) => format!(
                " with keys from {} to {}",
                display_key_value(lo, k),
                display_key_value(hi, k)
            ),
            _ => String::new(),
        };
        findings.push(finding(
            "RowsInDefault",
            format!(
                "{}{} rows in default partition {}{span}",
                if table.default_rows.estimated {
                    "about "
                } else {
                    ""
                },
                table.default_rows.rows,
                default.clone().unwrap_or_default()
            ),
        ));
    }
    if policy.create_default && default.is_none() {
        actions.push(Action::CreateDefault {
            partition: format!("{}_default", table.name),
        });
    }
    // FinishDetach first, then creations in key order, repairs, and retirements last, so
    // coverage only ever grows before anything is taken away.
    actions.sort_by_key(Action::order);
    Ok(Plan {
        ctx,
        actions,
        findings,
        summary,
        fingerprint: table.fingerprint.clone(),
    })
}
