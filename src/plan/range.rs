//! Range policies: the window premake asks for, walked over what is missing only; bridges,
//! adoption, repairs, gaps and holes, retention, and the summary of what exists.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::action::{Action, RangeSlot};
use super::bounds::display_key_value;
use super::diff::{Finding, Summary, finding};
use super::grid::{Grid, SlotAt, floor_div, uncovered};
use super::model::{Bound, KeyKind, KeyValue, ObservedPartition, ObservedTable};
use super::repair::repair_ranges;
use super::retention;
use crate::error::{Error, Result};
use crate::policy::OnRows;
use crate::policy::units::{Interval, TimeStep};
use crate::policy::validate::{MAX_IDENT_BYTES, RangePolicy, ValidPolicy};

/// A range policy never plans more slots than this in one pass: a typo like
/// `startFrom: 1900-01-01` with hourly partitions must not create a million tables.
pub const MAX_SLOTS: usize = 5000;
pub(super) fn range_key_kind(r: &RangePolicy, table: &ObservedTable) -> Result<KeyKind> {
    let qualified = table.qualified_name();
    if table.key_columns.len() != 1 || table.key_columns[0].is_none() {
        return Err(Error::mismatch(
            "spec.range",
            format!(
                "table {qualified} has a multi-column or expression key; pgpart manages single-column range keys"
            ),
        ));
    }
    let key_type = &table.key_types[0];
    let column = KeyKind::from_sql_type(key_type).ok_or_else(|| {
        Error::mismatch(
            "spec.range",
            format!(
                "key type {key_type} of {qualified} is not supported: use timestamptz, timestamp, date, smallint, integer or bigint, or a uuid or integer holding time with spec.range.keyEncoding"
            ),
        )
    })?;
    let kind = match r.key_encoding {
        None if column == KeyKind::Uuid => {
            return Err(Error::mismatch(
                "spec.range.keyEncoding",
                format!(
                    "{qualified} has a uuid key: set spec.range.keyEncoding: uuidv7 to partition by the time a UUIDv7 holds"
                ),
            ));
        }
        None => column,
        Some(e) => column
            .encoded(e)
            .filter(|k| match k {
                // Seconds since 1970 outgrow a smallint within hours, milli- and microseconds
                // an integer within days.
                KeyKind::Epoch { per_second, max, .. } => {
                    (*per_second == 1 && *max >= i64::from(i32::MAX)) || *max == i64::MAX
                }
                _ => true,
            })
            .ok_or_else(|| {
                Error::mismatch(
                    "spec.range.keyEncoding",
                    format!(
                        "the key of {qualified} is {key_type}, which can't hold {}: uuidv7 needs a uuid key, epochSeconds an integer or bigint key, epochMillis and epochMicros a bigint key",
                        e.as_str()
                    ),
                )
            })?,
    };
    match (r.interval, kind) {
        (Interval::Time(_), KeyKind::Int { .. }) => Err(Error::mismatch(
            "spec.range.interval",
            format!(
                "{qualified} has an integer key: give a positive integer step such as \"100000\", not {:?}",
                r.interval.to_string()
            ),
        )),
        (Interval::Integer(_), k) if k.is_time() => Err(Error::mismatch(
            "spec.range.interval",
            format!(
                "{qualified} has a {} key: give \"N unit\" such as \"1 month\"",
                table.key_types[0]
            ),
        )),
        (
            Interval::Time(TimeStep {
                unit: crate::policy::units::Unit::Hour,
                ..
            }),
            KeyKind::Date,
        ) => Err(Error::mismatch(
            "spec.range.interval",
            format!(
                "{qualified} has a date key: intervals shorter than a day can't be expressed; use days or longer"
            ),
        )),
        _ => Ok(kind),
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn plan_range(
    policy: &ValidPolicy,
    r: &RangePolicy,
    kind: KeyKind,
    table: &ObservedTable,
    attached: &[&ObservedPartition],
    now: DateTime<Utc>,
    actions: &mut Vec<Action>,
    findings: &mut Vec<Finding>,
    summary: &mut Summary,
) -> Result<()> {
    let grid = Grid {
        r,
        kind,
        table: &table.name,
    };
    // Attached range partitions, oldest first.
    let mut ranges: Vec<(&ObservedPartition, KeyValue, KeyValue)> = attached
        .iter()
        .filter_map(|p| match p.bound {
            Bound::Range { from, to } => Some((*p, from, to)),
            _ => None,
        })
        .collect();
    ranges.sort_by_key(|(_, f, _)| *f);
    let spans: Vec<(KeyValue, KeyValue)> = ranges.iter().map(|(_, f, t)| (*f, *t)).collect();
    let mut repair = policy.on_rows == OnRows::Repair && table.default_rows.rows > 0;
    if repair && !table.referenced_by.is_empty() {
        // DETACH of the default checks every referencing row against it, and fails on any.
        repair = false;
        findings.push(finding(
            "RepairRefused",
            format!(
                "the default partition's rows are not repaired: {} has foreign keys referencing it (from {}), and re-attaching the default as a partition would have to re-check every one; its rows stay in the default, reported",
                table.qualified_name(),
                table.referenced_by.join(", ")
            ),
        ));
    }

    // "Now" on the key's axis, the slot holding it, and the last slot premake asks for.
    let (now_key, current, horizon) = match r.interval {
        Interval::Time(step) => {
            let now_local = r.zone.to_local(now);
            let current = step.floor(now_local);
            (
                grid.time_value(now_local),
                SlotAt::Time(current),
                SlotAt::Time(step.shift(current, r.premake as i64)),
            )
        }
        Interval::Integer(step) => {
            let max = table.max_key.unwrap_or(0);
            let current = floor_div(max, step);
            (
                KeyValue::Int(max),
                SlotAt::Int(current),
                SlotAt::Int(current.saturating_add(step.saturating_mul(r.premake as i64))),
            )
        }
    };
    let first = match (&r.start_from, current) {
        (None, c) => c,
        (Some(s), SlotAt::Time(c)) => match r.interval {
            Interval::Time(step) => SlotAt::Time(c.min(step.floor(parse_start_time(s)?))),
            Interval::Integer(_) => unreachable!("time slots come from a time interval"),
        },
        (Some(s), SlotAt::Int(c)) => {
            let v: i64 = s.trim().parse().map_err(|_| {
                Error::invalid(
                    "spec.range.startFrom",
                    format!("{s:?}: the key is an integer, so startFrom must be an integer"),
                )
            })?;
            match r.interval {
                Interval::Integer(step) => SlotAt::Int(c.min(floor_div(v, step))),
                Interval::Time(_) => unreachable!("integer slots come from an integer step"),
            }
        }
    };

    let cutoff = retention::cutoff(policy, r, &grid, table, now);

    // Keys of the default partition's rows, one per occupied slot. Without a scan of the
    // default, its oldest and newest keys stand for them (never the whole span between).
    let mut default_keys: Vec<KeyValue> = if table.default_slot_keys.is_empty() {
        [table.default_rows.min_key, table.default_rows.max_key]
            .into_iter()
            .flatten()
            .collect()
    } else {
        table.default_slot_keys.clone()
    };
    default_keys.sort();
    let occupied: Vec<RangeSlot> = {
        let mut v: Vec<RangeSlot> = default_keys
            .iter()
            .filter_map(|k| grid.slot_of(r.interval, *k))
            .collect();
        v.dedup_by_key(|s| s.from);
        v
    };
    let repairs = if repair {
        repair_ranges(&grid, r.interval, &default_keys, &spans, cutoff)?
    } else {
        Vec::new()
    };

    // The slots this pass must see to: the window from `first` to `horizon`, walked over
    // what is missing only (a long run of existing partitions is stepped over whole, so the
    // walk costs what is missing, not the table's history), and the occupied slots a
    // repair makes a home for.
    let mut slots: Vec<RangeSlot> = Vec::new();
    let mut at = first;
    while at <= horizon {
        let Some(slot) = grid.slot_at(r.interval, at) else {
            match grid.next(r.interval, at) {
                Some(n) => {
                    at = n;
                    continue;
                }
                None => break,
            }
        };
        // Step over existing partitions that start at this slot and end on the grid.
        if let Some((_, _, to)) = ranges.iter().find(|(_, f, _)| *f == slot.from)
            && let Some(end) = grid.slot_start_at(r.interval, *to)
            && end > at
        {
            at = end;
            continue;
        }
        if cutoff.is_none_or(|c| slot.to > c) {
            slots.push(slot);
        }
        if slots.len() > MAX_SLOTS {
            return Err(Error::invalid(
                "spec.range.startFrom",
                format!(
                    "the policy would create more than {MAX_SLOTS} partitions in one pass: move startFrom later or use a longer interval"
                ),
            ));
        }
        match grid.next(r.interval, at) {
            Some(n) => at = n,
            None => break,
        }
    }

    // Names: over-long or duplicate names are errors, never truncation collisions.
    let mut names = std::collections::BTreeMap::new();
    for s in &slots {
        check_name_length(s)?;
        if let Some(prev) = names.insert(s.name.clone(), s.from) {
            return Err(Error::invalid(
                "spec.naming.template",
                format!(
                    "two partitions would both be named {:?} (starting {} and {}): add tokens that tell them apart, e.g. {{DD}} for days",
                    s.name,
                    display_key_value(prev, kind),
                    display_key_value(s.from, kind)
                ),
            ));
        }
    }

    // Adopt: unmanaged partitions that are exactly one grid slot, wherever they are.
    if policy.adopt_existing {
        for (p, f, t) in &ranges {
            if !p.managed && grid.is_slot(r.interval, *f, *t) {
                actions.push(Action::Adopt {
                    partition: p.name.clone(),
                });
            }
        }
    }

    for r in &repairs {
        actions.push(Action::Repair { slot: r.clone() });
    }
    let mut covered_now = spans.clone();
    covered_now.extend(repairs.iter().map(|s| (s.from, s.to)));
    covered_now.sort();
    for s in &slots {
        if covered_now.iter().any(|(f, t)| *f == s.from && *t == s.to) {
            continue;
        }
        let holds_default_rows = occupied.iter().any(|o| o.from == s.from);
        // A slot partly covered by partitions that are not on the grid (made by hand, or
        // under another interval): bridge partitions of exactly the missing ranges.
        let missing = uncovered(s.from, s.to, &covered_now);
        if missing.is_empty() {
            continue;
        }
        if missing != [(s.from, s.to)] {
            for (from, to) in missing {
                let bridge = RangeSlot {
                    name: grid.bridge_name(from),
                    from,
                    to,
                };
                check_name_length(&bridge)?;
                if holds_default_rows {
                    findings.push(blocked(&bridge, kind));
                } else {
                    actions.push(Action::CreateRange { slot: bridge });
                }
            }
            continue;
        }
        if holds_default_rows {
            // Attaching would fail ("would be violated by some row"): report, touch nothing.
            findings.push(blocked(s, kind));
        } else {
            actions.push(Action::CreateRange { slot: s.clone() });
        }
    }
    let creates: Vec<(KeyValue, KeyValue)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::CreateRange { slot } | Action::Repair { slot } => Some((slot.from, slot.to)),
            _ => None,
        })
        .collect();
    // Gaps between existing partitions, before anything is created.
    for w in ranges.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if a.2 < b.1 {
            findings.push(finding(
                "Gap",
                format!(
                    "no partition for [{}, {}) between {} and {}",
                    display_key_value(a.2, kind),
                    display_key_value(b.1, kind),
                    a.0.name,
                    b.0.name
                ),
            ));
        }
    }

    // Holes: keys from now to the end of the premake window that no partition takes now,
    // and those this plan would leave without one. An encoded key whose type ends before
    // now (seconds in an integer after 2038) has no key for now at all.
    if kind.is_encoded() && now_key == KeyValue::Max {
        // A hole, so the pass fails as for any key without a partition (not Ready).
        summary.holes.push((kind.last_value(), KeyValue::Max));
        findings.push(finding(
            "Hole",
            format!(
                "now ({}) is past the last time a {} key can hold, so no partition can be made for it: use a bigint key",
                now.format("%Y-%m-%dT%H:%M:%SZ"),
                table.key_types[0]
            ),
        ));
    }
    let horizon_end = grid
        .slot_at(r.interval, horizon)
        .map(|s| s.to)
        .unwrap_or(KeyValue::Max);
    summary
        .holes
        .extend(uncovered(now_key, horizon_end, &spans));
    let mut after = spans.clone();
    after.extend(creates.iter().copied());
    after.sort();
    for (from, to) in uncovered(now_key, horizon_end, &after) {
        findings.push(finding(
            "Hole",
            format!(
                "no partition for [{}, {}), which is inside the premake window, and this pass can't make one",
                display_key_value(from, kind),
                display_key_value(to, kind)
            ),
        ));
    }

    retention::finish_marked(policy, table, actions, findings);
    retention::retire_expired(policy, r, &grid, &ranges, cutoff, actions, findings);

    // Summary of what exists now.
    let managed: Vec<_> = ranges
        .iter()
        .filter(|(p, f, t)| p.managed || grid.is_slot(r.interval, *f, *t))
        .collect();
    summary.partitions = managed.len();
    summary.oldest = managed.first().map(|(p, _, _)| p.name.clone());
    summary.newest = managed.last().map(|(p, _, _)| p.name.clone());
    let mut covered: Option<KeyValue> = None;
    for (f, t) in &spans {
        match covered {
            None if *f <= now_key && now_key < *t => covered = Some(*t),
            Some(end) if *f == end => covered = Some(*t),
            _ => {}
        }
    }
    summary.covered_until = covered.map(|v| display_key_value(v, kind));
    summary.covered_seconds_ahead = match covered {
        Some(KeyValue::Max) => Some(i64::MAX),
        Some(end) if kind.is_time() => grid.instant_of(end).map(|e| (e - now).num_seconds()),
        _ => None,
    };
    Ok(())
}

pub(super) fn check_name_length(s: &RangeSlot) -> Result<()> {
    if s.name.len() > MAX_IDENT_BYTES {
        return Err(Error::invalid(
            "spec.naming.template",
            format!(
                "partition name {:?} is {} bytes, over PostgreSQL's 63: shorten the template or the table name",
                s.name,
                s.name.len()
            ),
        ));
    }
    Ok(())
}

fn blocked(s: &RangeSlot, kind: KeyKind) -> Finding {
    finding(
        "BlockedByDefaultRows",
        format!(
            "{} for [{}, {}) can't be created while the default partition holds rows in that range; set spec.defaultPartition.onRows: Repair to move them",
            s.name,
            display_key_value(s.from, kind),
            display_key_value(s.to, kind)
        ),
    )
}

/// `startFrom` for a time key: a date (`2025-01-01`) or a local date-time (`2025-01-01T06:00:00`).
fn parse_start_time(s: &str) -> Result<NaiveDateTime> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S"))
        .map_err(|_| {
            Error::invalid(
                "spec.range.startFrom",
                format!(
                    "{s:?}: give a date like 2025-01-01 or a local time like 2025-01-01T06:00:00"
                ),
            )
        })
}
