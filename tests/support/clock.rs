//! The tests' clock. Every pgpart process a test starts takes its time from here (the
//! CLI's `--now`, the controller's `--now`), and every expected value is computed from
//! the same instants, so no test depends on the date it runs on.
//!
//! `PGPART_TEST_NOW=2027-01-31T23:59:30Z` runs the suite as if each test process started
//! at that instant; without it, the clock starts at the real time. Either way it then
//! advances with real time, so a boundary may pass while a test runs: expected values are
//! taken from the instant pgpart was given (or reported in `status.lastPassTime`), never
//! from a second reading.
//!
//! This module is the one place in the tests that reads the wall clock.

use std::sync::OnceLock;
use std::time::Instant;

use chrono::{DateTime, Datelike, Months, NaiveDate, SecondsFormat, Utc};

fn start() -> &'static (DateTime<Utc>, Instant) {
    static START: OnceLock<(DateTime<Utc>, Instant)> = OnceLock::new();
    START.get_or_init(|| {
        let t = match std::env::var("PGPART_TEST_NOW") {
            Ok(s) if !s.trim().is_empty() => DateTime::parse_from_rfc3339(s.trim())
                .unwrap_or_else(|e| panic!("PGPART_TEST_NOW={s:?} is not RFC 3339: {e}"))
                .to_utc(),
            _ => Utc::now(),
        };
        (t, Instant::now())
    })
}

/// The tests' now: the start instant plus the real time since.
pub fn now() -> DateTime<Utc> {
    let (t, at) = start();
    *t + chrono::Duration::from_std(at.elapsed()).expect("elapsed fits")
}

/// RFC 3339 to the microsecond, as `--now` takes it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// [`now`] as a `--now` argument.
pub fn now_arg() -> String {
    rfc3339(now())
}

/// Parse an RFC 3339 instant (e.g. `status.lastPassTime`).
#[track_caller]
pub fn parse(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .to_utc()
}

/// The first day of the UTC month of `t`.
pub fn month_start(t: DateTime<Utc>) -> NaiveDate {
    NaiveDate::from_ymd_opt(t.year(), t.month(), 1).expect("valid month")
}

/// `d` shifted by `n` months (negative: back).
pub fn add_months(d: NaiveDate, n: i32) -> NaiveDate {
    if n >= 0 {
        d + Months::new(n as u32)
    } else {
        d - Months::new(n.unsigned_abs())
    }
}

/// `<table>_pYYYYMMDD` of a monthly partition starting `d` (pgpart's default template).
pub fn monthly_name(table: &str, d: NaiveDate) -> String {
    format!("{table}_p{}", d.format("%Y%m%d"))
}

/// Monthly partition names (UTC) of the month of `at` and the `ahead` months after it:
/// what a monthly policy with premake `ahead` makes in a pass at `at`.
pub fn monthly(table: &str, at: DateTime<Utc>, ahead: u32) -> Vec<String> {
    monthly_between(table, at, at, ahead)
}

/// Names from the month of `first` to `ahead` months after the month of `last`: what
/// passes at `first` .. `last` (premake `ahead`) made together.
pub fn monthly_between(
    table: &str,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
    ahead: u32,
) -> Vec<String> {
    let (from, to) = (
        month_start(first),
        add_months(month_start(last), ahead as i32),
    );
    let mut out = Vec::new();
    let mut d = from;
    while d <= to {
        out.push(monthly_name(table, d));
        d = add_months(d, 1);
    }
    out
}

/// Whether `names` is what monthly passes (premake `ahead`) made from some instant at or
/// after `since` up to the last one at `last`: a run of months that ends `ahead` months
/// after the month of `last` and starts no earlier than the month of `since`.
pub fn is_monthly_run(
    names: &[String],
    table: &str,
    since: DateTime<Utc>,
    last: DateTime<Utc>,
    ahead: u32,
) -> bool {
    let all = monthly_between(table, since, last, ahead);
    names.len() > ahead as usize && all.ends_with(names)
}

/// `YYYY-MM-DD HH:MM:SS+00` of a UTC midnight, as the catalog renders a timestamptz bound
/// with the session TimeZone set to UTC.
pub fn bound_text(d: NaiveDate) -> String {
    format!("{} 00:00:00+00", d.format("%Y-%m-%d"))
}

/// SQL creating the monthly partition `<schema>.<table>_pYYYYMMDD` of the month starting
/// `d` (UTC) as a plain `PARTITION OF`, the way a person or another tool would.
pub fn month_partition_sql(schema: &str, table: &str, d: NaiveDate) -> String {
    format!(
        "CREATE TABLE {schema}.{} PARTITION OF {schema}.{table} FOR VALUES FROM ('{}') TO ('{}');",
        monthly_name(table, d),
        bound_text(d),
        bound_text(add_months(d, 1))
    )
}
