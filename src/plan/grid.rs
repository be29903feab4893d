//! The grid of a range policy: its slots, each with its bound and name (local wall time in
//! the policy's zone, or integer steps), and the coverage arithmetic on key ranges.

use chrono::{DateTime, NaiveDateTime, Utc};

use super::action::RangeSlot;
use super::model::{KeyKind, KeyValue};
use super::naming::SlotStart;
use crate::policy::units::{Interval, TimeStep};
use crate::policy::validate::{Kind, RangePolicy, ValidPolicy};

/// Grid slots of a range policy, in order: each with its bound and name.
pub(super) struct Grid<'a> {
    pub(super) r: &'a RangePolicy,
    pub(super) kind: KeyKind,
    pub(super) table: &'a str,
}

impl Grid<'_> {
    pub(super) fn slot_from_time(
        &self,
        step: &TimeStep,
        local: NaiveDateTime,
    ) -> Option<RangeSlot> {
        let from = self.time_value(local);
        let to = self.time_value(step.shift(local, 1));
        // An encoded key's type cannot hold every time: beyond it, time_value is MINVALUE or
        // MAXVALUE, so the slot that reaches past the last value the type holds ends at
        // MAXVALUE and the ones after it are empty.
        (from < to).then(|| RangeSlot {
            name: self.r.template.render(self.table, &SlotStart::Time(local)),
            from,
            to,
        })
    }

    /// The key value of a local time: the instant for timestamptz, that instant encoded for
    /// an encoded key (`keyEncoding`), else the local time itself.
    pub(super) fn time_value(&self, local: NaiveDateTime) -> KeyValue {
        match self.kind {
            KeyKind::Timestamptz => KeyValue::Time(self.r.zone.to_instant(local).naive_utc()),
            k if k.is_encoded() => k
                .encode(self.r.zone.to_instant(local))
                .expect("an encoded kind encodes"),
            _ => KeyValue::Time(local),
        }
    }

    pub(super) fn slot_from_int(&self, step: i64, start: i64) -> Option<RangeSlot> {
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
    pub(super) fn slot_of(&self, interval: Interval, key: KeyValue) -> Option<RangeSlot> {
        match (interval, key) {
            (Interval::Integer(step), KeyValue::Int(v)) => {
                self.slot_from_int(step, floor_div(v, step))
            }
            (Interval::Time(step), key) => {
                self.slot_from_time(&step, step.floor(self.local_of(key)?))
            }
            _ => None,
        }
    }

    /// Local wall time of a key value (for timestamptz and encoded keys, in the policy's
    /// zone); `None` for integers, MINVALUE and MAXVALUE.
    pub(super) fn local_of(&self, v: KeyValue) -> Option<NaiveDateTime> {
        match (self.kind, v) {
            (KeyKind::Timestamptz, KeyValue::Time(t)) => Some(self.r.zone.to_local(t.and_utc())),
            (_, KeyValue::Time(t)) => Some(t),
            (k, v) => k.decode(v).map(|t| self.r.zone.to_local(t)),
        }
    }

    /// The instant a key value stands for (time and encoded keys).
    pub(super) fn instant_of(&self, v: KeyValue) -> Option<DateTime<Utc>> {
        match (self.kind, v) {
            (KeyKind::Timestamptz, KeyValue::Time(t)) => Some(t.and_utc()),
            (_, KeyValue::Time(t)) => Some(self.r.zone.to_instant(t)),
            (k, v) => k.decode(v),
        }
    }
}

/// Where a grid slot starts: local wall time for time keys, the first key for integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SlotAt {
    Time(NaiveDateTime),
    Int(i64),
}

impl Grid<'_> {
    /// The slot starting at `at`; `None` where it has no length (a local time a DST change
    /// skips) or falls outside the key type.
    pub(super) fn slot_at(&self, interval: Interval, at: SlotAt) -> Option<RangeSlot> {
        match (interval, at) {
            (Interval::Time(step), SlotAt::Time(t)) => self.slot_from_time(&step, t),
            (Interval::Integer(step), SlotAt::Int(v)) => self.slot_from_int(step, v),
            _ => None,
        }
    }

    /// The start of the slot after the one at `at`.
    pub(super) fn next(&self, interval: Interval, at: SlotAt) -> Option<SlotAt> {
        match (interval, at) {
            (Interval::Time(step), SlotAt::Time(t)) => Some(SlotAt::Time(step.shift(t, 1))),
            (Interval::Integer(step), SlotAt::Int(v)) => v.checked_add(step).map(SlotAt::Int),
            _ => None,
        }
    }

    /// The slot start that `v` is, if it is one.
    pub(super) fn slot_start_at(&self, interval: Interval, v: KeyValue) -> Option<SlotAt> {
        match (interval, v) {
            (Interval::Integer(step), KeyValue::Int(i)) => {
                (i.rem_euclid(step) == 0).then_some(SlotAt::Int(i))
            }
            (Interval::Time(step), v) => {
                let l = self.local_of(v)?;
                (step.floor(l) == l && self.time_value(l) == v).then_some(SlotAt::Time(l))
            }
            _ => None,
        }
    }

    /// Whether [from, to) is exactly one grid slot.
    pub(super) fn is_slot(&self, interval: Interval, from: KeyValue, to: KeyValue) -> bool {
        self.slot_start_at(interval, from)
            .and_then(|at| self.slot_at(interval, at))
            .is_some_and(|s| s.to == to)
    }

    /// The name of a partition that fills part of a slot: `<table>_bridge_<start>`, so a
    /// person sees it is not on the grid, and where it begins.
    pub(super) fn bridge_name(&self, from: KeyValue) -> String {
        format!("{}_bridge_{}", self.table, self.start_label(from))
    }

    /// The name of a partition a repair made of more than one slot:
    /// `<table>_repaired_<start>`.
    pub(super) fn repaired_name(&self, from: KeyValue) -> String {
        format!("{}_repaired_{}", self.table, self.start_label(from))
    }

    pub(super) fn start_label(&self, from: KeyValue) -> String {
        if let Some(l) = self.local_of(from) {
            return l.format("%Y%m%d%H%M").to_string();
        }
        match from {
            KeyValue::Int(i) => i.to_string(),
            KeyValue::Uuid(u) => format!("{u:032x}"),
            KeyValue::Time(_) | KeyValue::Min => "min".into(),
            KeyValue::Max => "max".into(),
        }
    }

    /// The start of the slot `n` slots after the one holding `key` (`n` ≥ 1).
    pub(super) fn start_after(
        &self,
        interval: Interval,
        key: KeyValue,
        n: usize,
    ) -> Option<KeyValue> {
        let mut at = self.slot_start_at(interval, self.slot_of(interval, key)?.to)?;
        for _ in 1..n {
            at = self.next(interval, at)?;
        }
        Some(self.slot_at(interval, at)?.from)
    }
}

pub(super) fn floor_div(a: i64, b: i64) -> i64 {
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

/// The grid slot [from, to) of a range policy that `key` falls in (for scanning the default).
pub fn slot_containing(
    policy: &ValidPolicy,
    kind: KeyKind,
    key: KeyValue,
) -> Option<(KeyValue, KeyValue)> {
    let Kind::Range(r) = &policy.kind else {
        return None;
    };
    // Observed as the column's own kind; the policy says how it holds time.
    let kind = r.key_encoding.and_then(|e| kind.encoded(e)).unwrap_or(kind);
    let grid = Grid {
        r,
        kind,
        table: &policy.table,
    };
    grid.slot_of(r.interval, key).map(|s| (s.from, s.to))
}
