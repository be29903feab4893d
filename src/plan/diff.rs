//! The planner: (policy, observed table, now) → ordered actions, findings and a summary.
//! Pure: no I/O, the clock is an argument.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::action::{Action, RangeSlot, TableCtx};
use super::bounds::display_key_value;
use super::model::{Bound, KeyKind, KeyValue, ObservedPartition, ObservedTable, Strategy};
use super::naming::SlotStart;
use crate::error::{Error, Result};
use crate::policy::OnRows;
use crate::policy::units::{Interval, TimeStep};
use crate::policy::validate::{Keep, Kind, MAX_IDENT_BYTES, RangePolicy, ValidPolicy};

/// A range policy never plans more slots than this in one pass: a typo like
/// `startFrom: 1900-01-01` with hourly partitions must not create a million tables.
pub const MAX_SLOTS: usize = 5000;
/// At most this many of the default partition's occupied slots are found per pass (one
/// indexed `min()` each) and repaired.
pub const MAX_REPAIR_SLOTS: usize = 100;
/// Occupied slots with at most this many empty slots between them are repaired into one
/// partition; farther apart (say, a stray row a year ahead), each gets its own.
pub const REPAIR_MAX_EMPTY_SLOTS: usize = 2;

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

/// Where a grid slot starts: local wall time for time keys, the first key for integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SlotAt {
    Time(NaiveDateTime),
    Int(i64),
}

impl Grid<'_> {
    /// The slot starting at `at`; `None` where it has no length (a local time a DST change
    /// skips) or falls outside the key type.
    fn slot_at(&self, interval: Interval, at: SlotAt) -> Option<RangeSlot> {
        match (interval, at) {
            (Interval::Time(step), SlotAt::Time(t)) => self.slot_from_time(&step, t),
            (Interval::Integer(step), SlotAt::Int(v)) => self.slot_from_int(step, v),
            _ => None,
        }
    }

    /// The start of the slot after the one at `at`.
    fn next(&self, interval: Interval, at: SlotAt) -> Option<SlotAt> {
        match (interval, at) {
            (Interval::Time(step), SlotAt::Time(t)) => Some(SlotAt::Time(step.shift(t, 1))),
            (Interval::Integer(step), SlotAt::Int(v)) => v.checked_add(step).map(SlotAt::Int),
            _ => None,
        }
    }

    /// The slot start that `v` is, if it is one.
    fn slot_start_at(&self, interval: Interval, v: KeyValue) -> Option<SlotAt> {
        match (interval, v) {
            (Interval::Time(step), KeyValue::Time(t)) => {
                let l = self.local_of(t);
                (step.floor(l) == l && self.time_value(l) == v).then_some(SlotAt::Time(l))
            }
            (Interval::Integer(step), KeyValue::Int(i)) => {
                (i.rem_euclid(step) == 0).then_some(SlotAt::Int(i))
            }
            _ => None,
        }
    }

    /// Whether [from, to) is exactly one grid slot.
    fn is_slot(&self, interval: Interval, from: KeyValue, to: KeyValue) -> bool {
        self.slot_start_at(interval, from)
            .and_then(|at| self.slot_at(interval, at))
            .is_some_and(|s| s.to == to)
    }

    /// The name of a partition that fills part of a slot: `<table>_bridge_<start>`, so a
    /// person sees it is not on the grid, and where it begins.
    fn bridge_name(&self, from: KeyValue) -> String {
        format!("{}_bridge_{}", self.table, self.start_label(from))
    }

    /// The name of a partition a repair made of more than one slot:
    /// `<table>_repaired_<start>`.
    fn repaired_name(&self, from: KeyValue) -> String {
        format!("{}_repaired_{}", self.table, self.start_label(from))
    }

    fn start_label(&self, from: KeyValue) -> String {
        match from {
            KeyValue::Time(t) => self.local_of(t).format("%Y%m%d%H%M").to_string(),
            KeyValue::Int(i) => i.to_string(),
            KeyValue::Min => "min".into(),
            KeyValue::Max => "max".into(),
        }
    }

    /// The start of the slot `n` slots after the one holding `key` (`n` ≥ 1).
    fn start_after(&self, interval: Interval, key: KeyValue, n: usize) -> Option<KeyValue> {
        let mut at = self.slot_start_at(interval, self.slot_of(interval, key)?.to)?;
        for _ in 1..n {
            at = self.next(interval, at)?;
        }
        Some(self.slot_at(interval, at)?.from)
    }
}

/// Where a repair gives the default partition's rows a home (see [`Action::Repair`]): for
/// each run of occupied slots inside one gap between partitions (at most
/// [`REPAIR_MAX_EMPTY_SLOTS`] empty slots inside a run, none that retention has passed),
/// the range from its first slot to the end of its last, clipped to the gap. The run with
/// the most occupied slots first: the first conversion moves the rows of all the others
/// into the new default, so it should be the one that leaves the fewest behind.
fn repair_ranges(
    grid: &Grid,
    interval: Interval,
    keys: &[KeyValue],
    spans: &[(KeyValue, KeyValue)],
    cutoff: Option<KeyValue>,
) -> Result<Vec<RangeSlot>> {
    // (range, occupied slots in it)
    let mut runs: Vec<(KeyValue, KeyValue, usize)> = Vec::new();
    for &k in keys {
        let Some(slot) = grid.slot_of(interval, k) else {
            continue;
        };
        if cutoff.is_some_and(|c| slot.to <= c) {
            continue;
        }
        // The part of the slot no partition takes, around the key.
        let Some((from, to)) = uncovered(slot.from, slot.to, spans)
            .into_iter()
            .find(|(f, t)| *f <= k && k < *t)
        else {
            continue;
        };
        if runs.last().is_some_and(|(_, end, _)| from < *end) {
            continue; // another key of a slot the run already holds
        }
        // Joined to the run before when adjacent, or close with no partition between.
        let joins = runs.last().is_some_and(|(_, end, _)| {
            *end == from
                || (uncovered(*end, from, spans) == [(*end, from)]
                    && grid
                        .start_after(interval, *end, REPAIR_MAX_EMPTY_SLOTS)
                        .is_some_and(|limit| from <= limit))
        });
        match runs.last_mut() {
            Some((_, end, n)) if joins => {
                *end = to;
                *n += 1;
            }
            _ => runs.push((from, to, 1)),
        }
    }
    runs.sort_by(|a, b| b.2.cmp(&a.2).then(b.0.cmp(&a.0)));
    runs.into_iter()
        .map(|(from, to, _)| {
            let name = match grid.slot_of(interval, from) {
                Some(s) if s.from == from && s.to == to => s.name,
                _ => grid.repaired_name(from),
            };
            let slot = RangeSlot { name, from, to };
            check_name_length(&slot)?;
            Ok(slot)
        })
        .collect()
}

fn floor_div(a: i64, b: i64) -> i64 {
    a.div_euclid(b) * b
}

/// The parts of [from, to) that none of `covered` (sorted by start) covers.
pub fn uncovered(
    from: KeyValue,
    to: KeyValue,
    covered: &[(KeyValue, KeyValue)],
) -> Vec<(KeyValue, KeyValue)> {
    let mut out = Vec::new();
    let mut at = from;
    for &(f, t) in covered {
        if t <= at || f >= to {
            continue;
        }
        if f > at {
            out.push((at, f));
        }
        at = at.max(t);
        if at >= to {
            break;
        }
    }
    if at < to {
        out.push((at, to));
    }
    out
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
    // and those this plan would leave without one.
    let horizon_end = grid
        .slot_at(r.interval, horizon)
        .map(|s| s.to)
        .unwrap_or(KeyValue::Max);
    summary.holes = uncovered(now_key, horizon_end, &spans);
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

    // Retirements an earlier pass left between detach and drop/move: finished only as the
    // spec asks now; a mark made under another spec is cleared, never acted on.
    for (name, comment) in &table.retiring {
        let Some((marked, marked_schema)) =
            super::action::parse_retiring_mark(&table.name, comment)
        else {
            continue;
        };
        let asked = policy
            .retention
            .as_ref()
            .filter(|ret| ret.action == marked && ret.schema == marked_schema);
        match asked {
            Some(_) => actions.push(Action::FinishRetire {
                partition: name.clone(),
                action: marked,
                to_schema: marked_schema,
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

    // Retention: only whole ranges older than the cutoff, only pgpart's own (or adopted).
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
                to_schema: ret.schema.clone(),
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

fn check_name_length(s: &RangeSlot) -> Result<()> {
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

#[cfg(test)]
mod tests {
    //! The planner's rules, on a simulated clock: the window is covered or a hole is
    //! reported, nothing planned overlaps, the plan grows with the window (never with the
    //! table's history), and retention takes only whole expired ranges pgpart made.

    use super::super::action;
    use super::super::model::Strategy as PartStrategy;
    use super::{Action, Bound, KeyValue, ObservedPartition, ObservedTable, Plan, uncovered};
    use crate::policy::{PartitionPolicySpec, ValidPolicy, validate};
    use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Timelike, Utc};
    use proptest::prelude::*;

    fn policy(spec: &str) -> ValidPolicy {
        let spec: PartitionPolicySpec =
            serde_yaml_ng::from_str(&format!("table: public.events\n{spec}")).expect("spec parses");
        validate(&spec).expect("spec is valid")
    }

    fn t(y: i32, m: u32, d: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
    }

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        (t(y, m, d) + Duration::hours(h as i64)).and_utc()
    }

    fn part(
        name: &str,
        from: NaiveDateTime,
        to: NaiveDateTime,
        managed: bool,
    ) -> ObservedPartition {
        ObservedPartition {
            schema: "public".into(),
            name: name.into(),
            bound: Bound::Range {
                from: KeyValue::Time(from),
                to: KeyValue::Time(to),
            },
            managed,
            detach_pending: false,
            estimated_rows: 0,
            bytes: 0,
        }
    }

    /// `public.events`, timestamptz key `at`, with these partitions.
    fn table(partitions: Vec<ObservedPartition>) -> ObservedTable {
        ObservedTable {
            schema: "public".into(),
            name: "events".into(),
            strategy: PartStrategy::Range,
            key_columns: vec![Some("at".into())],
            key_types: vec!["timestamp with time zone".into()],
            partitions,
            default_rows: Default::default(),
            max_key: None,
            default_slot_keys: vec![],
            retiring: vec![],
            default_guard: false,
            referenced_by: vec![],
            orphans: vec![],
            fingerprint: String::new(),
            rows_unread: false,
        }
    }

    fn creates(p: &Plan) -> Vec<(String, KeyValue, KeyValue)> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::CreateRange { slot } | Action::Repair { slot } => {
                    Some((slot.name.clone(), slot.from, slot.to))
                }
                _ => None,
            })
            .collect()
    }

    fn reasons(p: &Plan) -> Vec<&'static str> {
        p.findings.iter().map(|f| f.reason).collect()
    }

    fn kv(t: NaiveDateTime) -> KeyValue {
        KeyValue::Time(t)
    }

    /// Monthly partitions made by pgpart, from `from` for `n` months.
    fn monthly_parts(from: NaiveDateTime, n: u32) -> Vec<ObservedPartition> {
        (0..n)
            .map(|k| {
                let s = from + chrono::Months::new(k);
                part(
                    &format!("events_p{}", s.format("%Y%m%d")),
                    s,
                    s + chrono::Months::new(1),
                    true,
                )
            })
            .collect()
    }

    #[test]
    fn long_history_costs_nothing_and_never_stalls() {
        // 210 days of hourly partitions (5040): the day-210 stall of the first version.
        let p = policy("range: {interval: 1 hour, premake: 24}");
        let start = t(2026, 1, 1);
        let parts: Vec<_> = (0..210 * 24)
            .map(|h| {
                let s = start + Duration::hours(h);
                part(
                    &format!("events_p{}", s.format("%Y%m%d%H")),
                    s,
                    s + Duration::hours(1),
                    true,
                )
            })
            .collect();
        let now = (start + Duration::hours(210 * 24) - Duration::minutes(30)).and_utc();
        let plan =
            super::plan(&p, Some(&table(parts)), now).expect("no partition limit from history");
        // The current hour exists; the 24 ahead of it do not (bar the first, which does not).
        assert_eq!(creates(&plan).len(), 24, "{:?}", plan.actions);
        assert!(
            plan.summary
                .holes
                .iter()
                .all(|(f, _)| *f >= kv(start + Duration::hours(210 * 24)))
        );
    }

    #[test]
    fn a_stray_old_partition_does_not_widen_the_window() {
        let p = policy("range: {interval: 1 day, premake: 3}");
        let stray = part("events_p19700101", t(1970, 1, 1), t(1970, 1, 2), true);
        let plan = super::plan(&p, Some(&table(vec![stray])), at(2026, 11, 22, 10)).unwrap();
        let c = creates(&plan);
        assert_eq!(c.len(), 4, "today and 3 ahead only: {c:?}");
        assert_eq!(c[0].1, kv(t(2026, 11, 22)));
    }

    #[test]
    fn start_from_walks_only_what_is_missing() {
        // Ten years of daily partitions from startFrom exist: nothing to do, no limit hit.
        let p = policy("range: {interval: 1 day, premake: 2, startFrom: \"2017-01-01\"}");
        let start = t(2017, 1, 1);
        let days = (t(2027, 1, 4) - start).num_days();
        let parts: Vec<_> = (0..days)
            .map(|d| {
                let s = start + Duration::days(d);
                part(
                    &format!("events_p{}", s.format("%Y%m%d")),
                    s,
                    s + Duration::days(1),
                    true,
                )
            })
            .collect();
        let plan = super::plan(&p, Some(&table(parts)), at(2027, 1, 1, 10)).unwrap();
        assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        // Far too far back is refused, naming startFrom.
        let p = policy("range: {interval: 1 hour, premake: 2, startFrom: \"1900-01-01\"}");
        let e = super::plan(&p, Some(&table(vec![])), at(2027, 1, 1, 10)).unwrap_err();
        assert!(e.to_string().contains("spec.range.startFrom"), "{e}");
    }

    #[test]
    fn a_hand_made_partition_off_the_grid_is_bridged() {
        // [2026-11-10, 2026-12-10) on a monthly policy: December's rest gets a bridge.
        let p = policy("range: {interval: 1 month, premake: 2}");
        let hand = part("events_hand", t(2026, 11, 10), t(2026, 12, 10), false);
        let plan = super::plan(&p, Some(&table(vec![hand])), at(2026, 11, 22, 10)).unwrap();
        let c = creates(&plan);
        let bridges: Vec<_> = c.iter().filter(|(n, ..)| n.contains("_bridge_")).collect();
        assert_eq!(
            bridges,
            [
                &(
                    "events_bridge_202611010000".to_string(),
                    kv(t(2026, 11, 1)),
                    kv(t(2026, 11, 10))
                ),
                &(
                    "events_bridge_202612100000".to_string(),
                    kv(t(2026, 12, 10)),
                    kv(t(2027, 1, 1))
                ),
            ]
        );
        assert!(c.iter().any(|(n, ..)| n == "events_p20270101"), "{c:?}");
        assert!(!reasons(&plan).contains(&"Hole"), "{:?}", plan.findings);
    }

    #[test]
    fn interval_edits_leave_no_hole() {
        // Monthly up to 2027-04-01, then the policy becomes weekly: [04-01, 04-05) bridged.
        let p = policy("range: {interval: 1 week, premake: 6}");
        let plan = super::plan(
            &p,
            Some(&table(monthly_parts(t(2027, 1, 1), 3))),
            at(2027, 3, 10, 0),
        )
        .unwrap();
        let c = creates(&plan);
        assert!(
            c.iter()
                .any(|(_, f, to)| *f == kv(t(2027, 4, 1)) && *to == kv(t(2027, 4, 5))),
            "{c:?}"
        );
        // Weekly up to 2027-05-31, back to monthly: [05-31, 06-01) bridged.
        let p = policy("range: {interval: 1 month, premake: 2}");
        let weeks: Vec<_> = (0..8)
            .map(|k| {
                let s = t(2027, 4, 5) + Duration::weeks(k);
                part(&format!("events_w{k}"), s, s + Duration::weeks(1), true)
            })
            .collect();
        let plan = super::plan(&p, Some(&table(weeks)), at(2027, 5, 20, 0)).unwrap();
        let c = creates(&plan);
        assert!(
            c.iter()
                .any(|(_, f, to)| *f == kv(t(2027, 5, 31)) && *to == kv(t(2027, 6, 1))),
            "{c:?}"
        );
        assert!(c.iter().any(|(n, ..)| n == "events_p20270601"), "{c:?}");
    }

    #[test]
    fn holes_are_counted_and_unfillable_ones_reported() {
        let p = policy("range: {interval: 1 month, premake: 2}");
        // This month exists, the next two do not: holes now, none left by the plan.
        let plan_ = super::plan(
            &p,
            Some(&table(monthly_parts(t(2026, 11, 1), 1))),
            at(2026, 11, 22, 0),
        )
        .unwrap();
        assert_eq!(
            plan_.summary.holes,
            [(kv(t(2026, 12, 1)), kv(t(2027, 2, 1)))]
        );
        assert!(!reasons(&plan_).contains(&"Hole"));
        // Rows in the default in December block its partition (Report): a Hole finding.
        let mut tb = table(monthly_parts(t(2026, 11, 1), 1));
        tb.partitions.push(ObservedPartition {
            bound: Bound::Default,
            ..part("events_default", t(2000, 1, 1), t(2000, 1, 2), true)
        });
        tb.default_rows.rows = 3;
        tb.default_slot_keys = vec![kv(t(2026, 12, 5))];
        let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
        assert!(reasons(&plan_).contains(&"BlockedByDefaultRows"));
        assert!(reasons(&plan_).contains(&"Hole"), "{:?}", plan_.findings);
    }

    /// Daily partitions from 11-16 to 11-19 and a default holding rows on these days.
    fn daily_with_default_rows(days: &[NaiveDateTime]) -> ObservedTable {
        let mut tb = table(
            (16..20)
                .map(|d| {
                    part(
                        &format!("events_p202611{d}"),
                        t(2026, 11, d),
                        t(2026, 11, d + 1),
                        true,
                    )
                })
                .collect(),
        );
        tb.partitions.push(ObservedPartition {
            bound: Bound::Default,
            ..part("events_default", t(2000, 1, 1), t(2000, 1, 2), true)
        });
        tb.default_rows.rows = 100;
        tb.default_slot_keys = days.iter().map(|d| kv(*d + Duration::hours(5))).collect();
        tb
    }

    fn repairs(p: &Plan) -> Vec<(String, KeyValue, KeyValue)> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Repair { slot } => Some((slot.name.clone(), slot.from, slot.to)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_backlog_becomes_one_partition_and_strays_their_own() {
        let p = policy(
            "range: {interval: 1 day, premake: 3}\ndefaultPartition: {create: true, onRows: Repair}",
        );
        let now = at(2026, 11, 22, 12);
        // Three days in a row, one more after one empty day: one range, made first.
        let tb = daily_with_default_rows(&[
            t(2026, 11, 20),
            t(2026, 11, 21),
            t(2026, 11, 23),
            t(2026, 11, 22),
        ]);
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        assert_eq!(
            repairs(&plan_),
            [(
                "events_repaired_202611200000".to_string(),
                kv(t(2026, 11, 20)),
                kv(t(2026, 11, 24))
            )]
        );
        assert!(matches!(plan_.actions.first(), Some(Action::Repair { .. })));
        // The window's slots inside the repaired range are not created again; the rest are.
        let made: Vec<_> = creates(&plan_).into_iter().map(|c| c.0).collect();
        assert_eq!(
            made,
            [
                "events_repaired_202611200000",
                "events_p20261124",
                "events_p20261125"
            ]
        );
        assert!(!reasons(&plan_).contains(&"Hole"), "{:?}", plan_.findings);

        // Two rows of one day: one range (found by the property test below).
        let mut tb = daily_with_default_rows(&[t(2026, 11, 20)]);
        tb.default_slot_keys
            .push(kv(t(2026, 11, 20) + Duration::hours(17)));
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        assert_eq!(
            repairs(&plan_),
            [(
                "events_p20261120".to_string(),
                kv(t(2026, 11, 20)),
                kv(t(2026, 11, 21))
            )]
        );

        // Three empty days between: two ranges, the one with more occupied days first.
        let tb = daily_with_default_rows(&[t(2026, 11, 20), t(2026, 11, 24), t(2026, 11, 25)]);
        let names: Vec<_> = repairs(&super::plan(&p, Some(&tb), now).unwrap())
            .into_iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(names, ["events_repaired_202611240000", "events_p20261120"]);

        // A stray row in 1970 and one a year ahead: each its own slot, after the backlog.
        let tb = daily_with_default_rows(&[
            t(1970, 1, 1),
            t(2026, 11, 20),
            t(2026, 11, 21),
            t(2027, 11, 1),
        ]);
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        let names: Vec<_> = repairs(&plan_).into_iter().map(|r| r.0).collect();
        assert_eq!(
            names,
            [
                "events_repaired_202611200000",
                "events_p20271101",
                "events_p19700101"
            ]
        );

        // Retention has passed 1970: that row stays in the default, no partition for it.
        let p = policy(
            "range: {interval: 1 day, premake: 3}\ndefaultPartition: {create: true, onRows: Repair}\nretention: {keep: 30 days}",
        );
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        let names: Vec<_> = repairs(&plan_).into_iter().map(|r| r.0).collect();
        assert_eq!(names, ["events_repaired_202611200000", "events_p20271101"]);
    }

    #[test]
    fn a_repair_is_refused_for_a_referenced_table_and_leftovers_are_undone() {
        let p = policy(
            "range: {interval: 1 day, premake: 3}\ndefaultPartition: {create: true, onRows: Repair}",
        );
        let now = at(2026, 11, 22, 12);
        let mut tb = daily_with_default_rows(&[t(2026, 11, 20)]);
        tb.referenced_by = vec!["public.comments".into()];
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        assert!(repairs(&plan_).is_empty(), "{:?}", plan_.actions);
        assert!(reasons(&plan_).contains(&"RepairRefused"));
        assert!(reasons(&plan_).contains(&"RowsInDefault"));

        let mut tb = daily_with_default_rows(&[]);
        tb.default_rows.rows = 0;
        tb.default_guard = true;
        tb.orphans = vec!["events_p20261120".into()];
        let plan_ = super::plan(&p, Some(&tb), now).unwrap();
        assert_eq!(plan_.actions[0], Action::DropDefaultGuard);
        assert_eq!(
            plan_.actions[1],
            Action::RestoreOrphan {
                table: "events_p20261120".into()
            }
        );
        assert!(reasons(&plan_).contains(&"HiddenRows"));
        assert!(reasons(&plan_).contains(&"DefaultGuardLeft"));
    }

    #[test]
    fn a_stale_retiring_mark_is_never_acted_on() {
        let mut tb = table(monthly_parts(t(2026, 11, 1), 3));
        tb.retiring = vec![(
            "events_p20240101".into(),
            action::retiring_mark("events", crate::policy::RetentionAction::Drop, None),
        )];
        // The spec now says Detach: the mark from Drop is cleared, nothing is dropped.
        let p = policy(
            "range: {interval: 1 month, premake: 2}\nretention: {keep: 12 months, action: Detach}",
        );
        let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
        assert!(
            plan_
                .actions
                .iter()
                .all(|a| !matches!(a, Action::FinishRetire { .. })),
            "{:?}",
            plan_.actions
        );
        assert!(plan_.actions.contains(&Action::AbandonRetire {
            partition: "events_p20240101".into()
        }));
        // No retention at all: the same.
        let p = policy("range: {interval: 1 month, premake: 2}");
        let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
        assert!(plan_.actions.contains(&Action::AbandonRetire {
            partition: "events_p20240101".into()
        }));
        // The spec still says Drop: the drop is finished.
        let p = policy(
            "range: {interval: 1 month, premake: 2}\nretention: {keep: 12 months, action: Drop}",
        );
        let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
        assert!(plan_.actions.iter().any(|a| matches!(a, Action::FinishRetire { partition, .. } if partition == "events_p20240101")));
    }

    #[test]
    fn adoption_needs_both_ends_on_the_grid() {
        let p = policy("range: {interval: 1 month, premake: 1}\nadoptExisting: true");
        let tb = table(vec![
            part("events_exact", t(2026, 10, 1), t(2026, 11, 1), false),
            part("events_half", t(2026, 9, 15), t(2026, 10, 1), false),
        ]);
        let plan_ = super::plan(&p, Some(&tb), at(2026, 11, 22, 0)).unwrap();
        let adopted: Vec<_> = plan_
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::Adopt { partition } => Some(partition.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(adopted, ["events_exact"]);
    }

    #[test]
    fn uncovered_is_the_difference() {
        let (a, b, c, d) = (
            KeyValue::Int(0),
            KeyValue::Int(10),
            KeyValue::Int(20),
            KeyValue::Int(30),
        );
        assert_eq!(uncovered(a, d, &[]), [(a, d)]);
        assert_eq!(uncovered(a, d, &[(b, c)]), [(a, b), (c, d)]);
        assert_eq!(uncovered(a, d, &[(a, b), (b, d)]), []);
        assert_eq!(uncovered(b, c, &[(a, d)]), []);
    }

    /// A random table: monthly partitions from a random start for a random length (some
    /// removed to leave gaps), plus a few off-grid ones that do not overlap the rest.
    fn any_table() -> impl proptest::strategy::Strategy<Value = (ObservedTable, DateTime<Utc>)> {
        (
            0u32..48,
            1u32..40,
            proptest::collection::vec(any::<bool>(), 40),
            proptest::collection::vec((0i64..2000, 1i64..60), 0..4),
            0i64..(4 * 365 * 24),
            proptest::collection::vec(any::<bool>(), 40),
        )
            .prop_map(|(start, n, keep, extra, hours, managed)| {
                let first = t(2024, 1, 1) + chrono::Months::new(start);
                let mut parts: Vec<ObservedPartition> = monthly_parts(first, n)
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| keep[*i % keep.len()])
                    .map(|(i, mut p)| {
                        p.managed = managed[i % managed.len()];
                        p
                    })
                    .collect();
                for (i, (off_days, len_days)) in extra.into_iter().enumerate() {
                    let f = t(2024, 1, 1) + Duration::days(off_days) + Duration::hours(7);
                    let to = f + Duration::days(len_days);
                    let overlaps = parts.iter().any(|p| match p.bound {
                        Bound::Range {
                            from: KeyValue::Time(a),
                            to: KeyValue::Time(b),
                        } => a < to && f < b,
                        _ => false,
                    });
                    if !overlaps {
                        parts.push(part(&format!("events_x{i}"), f, to, false));
                    }
                }
                let now = (t(2024, 1, 1) + Duration::hours(hours)).and_utc();
                (table(parts), now)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn window_covered_nothing_overlaps_retention_takes_only_what_it_may(
            (tb, now) in any_table(),
            premake in 1u32..8,
            keep in 1u32..24,
            adopt in any::<bool>(),
        ) {
            let p = policy(&format!(
                "range: {{interval: 1 month, premake: {premake}}}\nretention: {{keep: {keep} months, action: Drop, maxPerPass: 100}}\nadoptExisting: {adopt}"
            ));
            let plan_ = super::plan(&p, Some(&tb), now).unwrap();
            let existing: Vec<(KeyValue, KeyValue)> = tb.partitions.iter().filter_map(|p| match p.bound {
                Bound::Range { from, to } => Some((from, to)),
                _ => None,
            }).collect();
            let new = creates(&plan_);
            // Nothing planned overlaps what exists or another planned partition.
            let mut all = existing.clone();
            all.extend(new.iter().map(|(_, f, t)| (*f, *t)));
            all.sort();
            for w in all.windows(2) {
                prop_assert!(w[0].1 <= w[1].0, "overlap {:?} / {:?}: {:?}", w[0], w[1], plan_.actions);
            }
            // After the plan, now .. the end of the premake window is covered.
            let now_local = now.naive_utc();
            let horizon = t(now_local.year(), now_local.month(), 1) + chrono::Months::new(premake + 1);
            prop_assert!(
                uncovered(kv(now_local), kv(horizon), &all).is_empty(),
                "hole after the plan: {:?}\nexisting {:?}\nplanned {:?}", uncovered(kv(now_local), kv(horizon), &all), existing, new
            );
            // The plan is the size of the window, whatever the history.
            prop_assert!(new.len() <= 2 * (premake as usize + 1), "{new:?}");
            // Retention: whole ranges before the cutoff, pgpart's own or adopted grid slots.
            let cutoff = kv((now - chrono::Months::new(keep)).naive_utc());
            for a in &plan_.actions {
                if let Action::Retire { partition, .. } = a {
                    let p = tb.partitions.iter().find(|p| &p.name == partition).unwrap();
                    let Bound::Range { from, to } = p.bound else { panic!() };
                    prop_assert!(to <= cutoff, "{partition} ends after the cutoff");
                    let on_grid = matches!((from, to), (KeyValue::Time(f), KeyValue::Time(t)) if f.day() == 1 && f.hour() == 0 && t == f + chrono::Months::new(1));
                    prop_assert!(p.managed || (adopt && on_grid), "{partition} is not pgpart's");
                }
            }
        }

        #[test]
        fn repairs_home_every_default_row_and_overlap_nothing(
            (mut tb, now) in any_table(),
            offsets in proptest::collection::vec(-40_000i64..40_000, 1..8),
            keep in proptest::option::of(1u32..24),
        ) {
            let retention = keep
                .map(|k| format!("\nretention: {{keep: {k} months, action: Detach, maxPerPass: 100}}"))
                .unwrap_or_default();
            let p = policy(&format!(
                "range: {{interval: 1 month, premake: 3}}\ndefaultPartition: {{create: true, onRows: Repair}}{retention}"
            ));
            let existing: Vec<(KeyValue, KeyValue)> = {
                let mut v: Vec<_> = tb.partitions.iter().filter_map(|p| match p.bound {
                    Bound::Range { from, to } => Some((from, to)),
                    _ => None,
                }).collect();
                v.sort();
                v
            };
            // Rows in the default: keys (hours from now) that no partition takes.
            let mut keys: Vec<KeyValue> = offsets
                .iter()
                .map(|h| kv(now.naive_utc() + Duration::hours(*h)))
                .filter(|k| !existing.iter().any(|(f, t)| f <= k && k < t))
                .collect();
            keys.sort();
            keys.dedup();
            prop_assume!(!keys.is_empty());
            tb.partitions.push(ObservedPartition {
                bound: Bound::Default,
                ..part("events_default", t(2000, 1, 1), t(2000, 1, 2), true)
            });
            tb.default_rows.rows = keys.len() as i64;
            tb.default_slot_keys = keys.clone();
            let plan_ = super::plan(&p, Some(&tb), now).unwrap();
            let repaired = repairs(&plan_);
            // Repairs first, largest first; nothing overlaps anything.
            let mut all = existing.clone();
            all.extend(creates(&plan_).iter().map(|(_, f, t)| (*f, *t)));
            all.sort();
            for w in all.windows(2) {
                prop_assert!(w[0].1 <= w[1].0, "overlap {:?} / {:?}: {:?}", w[0], w[1], plan_.actions);
            }
            // Every row newer than the cutoff has a home after the plan; older ones stay.
            let cutoff = keep.map(|k| kv((now - chrono::Months::new(k)).naive_utc()));
            for k in &keys {
                let homed = repaired.iter().any(|(_, f, t)| f <= k && k < t);
                let month_end = |k: &KeyValue| match k {
                    KeyValue::Time(v) => kv(t(v.year(), v.month(), 1) + chrono::Months::new(1)),
                    other => *other,
                };
                let expired = cutoff.is_some_and(|c| month_end(k) <= c);
                prop_assert!(homed != expired, "key {k:?}: homed {homed}, expired {expired}: {repaired:?}");
            }
        }
    }
}
