//! The planner: (policy, observed table, now) → ordered actions, findings and a summary.
//! Pure: no I/O, the clock is an argument.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::action::{Action, RangeSlot, TableCtx};
use super::bounds::display_key_value;
use super::calendar::{Interval, TimeStep};
use super::model::{Bound, KeyKind, KeyValue, ObservedPartition, ObservedTable, Strategy};
use super::naming::SlotStart;
use crate::error::{Error, Result};
use crate::policy::OnRows;
use crate::policy::validate::{Keep, Kind, MAX_IDENT_BYTES, RangePolicy, ValidPolicy};

/// A range policy never plans more slots than this in one pass: a typo like
/// `startFrom: 1900-01-01` with hourly partitions must not create a million tables.
pub const MAX_SLOTS: usize = 5000;
/// Below this many (estimated) rows in the default partition, attaches just scan it.
pub const GUARD_MIN_DEFAULT_ROWS: i64 = 100_000;
/// At most this many slots are repaired out of the default partition per pass.
pub const MAX_REPAIR_SLOTS: usize = 100;

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
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub ctx: TableCtx,
    pub actions: Vec<Action>,
    pub findings: Vec<Finding>,
    pub summary: Summary,
    /// How many partitions the plan was made from: a cheap test of whether it went stale.
    pub observed_partitions: usize,
}

fn finding(reason: &'static str, message: String) -> Finding {
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
    };
    let mut actions = Vec::new();
    let mut findings = Vec::new();

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
            let mut count = 0;
            for item in items {
                let values: Vec<Option<String>> = item.values.iter().cloned().map(Some).collect();
                match attached.iter().find(|p| p.name == item.name) {
                    Some(p) if p.bound == Bound::List(values.clone()) => count += 1,
                    Some(p) => findings.push(finding(
                        "ListMismatch",
                        format!(
                            "partition {} holds {:?}, but the policy lists {:?}",
                            p.name, p.bound, item.values
                        ),
                    )),
                    None => {
                        let clash = attached.iter().find(|p| match &p.bound {
                            Bound::List(vs) => vs.iter().flatten().any(|v| item.values.contains(v)),
                            _ => false,
                        });
                        match clash {
                            Some(p) => findings.push(finding(
                                "Overlap",
                                format!("partition {} already holds some of {:?}; pgpart will not create {}", p.name, item.values, item.name),
                            )),
                            None => actions.push(Action::CreateList { partition: item.name.clone(), values: item.values.clone() }),
                        }
                    }
                }
            }
            summary.partitions = count;
        }
        (Kind::Hash { modulus }, _) => {
            let mut count = 0;
            for p in &attached {
                if let Bound::Hash { modulus: m, .. } = p.bound
                    && m != *modulus
                {
                    return Err(Error::mismatch(
                        "spec.hash.modulus",
                        format!(
                            "partition {} uses modulus {m}, the policy says {modulus}: a hash table's modulus can't change in place",
                            p.name
                        ),
                    ));
                }
            }
            for remainder in 0..*modulus {
                let name = format!("{}_p{remainder}", table.name);
                let exists = attached.iter().any(|p| {
                    p.bound
                        == Bound::Hash {
                            modulus: *modulus,
                            remainder,
                        }
                });
                if exists {
                    count += 1;
                } else if name.len() > MAX_IDENT_BYTES {
                    return Err(Error::mismatch(
                        "spec.table",
                        format!("partition name {name:?} would be over 63 bytes"),
                    ));
                } else {
                    actions.push(Action::CreateHash {
                        partition: name,
                        modulus: *modulus,
                        remainder,
                    });
                }
            }
            summary.partitions = count;
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
                "{} rows in default partition {}{span}",
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
        observed_partitions: table.partitions.len(),
    })
}

fn range_key_kind(r: &RangePolicy, table: &ObservedTable) -> Result<KeyKind> {
    let qualified = table.qualified_name();
    if table.key_columns.len() != 1 || table.key_columns[0].is_none() {
        return Err(Error::mismatch(
            "spec.range",
            format!(
                "table {qualified} has a multi-column or expression key; pgpart manages single-column range keys"
            ),
        ));
    }
    let kind = KeyKind::from_sql_type(&table.key_types[0]).ok_or_else(|| {
        Error::mismatch(
            "spec.range",
            format!(
                "key type {} of {qualified} is not supported: use timestamptz, timestamp, date, smallint, integer or bigint",
                table.key_types[0]
            ),
        )
    })?;
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
                unit: super::calendar::Unit::Hour,
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

/// Grid slots of a range policy, in order: each with its bound and name.
struct Grid<'a> {
    r: &'a RangePolicy,
    kind: KeyKind,
    table: &'a str,
}

impl Grid<'_> {
    fn slot_from_time(&self, step: &TimeStep, local: NaiveDateTime) -> Option<RangeSlot> {
        let from = self.time_value(local);
        let to = self.time_value(step.shift(local, 1));
        (from < to).then(|| RangeSlot {
            name: self.r.template.render(self.table, &SlotStart::Time(local)),
            from,
            to,
        })
    }

    fn time_value(&self, local: NaiveDateTime) -> KeyValue {
        match self.kind {
            KeyKind::Timestamptz => KeyValue::Time(self.r.zone.to_instant(local).naive_utc()),
            _ => KeyValue::Time(local),
        }
    }

    fn slot_from_int(&self, step: i64, start: i64) -> Option<RangeSlot> {
        let KeyKind::Int { min, max } = self.kind else {
            return None;
        };
        let end = start.checked_add(step)?;
        if start < min || end > max.saturating_add(1) {
            return None;
        }
        Some(RangeSlot {
            name: self
                .r
                .template
                .render(self.table, &SlotStart::Integer(start)),
            from: KeyValue::Int(start),
            to: KeyValue::Int(end),
        })
    }

    /// The grid slot a key falls in.
    fn slot_of(&self, interval: Interval, key: KeyValue) -> Option<RangeSlot> {
        match (interval, key) {
            (Interval::Time(step), KeyValue::Time(t)) => {
                self.slot_from_time(&step, step.floor(self.local_of(t)))
            }
            (Interval::Integer(step), KeyValue::Int(v)) => {
                self.slot_from_int(step, floor_div(v, step))
            }
            _ => None,
        }
    }

    /// Local wall time of a key value (for timestamptz, in the policy's zone).
    fn local_of(&self, v: NaiveDateTime) -> NaiveDateTime {
        match self.kind {
            KeyKind::Timestamptz => self.r.zone.to_local(v.and_utc()),
            _ => v,
        }
    }
}

fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) * b
}

#[allow(clippy::too_many_arguments)]
fn plan_range(
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
    let ranges: Vec<(&ObservedPartition, KeyValue, KeyValue)> = attached
        .iter()
        .filter_map(|p| match p.bound {
            Bound::Range { from, to } => Some((*p, from, to)),
            _ => None,
        })
        .collect();
    let repair = policy.on_rows == OnRows::Repair && table.default_rows.rows > 0;
    let (dmin, dmax) = (table.default_rows.min_key, table.default_rows.max_key);

    // The retention cutoff: partitions whose whole range ends at or before it are retired,
    // and no slot that ends at or before it is created.
    let cutoff: Option<KeyValue> = match (&policy.retention, r.interval) {
        (Some(ret), Interval::Time(_)) => match ret.keep {
            Keep::Time(step) => Some(grid.time_value(step.shift(r.zone.to_local(now), -1))),
            Keep::Int(_) => None,
        },
        (Some(ret), Interval::Integer(_)) => match (ret.keep, table.max_key) {
            (Keep::Int(k), Some(m)) => Some(KeyValue::Int(m.saturating_sub(k))),
            _ => None,
        },
        _ => None,
    };

    // "Now" on the key's axis: the slot that must exist and be followed by `premake` more.
    let mut slots: Vec<RangeSlot> = Vec::new();
    let now_key: KeyValue;
    match r.interval {
        Interval::Time(step) => {
            let now_local = r.zone.to_local(now);
            let current = step.floor(now_local);
            now_key = grid.time_value(now_local);
            let mut first = current;
            if let Some(s) = &r.start_from {
                let v = parse_start_time(s)?;
                first = first.min(step.floor(v));
            }
            // Fill gaps back to the oldest partition this table already has on the grid.
            for (_, from, _) in &ranges {
                if let KeyValue::Time(t) = from {
                    let l = grid.local_of(*t);
                    if step.floor(l) == l {
                        first = first.min(l);
                    }
                }
            }
            let last = step.shift(current, r.premake as i64);
            let mut t = first;
            while t <= last {
                if slots.len() >= MAX_SLOTS {
                    return Err(Error::invalid(
                        "spec.range.startFrom",
                        format!(
                            "the policy would need more than {MAX_SLOTS} partitions: move startFrom later or use a longer interval"
                        ),
                    ));
                }
                if let Some(s) = grid.slot_from_time(&step, t) {
                    slots.push(s);
                }
                t = step.shift(t, 1);
            }
        }
        Interval::Integer(step) => {
            let max = table.max_key.unwrap_or(0);
            now_key = KeyValue::Int(max);
            let current = floor_div(max, step);
            let mut first = current;
            if let Some(s) = &r.start_from {
                let v: i64 = s.trim().parse().map_err(|_| {
                    Error::invalid(
                        "spec.range.startFrom",
                        format!("{s:?}: the key is an integer, so startFrom must be an integer"),
                    )
                })?;
                first = first.min(floor_div(v, step));
            }
            for (_, from, _) in &ranges {
                if let KeyValue::Int(v) = from
                    && floor_div(*v, step) == *v
                {
                    first = first.min(*v);
                }
            }
            let last = current.saturating_add(step.saturating_mul(r.premake as i64));
            let mut v = first;
            while v <= last {
                if slots.len() >= MAX_SLOTS {
                    return Err(Error::invalid(
                        "spec.range.startFrom",
                        format!(
                            "the policy would need more than {MAX_SLOTS} partitions: move startFrom later or use a larger step"
                        ),
                    ));
                }
                if let Some(s) = grid.slot_from_int(step, v) {
                    slots.push(s);
                }
                let Some(next) = v.checked_add(step) else {
                    break;
                };
                v = next;
            }
        }
    }
    // Slots holding rows in the default partition. Without a scan of the default, its
    // oldest and newest keys stand for them (never the whole span between).
    let occupied: Vec<RangeSlot> = {
        let keys: Vec<KeyValue> = if table.default_slot_keys.is_empty() {
            [dmin, dmax].into_iter().flatten().collect()
        } else {
            table.default_slot_keys.clone()
        };
        let mut v: Vec<RangeSlot> = keys
            .into_iter()
            .filter_map(|k| grid.slot_of(r.interval, k))
            .collect();
        v.sort_by_key(|s| s.from);
        v.dedup_by_key(|s| s.from);
        v
    };
    if repair {
        // Repair makes a home for every occupied slot, even outside the premake window.
        for o in occupied.iter().take(MAX_REPAIR_SLOTS) {
            if !slots.iter().any(|s| s.from == o.from) {
                slots.push(o.clone());
            }
        }
        slots.sort_by_key(|s| s.from);
    }
    if let Some(c) = cutoff {
        slots.retain(|s| s.to > c);
    }

    // Names: over-long or duplicate names are errors, never truncation collisions.
    let mut names = std::collections::BTreeMap::new();
    for s in &slots {
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

    let mut repairs = 0;
    for s in &slots {
        if let Some((p, _, _)) = ranges.iter().find(|(_, f, t)| *f == s.from && *t == s.to) {
            if !p.managed && policy.adopt_existing {
                actions.push(Action::Adopt {
                    partition: p.name.clone(),
                });
            }
            continue;
        }
        if let Some((p, f, t)) = ranges.iter().find(|(_, f, t)| *f < s.to && s.from < *t) {
            findings.push(finding(
                "Overlap",
                format!(
                    "partition {} [{}, {}) overlaps the grid slot {} [{}, {}) without matching it; pgpart leaves it alone",
                    p.name,
                    display_key_value(*f, kind),
                    display_key_value(*t, kind),
                    s.name,
                    display_key_value(s.from, kind),
                    display_key_value(s.to, kind)
                ),
            ));
            continue;
        }
        let holds_default_rows = occupied.iter().any(|o| o.from == s.from);
        if repair && holds_default_rows {
            if repairs < MAX_REPAIR_SLOTS {
                repairs += 1;
                actions.push(Action::Repair { slot: s.clone() });
            }
        } else if holds_default_rows {
            // Attaching would fail ("would be violated by some row"): report, touch nothing.
            findings.push(finding(
                "BlockedByDefaultRows",
                format!(
                    "{} for [{}, {}) can't be created while the default partition holds rows in that range; set spec.defaultPartition.onRows: Repair to move them",
                    s.name,
                    display_key_value(s.from, kind),
                    display_key_value(s.to, kind)
                ),
            ));
        } else {
            actions.push(Action::CreateRange { slot: s.clone() });
        }
    }

    // With a large DEFAULT partition, guard it against the span from the current slot on,
    // so the attaches need no scan of it. Only from the current slot on: retention never
    // retires there, and older keys keep a home in the default. A small default is simply
    // scanned: the guard refuses rows for the new slots from its creation until their
    // attach, a window worth having only when the scan it saves is long.
    if table
        .default_partition()
        .is_some_and(|d| d.estimated_rows >= GUARD_MIN_DEFAULT_ROWS)
        && let Some(current) = slots.iter().find(|s| s.from <= now_key && now_key < s.to)
    {
        let creates_ahead = actions
            .iter()
            .any(|a| matches!(a, Action::CreateRange { slot } if slot.from >= current.from));
        let retires = policy.retention.is_some();
        if creates_ahead || retires {
            let mut spans: Vec<(KeyValue, KeyValue)> =
                ranges.iter().map(|(_, f, t)| (*f, *t)).collect();
            spans.extend(actions.iter().filter_map(|a| match a {
                Action::CreateRange { slot } => Some((slot.from, slot.to)),
                _ => None,
            }));
            spans.sort();
            let mut end: Option<KeyValue> = None;
            for (f, t) in spans {
                match end {
                    None if f == current.from => end = Some(t),
                    Some(e) if f == e => end = Some(t),
                    _ => {}
                }
            }
            if let Some(to) = end
                && creates_ahead
            {
                actions.push(Action::GuardDefault {
                    from: current.from,
                    to,
                });
            }
        }
    }

    // Gaps between existing partitions, before anything is created.
    let mut sorted = ranges.clone();
    sorted.sort_by_key(|(_, f, _)| *f);
    for w in sorted.windows(2) {
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

    // Finish retirements an earlier pass left between detach and drop/move.
    for (name, comment) in &table.retiring {
        if let Some((action, to_schema)) = super::action::parse_retiring_mark(&table.name, comment)
        {
            actions.push(Action::FinishRetire {
                partition: name.clone(),
                action,
                to_schema,
            });
        }
    }

    // Retention: only whole ranges older than the cutoff, only pgpart's own (or adopted).
    if let (Some(ret), Some(c)) = (&policy.retention, cutoff) {
        let mut old: Vec<&(&ObservedPartition, KeyValue, KeyValue)> = sorted
            .iter()
            .filter(|(p, _, to)| {
                *to <= c
                    && (p.managed || (policy.adopt_existing && on_grid(&grid, *to, r.interval)))
            })
            .collect();
        old.truncate(ret.max_per_pass as usize);
        for (p, _, _) in old {
            actions.push(Action::Retire {
                partition: p.name.clone(),
                action: ret.action,
                to_schema: ret.schema.clone(),
            });
        }
        let unmanaged_old = sorted
            .iter()
            .filter(|(p, _, to)| *to <= c && !p.managed && !policy.adopt_existing)
            .count();
        if unmanaged_old > 0 {
            findings.push(finding(
                "ForeignPartitions",
                format!("{unmanaged_old} partitions older than the retention cutoff were not made by pgpart and are kept; set spec.adoptExisting to retire them"),
            ));
        }
    }

    // Summary of what exists now.
    let managed: Vec<_> = sorted
        .iter()
        .filter(|(p, f, t)| p.managed || slots.iter().any(|s| s.from == *f && s.to == *t))
        .collect();
    summary.partitions = managed.len();
    summary.oldest = managed.first().map(|(p, _, _)| p.name.clone());
    summary.newest = managed.last().map(|(p, _, _)| p.name.clone());
    let mut covered: Option<KeyValue> = None;
    for (_, f, t) in &sorted {
        match covered {
            None if *f <= now_key && now_key < *t => covered = Some(*t),
            Some(end) if *f == end => covered = Some(*t),
            _ => {}
        }
    }
    summary.covered_until = covered.map(|v| display_key_value(v, kind));
    summary.covered_seconds_ahead = match (covered, now_key) {
        (Some(KeyValue::Time(end)), KeyValue::Time(_)) => {
            let end_instant = match kind {
                KeyKind::Timestamptz => end.and_utc(),
                _ => r.zone.to_instant(end),
            };
            Some((end_instant - now).num_seconds())
        }
        (Some(KeyValue::Max), _) => Some(i64::MAX),
        _ => None,
    };
    Ok(())
}

fn on_grid(grid: &Grid, v: KeyValue, interval: Interval) -> bool {
    match (v, interval) {
        (KeyValue::Time(t), Interval::Time(step)) => {
            let l = grid.local_of(t);
            step.floor(l) == l
        }
        (KeyValue::Int(i), Interval::Integer(step)) => i.rem_euclid(step) == 0,
        _ => false,
    }
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

/// The grid slot [from, to) of a range policy that `key` falls in (for scanning the default).
pub fn slot_containing(
    policy: &ValidPolicy,
    kind: KeyKind,
    key: KeyValue,
) -> Option<(KeyValue, KeyValue)> {
    let Kind::Range(r) = &policy.kind else {
        return None;
    };
    let grid = Grid {
        r,
        kind,
        table: &policy.table,
    };
    grid.slot_of(r.interval, key).map(|s| (s.from, s.to))
}
