//! Homes for the default partition's rows: the ranges a repair turns into partitions.

use super::action::RangeSlot;
use super::grid::{Grid, uncovered};
use super::model::KeyValue;
use super::range::check_name_length;
use crate::error::Result;
use crate::policy::units::Interval;

/// At most this many of the default partition's occupied slots are found per pass (one
/// indexed `min()` each) and repaired.
pub const MAX_REPAIR_SLOTS: usize = 100;
/// Occupied slots with at most this many empty slots between them are repaired into one
/// partition; farther apart (say, a stray row a year ahead), each gets its own.
pub const REPAIR_MAX_EMPTY_SLOTS: usize = 2;

/// Where a repair gives the default partition's rows a home (see [`Action::Repair`]): for
/// each run of occupied slots inside one gap between partitions (at most
/// [`REPAIR_MAX_EMPTY_SLOTS`] empty slots inside a run, none that retention has passed),
/// the range from its first slot to the end of its last, clipped to the gap. The run with
/// the most occupied slots first: the first conversion moves the rows of all the others
/// into the new default, so it should be the one that leaves the fewest behind.
pub(super) fn repair_ranges(
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
