//! The time grid for range partitions.
//!
//! Partition boundaries are LOCAL wall-clock times in the policy's zone, so that a daily
//! partition runs from local midnight to local midnight whatever the UTC offset. For
//! `timestamp`/`date` keys the bounds are those local values; for `timestamptz` keys they
//! are the instants given by [`Zone::to_instant`], which is monotone, so consecutive grid
//! points give contiguous, non-overlapping instant ranges (see [`instant_grid`]).

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, TimeZone, Utc,
};

use crate::policy::units::{TimeStep, Unit, Zone};

const EPOCH_DATE: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
/// First Monday after the Unix epoch: the anchor of week slots, so weeks start on Monday.
const EPOCH_MONDAY: NaiveDate = NaiveDate::from_ymd_opt(1970, 1, 5).unwrap();

fn midnight(d: NaiveDate) -> NaiveDateTime {
    d.and_time(NaiveTime::MIN)
}

/// Months since January of year 0, the anchor of month/quarter/year slots.
fn month_index(t: NaiveDateTime) -> i64 {
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

/// Length of a month; `None` outside chrono's range.
fn days_in_month(year: i32, month: u32) -> Option<u32> {
    let (ny, nm) = if month == 12 {
        (year.checked_add(1)?, 1)
    } else {
        (year, month + 1)
    };
    Some(NaiveDate::from_ymd_opt(ny, nm, 1)?.pred_opt()?.day())
}

/// Year and 1-based month of a month index; `None` outside chrono's range.
fn from_month_index(idx: i64) -> Option<(i32, u32)> {
    let year = i32::try_from(idx.div_euclid(12)).ok()?;
    Some((year, idx.rem_euclid(12) as u32 + 1))
}

fn out_of_range(step: &TimeStep, t: NaiveDateTime, n: i64) -> ! {
    panic!("shifting {t} by {n} x {step} leaves the supported date range")
}

impl TimeStep {
    /// Total months per step for month-based units.
    fn months(&self) -> Option<i64> {
        self.unit.months().map(|m| m * i64::from(self.count))
    }

    /// Start of the grid slot containing `t`. Alignment: Hour: N-hour slots counted from
    /// 1970-01-01T00:00 (local naive); Day: N-day slots counted from 1970-01-01; Week: weeks
    /// start on Monday, N-week slots counted from Monday 1970-01-05; Month: N-month slots
    /// counted from January of year 0 (so 3 months = calendar quarters, 6 months = halves);
    /// Quarter = 3*N months; Year: years divisible by N (year 0 based). The anchors are fixed
    /// so the grid never depends on when the operator happened to start.
    pub fn floor(&self, t: NaiveDateTime) -> NaiveDateTime {
        let c = i64::from(self.count.max(1));
        match self.unit {
            Unit::Hour => {
                let hours = t.and_utc().timestamp().div_euclid(3_600);
                let slot = hours.div_euclid(c) * c;
                DateTime::from_timestamp(slot * 3_600, 0)
                    .expect("floor is never later than t")
                    .naive_utc()
            }
            Unit::Day | Unit::Week => {
                let (anchor, width) = if self.unit == Unit::Day {
                    (EPOCH_DATE, c)
                } else {
                    (EPOCH_MONDAY, 7 * c)
                };
                let days = t.date().signed_duration_since(anchor).num_days();
                let slot = days.div_euclid(width) * width;
                midnight(anchor + TimeDelta::days(slot))
            }
            Unit::Month | Unit::Quarter | Unit::Year => {
                let m = self.months().expect("month-based unit");
                let idx = month_index(t);
                let (year, month) =
                    from_month_index(idx.div_euclid(m) * m).expect("floor is never later than t");
                midnight(NaiveDate::from_ymd_opt(year, month, 1).expect("valid month start"))
            }
        }
    }

    /// `t` moved by n*count units (n may be negative). Months/quarters/years clamp the day to
    /// the month's end (Jan 31 + 1 month = Feb 28/29). For aligned `t` this is the
    /// next/previous grid point.
    ///
    /// # Panics
    /// If the result leaves chrono's date range (about ±262,000 years).
    pub fn shift(&self, t: NaiveDateTime, n: i64) -> NaiveDateTime {
        let Some(k) = n.checked_mul(i64::from(self.count)) else {
            out_of_range(self, t, n)
        };
        let delta = match self.unit {
            Unit::Hour => k.checked_mul(3_600).map(TimeDelta::try_seconds),
            Unit::Day => k.checked_mul(86_400).map(TimeDelta::try_seconds),
            Unit::Week => k.checked_mul(7 * 86_400).map(TimeDelta::try_seconds),
            Unit::Month | Unit::Quarter | Unit::Year => {
                let m = self.unit.months().expect("month-based unit");
                let shifted = k
                    .checked_mul(m)
                    .and_then(|dm| month_index(t).checked_add(dm))
                    .and_then(from_month_index)
                    .and_then(|(year, month)| {
                        let day = t.day().min(days_in_month(year, month)?);
                        NaiveDate::from_ymd_opt(year, month, day)
                    });
                return match shifted {
                    Some(d) => d.and_time(t.time()),
                    None => out_of_range(self, t, n),
                };
            }
        };
        match delta.flatten().and_then(|d| t.checked_add_signed(d)) {
            Some(r) => r,
            None => out_of_range(self, t, n),
        }
    }

    /// Nominal length used only for approximate reporting (e.g. seconds of coverage ahead):
    /// hour 3600 s, day 86400 s, week 7 days, month 30 days, quarter 90 days, year 365 days.
    pub fn approx_seconds(&self) -> i64 {
        i64::from(self.count).saturating_mul(self.unit.approx_seconds())
    }
}

impl Zone {
    /// Local wall-clock time of an instant.
    pub fn to_local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Named(tz) => t.with_timezone(tz).naive_local(),
            Zone::Fixed(off) => t.with_timezone(off).naive_local(),
        }
    }

    /// The earliest instant whose local time is >= `local`: for an ambiguous local time
    /// (autumn fall-back) the earlier of the two; for a local time inside a spring-forward
    /// gap, the instant at which the gap ends. This mapping is monotone, so a grid of local
    /// points maps to contiguous, non-overlapping instants.
    pub fn to_instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self {
            Zone::Fixed(off) => match off.from_local_datetime(&local) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                // Only at the very edge of chrono's range; clamp rather than panic.
                _ => local.and_utc(),
            },
            Zone::Named(tz) => match tz.from_local_datetime(&local) {
                LocalResult::Single(t) => t.with_timezone(&Utc),
                LocalResult::Ambiguous(a, b) => a.with_timezone(&Utc).min(b.with_timezone(&Utc)),
                LocalResult::None => gap_end(tz, local),
            },
        }
    }
}

/// The instant at which the spring-forward gap containing `local` ends: the smallest instant
/// whose local time is >= `local`. Zone transitions happen on whole seconds, so a binary
/// search over seconds in a window wider than any UTC offset (±27 h) finds it exactly.
fn gap_end(tz: &chrono_tz::Tz, local: NaiveDateTime) -> DateTime<Utc> {
    const WINDOW: i64 = 27 * 3_600;
    let reaches = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .is_some_and(|t| t.with_timezone(tz).naive_local() >= local)
    };
    let centre = local.and_utc().timestamp();
    // Invariant: !reaches(lo) && reaches(hi).
    let (mut lo, mut hi) = (centre - WINDOW, centre + WINDOW);
    if reaches(lo) || !reaches(hi) {
        // Cannot happen for real zones; stay monotone-ish instead of panicking.
        return local.and_utc();
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if reaches(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    DateTime::from_timestamp(hi, 0).expect("within the searched window")
}

/// `count` aligned local grid points starting at `step.floor(from)`, each with its instant in
/// `zone`, for `timestamptz` bounds. Across a spring-forward gap consecutive points can map to
/// the same instant (e.g. 02:00 and 03:00 in Europe/Berlin with 1-hour slots); the earlier
/// of those points starts an empty slot, which PostgreSQL would reject ("FROM x TO x"), so
/// it is left out and the later point is kept. Hence every returned point `p` starts a
/// non-empty slot `[to_instant(p), to_instant(step.shift(p, 1)))`, and the instants are
/// strictly increasing.
pub fn instant_grid(
    step: &TimeStep,
    zone: &Zone,
    from: NaiveDateTime,
    count: usize,
) -> Vec<(NaiveDateTime, DateTime<Utc>)> {
    let mut out = Vec::with_capacity(count);
    let mut p = step.floor(from);
    let mut ip = zone.to_instant(p);
    while out.len() < count {
        let q = step.shift(p, 1);
        let iq = zone.to_instant(q);
        if iq != ip {
            out.push((p, ip));
        }
        (p, ip) = (q, iq);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    fn day(y: i32, mo: u32, d: u32) -> NaiveDateTime {
        dt(y, mo, d, 0, 0)
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        dt(y, mo, d, h, mi).and_utc()
    }

    fn step(count: u32, unit: Unit) -> TimeStep {
        TimeStep { count, unit }
    }

    fn zone(s: &str) -> Zone {
        s.parse().unwrap()
    }

    #[test]
    fn floors_months_quarters_and_years() {
        let t = dt(2024, 2, 29, 13, 45);
        assert_eq!(step(1, Unit::Month).floor(t), day(2024, 2, 1));
        assert_eq!(
            step(3, Unit::Month).floor(dt(2024, 5, 15, 1, 0)),
            day(2024, 4, 1)
        );
        assert_eq!(
            step(1, Unit::Quarter).floor(dt(2024, 5, 15, 1, 0)),
            day(2024, 4, 1)
        );
        assert_eq!(
            step(1, Unit::Quarter).floor(day(2024, 12, 31)),
            day(2024, 10, 1)
        );
        assert_eq!(step(6, Unit::Month).floor(day(2024, 8, 1)), day(2024, 7, 1));
        assert_eq!(
            step(2, Unit::Quarter).floor(day(2024, 6, 30)),
            day(2024, 1, 1)
        );
        assert_eq!(step(12, Unit::Month).floor(t), day(2024, 1, 1));
        // 5-month slots run from January of year 0: 2024*12 = 24288 = 5*4857 + 3,
        // and 5*4857 = 24285 = 2023*12 + 9, i.e. October 2023.
        assert_eq!(
            step(5, Unit::Month).floor(day(2024, 1, 1)),
            day(2023, 10, 1)
        );
        assert_eq!(step(5, Unit::Month).floor(day(2024, 3, 1)), day(2024, 3, 1));
        assert_eq!(step(1, Unit::Year).floor(t), day(2024, 1, 1));
        assert_eq!(step(2, Unit::Year).floor(day(2025, 6, 1)), day(2024, 1, 1));
        assert_eq!(
            step(10, Unit::Year).floor(day(2029, 12, 31)),
            day(2020, 1, 1)
        );
        assert_eq!(step(1, Unit::Month).floor(day(2024, 3, 1)), day(2024, 3, 1));
    }

    #[test]
    fn floors_weeks_to_mondays_across_year_ends() {
        let w = step(1, Unit::Week);
        assert_eq!(w.floor(dt(2025, 1, 1, 9, 0)), day(2024, 12, 30));
        assert_eq!(w.floor(dt(2021, 1, 3, 23, 59)), day(2020, 12, 28));
        assert_eq!(w.floor(day(2024, 12, 30)), day(2024, 12, 30));
        assert_eq!(w.floor(day(1970, 1, 4)), day(1969, 12, 29));
        // 2024-01-01 is 19719 days after Monday 1970-01-05, 7 more than a multiple of 14.
        let two = step(2, Unit::Week);
        assert_eq!(two.floor(day(2024, 1, 1)), day(2023, 12, 25));
        assert_eq!(two.floor(day(2024, 1, 7)), day(2023, 12, 25));
        assert_eq!(two.floor(day(2024, 1, 8)), day(2024, 1, 8));
    }

    #[test]
    fn floors_days_and_hours_from_the_epoch() {
        let three = step(3, Unit::Day);
        assert_eq!(three.floor(dt(1970, 1, 4, 12, 0)), day(1970, 1, 4));
        assert_eq!(three.floor(day(1970, 1, 3)), day(1970, 1, 1));
        assert_eq!(three.floor(day(1969, 12, 31)), day(1969, 12, 29));
        assert_eq!(
            step(1, Unit::Day).floor(dt(2024, 2, 29, 23, 59)),
            day(2024, 2, 29)
        );
        let six = step(6, Unit::Hour);
        assert_eq!(six.floor(dt(2024, 3, 10, 5, 59)), day(2024, 3, 10));
        assert_eq!(six.floor(dt(2024, 3, 10, 13, 0)), dt(2024, 3, 10, 12, 0));
        let seven = step(7, Unit::Hour);
        assert_eq!(seven.floor(dt(1970, 1, 1, 6, 59)), day(1970, 1, 1));
        assert_eq!(seven.floor(dt(1970, 1, 1, 7, 0)), dt(1970, 1, 1, 7, 0));
        assert_eq!(seven.floor(day(1970, 1, 2)), dt(1970, 1, 1, 21, 0));
        assert_eq!(
            seven.floor(dt(1969, 12, 31, 23, 0)),
            dt(1969, 12, 31, 17, 0)
        );
        let sub_second = dt(2024, 1, 1, 0, 0) - TimeDelta::nanoseconds(1);
        assert_eq!(
            step(1, Unit::Hour).floor(sub_second),
            dt(2023, 12, 31, 23, 0)
        );
    }

    #[test]
    fn shifts_clamp_to_month_ends() {
        let m = step(1, Unit::Month);
        assert_eq!(m.shift(day(2024, 1, 31), 1), day(2024, 2, 29));
        assert_eq!(m.shift(day(2023, 1, 31), 1), day(2023, 2, 28));
        assert_eq!(m.shift(day(2024, 3, 31), -1), day(2024, 2, 29));
        assert_eq!(m.shift(dt(2024, 12, 15, 6, 30), 1), dt(2025, 1, 15, 6, 30));
        assert_eq!(m.shift(day(2024, 1, 1), -13), day(2022, 12, 1));
        assert_eq!(
            step(1, Unit::Quarter).shift(day(2024, 1, 31), 1),
            day(2024, 4, 30)
        );
        assert_eq!(
            step(2, Unit::Quarter).shift(day(2024, 7, 1), 1),
            day(2025, 1, 1)
        );
        let y = step(1, Unit::Year);
        assert_eq!(y.shift(day(2024, 2, 29), 1), day(2025, 2, 28));
        assert_eq!(
            step(4, Unit::Year).shift(day(2024, 2, 29), 1),
            day(2028, 2, 29)
        );
        assert_eq!(y.shift(day(2024, 2, 29), -1), day(2023, 2, 28));
    }

    #[test]
    fn shifts_days_weeks_and_hours_in_naive_time() {
        assert_eq!(
            step(1, Unit::Week).shift(day(2024, 12, 30), 1),
            day(2025, 1, 6)
        );
        assert_eq!(
            step(2, Unit::Week).shift(day(2025, 1, 6), -1),
            day(2024, 12, 23)
        );
        assert_eq!(
            step(1, Unit::Day).shift(day(2024, 2, 28), 1),
            day(2024, 2, 29)
        );
        assert_eq!(
            step(3, Unit::Day).shift(day(2024, 2, 28), 2),
            day(2024, 3, 5)
        );
        // Local wall-clock arithmetic: 02:00 exists on the grid even where a zone skips it.
        let h = step(1, Unit::Hour);
        assert_eq!(h.shift(dt(2024, 3, 31, 1, 0), 1), dt(2024, 3, 31, 2, 0));
        assert_eq!(
            step(12, Unit::Hour).shift(day(2024, 1, 1), -1),
            dt(2023, 12, 31, 12, 0)
        );
    }

    #[test]
    #[should_panic(expected = "leaves the supported date range")]
    fn shift_out_of_range_panics_with_a_message() {
        step(1000, Unit::Year).shift(day(2024, 1, 1), 1_000);
    }

    #[test]
    fn approx_seconds_are_nominal() {
        assert_eq!(step(1, Unit::Hour).approx_seconds(), 3_600);
        assert_eq!(step(2, Unit::Day).approx_seconds(), 2 * 86_400);
        assert_eq!(step(1, Unit::Week).approx_seconds(), 7 * 86_400);
        assert_eq!(step(3, Unit::Month).approx_seconds(), 90 * 86_400);
        assert_eq!(step(1, Unit::Quarter).approx_seconds(), 90 * 86_400);
        assert_eq!(step(1, Unit::Year).approx_seconds(), 365 * 86_400);
    }

    #[test]
    fn to_local_follows_the_zone() {
        let t = utc(2024, 7, 1, 12, 0);
        assert_eq!(zone("Europe/Berlin").to_local(t), dt(2024, 7, 1, 14, 0));
        assert_eq!(zone("America/New_York").to_local(t), dt(2024, 7, 1, 8, 0));
        assert_eq!(zone("+05:45").to_local(t), dt(2024, 7, 1, 17, 45));
        assert_eq!(zone("UTC").to_local(t), dt(2024, 7, 1, 12, 0));
    }

    #[test]
    fn to_instant_resolves_gaps_and_overlaps() {
        let berlin = zone("Europe/Berlin");
        assert_eq!(
            berlin.to_instant(dt(2024, 7, 1, 14, 0)),
            utc(2024, 7, 1, 12, 0)
        );
        // Spring forward: 02:00..03:00 does not exist; the gap ends at 01:00Z (03:00 CEST).
        assert_eq!(
            berlin.to_instant(dt(2024, 3, 31, 2, 0)),
            utc(2024, 3, 31, 1, 0)
        );
        assert_eq!(
            berlin.to_instant(dt(2024, 3, 31, 2, 30)),
            utc(2024, 3, 31, 1, 0)
        );
        assert_eq!(
            berlin.to_instant(dt(2024, 3, 31, 3, 0)),
            utc(2024, 3, 31, 1, 0)
        );
        assert_eq!(
            berlin.to_instant(dt(2024, 3, 31, 1, 59)),
            utc(2024, 3, 31, 0, 59)
        );
        // Fall back: 02:00..03:00 happens twice; take the first (CEST).
        assert_eq!(
            berlin.to_instant(dt(2024, 10, 27, 2, 0)),
            utc(2024, 10, 27, 0, 0)
        );
        assert_eq!(
            berlin.to_instant(dt(2024, 10, 27, 2, 30)),
            utc(2024, 10, 27, 0, 30)
        );
        assert_eq!(
            berlin.to_instant(dt(2024, 10, 27, 3, 0)),
            utc(2024, 10, 27, 2, 0)
        );
        // Chile skips local midnight: Sunday starts at 01:00 -03 = 04:00Z.
        let santiago = zone("America/Santiago");
        assert_eq!(santiago.to_instant(day(2024, 9, 8)), utc(2024, 9, 8, 4, 0));
        // Lord Howe springs forward by 30 minutes, 02:00 -> 02:30 (+10:30 -> +11).
        let lord_howe = zone("Australia/Lord_Howe");
        assert_eq!(
            lord_howe.to_instant(dt(2024, 10, 6, 2, 0)),
            utc(2024, 10, 5, 15, 30)
        );
        assert_eq!(
            lord_howe.to_instant(dt(2024, 10, 6, 2, 29)),
            utc(2024, 10, 5, 15, 30)
        );
        assert_eq!(
            lord_howe.to_instant(dt(2024, 10, 6, 2, 30)),
            utc(2024, 10, 5, 15, 30)
        );
        assert_eq!(
            zone("+05:45").to_instant(dt(2024, 1, 1, 5, 45)),
            utc(2024, 1, 1, 0, 0)
        );
    }

    #[test]
    fn instant_grid_drops_empty_slots_in_gaps() {
        let hour = step(1, Unit::Hour);
        let grid = instant_grid(&hour, &zone("Europe/Berlin"), dt(2024, 3, 31, 0, 20), 4);
        assert_eq!(
            grid,
            vec![
                (dt(2024, 3, 31, 0, 0), utc(2024, 3, 30, 23, 0)),
                (dt(2024, 3, 31, 1, 0), utc(2024, 3, 31, 0, 0)),
                (dt(2024, 3, 31, 3, 0), utc(2024, 3, 31, 1, 0)),
                (dt(2024, 3, 31, 4, 0), utc(2024, 3, 31, 2, 0)),
            ]
        );
        // Starting inside the gap: the empty 02:00 slot is skipped.
        let grid = instant_grid(&hour, &zone("Europe/Berlin"), dt(2024, 3, 31, 2, 10), 1);
        assert_eq!(grid, vec![(dt(2024, 3, 31, 3, 0), utc(2024, 3, 31, 1, 0))]);
        let months = instant_grid(
            &step(1, Unit::Month),
            &zone("UTC"),
            dt(2024, 1, 31, 5, 0),
            3,
        );
        let points: Vec<_> = months.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            points,
            vec![day(2024, 1, 1), day(2024, 2, 1), day(2024, 3, 1)]
        );
        assert!(instant_grid(&hour, &zone("UTC"), day(2024, 1, 1), 0).is_empty());
    }

    /// Lengths in hours of the local days of `year` in `zone`.
    fn day_lengths(zone: &Zone, year: i32) -> Vec<i64> {
        let d = step(1, Unit::Day);
        let mut t = day(year, 1, 1);
        let mut lengths = Vec::new();
        while t.year() == year {
            let next = d.shift(t, 1);
            lengths.push((zone.to_instant(next) - zone.to_instant(t)).num_seconds());
            t = next;
        }
        lengths
    }

    #[test]
    fn dst_changes_give_one_23_and_one_25_hour_day_a_year() {
        for name in ["Europe/Berlin", "America/New_York"] {
            let z = zone(name);
            for year in 1990..2060 {
                let lengths = day_lengths(&z, year);
                let count = |secs| lengths.iter().filter(|&&l| l == secs).count();
                assert_eq!(count(23 * 3_600), 1, "{name} {year}");
                assert_eq!(count(25 * 3_600), 1, "{name} {year}");
                assert_eq!(count(24 * 3_600), lengths.len() - 2, "{name} {year}");
            }
        }
        assert!(day_lengths(&zone("UTC"), 2024).iter().all(|&l| l == 86_400));
    }

    const ZONES: [&str; 8] = [
        "UTC",
        "Europe/Berlin",
        "America/New_York",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "America/Santiago",
        "+05:45",
        "America/Sao_Paulo",
    ];
    const COUNTS: [u32; 5] = [1, 2, 3, 7, 12];

    fn any_step() -> impl Strategy<Value = TimeStep> {
        (
            prop::sample::select(Unit::ALL.to_vec()),
            prop::sample::select(COUNTS.to_vec()),
        )
            .prop_map(|(unit, count)| TimeStep { count, unit })
    }

    fn any_zone() -> impl Strategy<Value = Zone> {
        prop::sample::select(ZONES.to_vec()).prop_map(zone)
    }

    /// Instants from 1990-01-01 to 2060-01-01, to the second.
    fn any_instant() -> impl Strategy<Value = DateTime<Utc>> {
        (631_152_000i64..2_840_140_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    proptest! {
        #[test]
        fn floor_is_idempotent_and_contains_t(
            step in any_step(), zone in any_zone(), t in any_instant()
        ) {
            let local = zone.to_local(t);
            let f = step.floor(local);
            prop_assert_eq!(step.floor(f), f);
            prop_assert!(f <= local);
            prop_assert!(local < step.shift(f, 1));
            prop_assert_eq!(step.floor(step.shift(f, 1)), step.shift(f, 1));
        }

        #[test]
        fn instant_grid_is_aligned_and_strictly_increasing(
            step in any_step(), zone in any_zone(), t in any_instant(), count in 1usize..12
        ) {
            let grid = instant_grid(&step, &zone, zone.to_local(t), count);
            prop_assert_eq!(grid.len(), count);
            for (p, i) in &grid {
                prop_assert_eq!(step.floor(*p), *p);
                prop_assert_eq!(zone.to_instant(*p), *i);
                prop_assert!(zone.to_instant(step.shift(*p, 1)) > *i);
            }
            for w in grid.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
                prop_assert!(w[0].1 < w[1].1);
                // Contiguous: only empty slots are skipped.
                prop_assert_eq!(zone.to_instant(step.shift(w[0].0, 1)), w[1].1);
            }
        }

        #[test]
        fn every_instant_falls_in_exactly_one_slot(
            step in any_step(), zone in any_zone(), t in any_instant()
        ) {
            let s = step.floor(zone.to_local(t));
            let next = step.shift(s, 1);
            prop_assert!(zone.to_instant(s) <= t, "{} {} {}", s, zone.to_instant(s), t);
            prop_assert!(t < zone.to_instant(next), "{} {} {}", next, zone.to_instant(next), t);
        }

        #[test]
        fn to_instant_is_monotone_and_reaches_local(
            zone in any_zone(), a in any_instant(), minutes in 0i64..(3 * 24 * 60)
        ) {
            let la = zone.to_local(a);
            let lb = la + TimeDelta::minutes(minutes);
            prop_assert!(zone.to_instant(la) <= zone.to_instant(lb));
            prop_assert!(zone.to_local(zone.to_instant(lb)) >= lb);
            prop_assert_eq!(zone.to_local(zone.to_instant(la)), la);
            prop_assert!(zone.to_instant(la) <= a);
        }

        #[test]
        fn shift_round_trips_on_aligned_points(
            step in any_step(), t in any_instant(), n in -60i64..60
        ) {
            let p = step.floor(t.naive_utc());
            let q = step.shift(p, n);
            prop_assert_eq!(step.floor(q), q);
            prop_assert_eq!(step.shift(q, -n), p);
            prop_assert_eq!(n.signum(), (q - p).num_seconds().signum());
        }
    }
}
