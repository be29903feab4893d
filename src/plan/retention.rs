//! Retention of range partitions: the cutoff, the whole expired ranges retired (pgpart's
//! own, or adopted), and retirements an earlier pass left half done.

use chrono::{DateTime, Utc};

use super::action::{Action, parse_retiring_mark};
use super::diff::{Finding, finding};
use super::grid::Grid;
use super::model::{KeyValue, ObservedPartition, ObservedTable};
use crate::policy::units::Interval;
use crate::policy::validate::{Keep, RangePolicy, ValidPolicy};

/// The retention cutoff: partitions whose whole range ends at or before it are retired, and
/// no slot that ends at or before it is created.
pub(super) fn cutoff(
    policy: &ValidPolicy,
    r: &RangePolicy,
    grid: &Grid,
    table: &ObservedTable,
    now: DateTime<Utc>,
) -> Option<KeyValue> {
    match (&policy.retention, r.interval) {
        (Some(ret), Interval::Time(_)) => match ret.keep {
            Keep::Time(step) => Some(grid.time_value(step.shift(r.zone.to_local(now), -1))),
            Keep::Int(_) => None,
        },
        (Some(ret), Interval::Integer(_)) => match (ret.keep, table.max_key) {
            (Keep::Int(k), Some(m)) => Some(KeyValue::Int(m.saturating_sub(k))),
            _ => None,
        },
        _ => None,
    }
}

/// Retirements an earlier pass left between detach and drop/move: finished only as the spec
/// asks now; a mark made under another spec is cleared, never acted on.
pub(super) fn finish_marked(
    policy: &ValidPolicy,
    table: &ObservedTable,
    actions: &mut Vec<Action>,
    findings: &mut Vec<Finding>,
) {
    for (name, comment) in &table.retiring {
        let Some((marked, marked_target)) = parse_retiring_mark(&table.name, comment) else {
            continue;
        };
        let asked = policy
            .retention
            .as_ref()
            .filter(|ret| ret.action == marked && ret.target() == marked_target);
        match asked {
            Some(_) => actions.push(Action::FinishRetire {
                partition: name.clone(),
                action: marked,
                target: marked_target,
            }),
            None => {
                actions.push(Action::AbandonRetire {
                    partition: name.clone(),
                });
                findings.push(finding(
                    "RetirementAbandoned",
                    format!(
                        "{name} was detached to be retired ({}) under an earlier spec that no longer asks for it; pgpart leaves it as a detached table",
                        comment.rsplit(": ").next().unwrap_or_default()
                    ),
                ));
            }
        }
    }
}

/// Only whole ranges older than the cutoff, only pgpart's own (or adopted); at most
/// `maxPerPass`. Older partitions pgpart did not make are counted in a finding and kept.
pub(super) fn retire_expired(
    policy: &ValidPolicy,
    r: &RangePolicy,
    grid: &Grid,
    ranges: &[(&ObservedPartition, KeyValue, KeyValue)],
    cutoff: Option<KeyValue>,
    actions: &mut Vec<Action>,
    findings: &mut Vec<Finding>,
) {
    if let (Some(ret), Some(c)) = (&policy.retention, cutoff) {
        let mut old: Vec<&(&ObservedPartition, KeyValue, KeyValue)> = ranges
            .iter()
            .filter(|(p, f, to)| {
                *to <= c
                    && (p.managed || (policy.adopt_existing && grid.is_slot(r.interval, *f, *to)))
            })
            .collect();
        old.truncate(ret.max_per_pass as usize);
        for (p, _, _) in old {
            actions.push(Action::Retire {
                partition: p.name.clone(),
                action: ret.action,
                target: ret.target(),
            });
        }
        let unmanaged_old = ranges
            .iter()
            .filter(|(p, f, to)| {
                *to <= c
                    && !p.managed
                    && !(policy.adopt_existing && grid.is_slot(r.interval, *f, *to))
            })
            .count();
        if unmanaged_old > 0 {
            findings.push(finding(
                "ForeignPartitions",
                format!("{unmanaged_old} partitions older than the retention cutoff were not made by pgpart and are kept; set spec.adoptExisting to retire them"),
            ));
        }
    }
}
