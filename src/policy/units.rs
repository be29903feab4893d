//! The words a policy measures time in: a calendar step ("1 month"), a range width
//! (a step or an integer), a time zone and a short duration ("500ms"), each parsed with a
//! message that gives the accepted form. The calendar arithmetic on them is the planner's
//! (`plan::calendar`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::FixedOffset;

/// Calendar unit of a time interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Quarter,
    Year,
}

impl Unit {
    pub(crate) const ALL: [Unit; 6] = [
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Quarter,
        Unit::Year,
    ];

    fn singular(self) -> &'static str {
        match self {
            Unit::Hour => "hour",
            Unit::Day => "day",
            Unit::Week => "week",
            Unit::Month => "month",
            Unit::Quarter => "quarter",
            Unit::Year => "year",
        }
    }

    /// Nominal seconds in one unit, for reporting and sanity limits only.
    pub(crate) fn approx_seconds(self) -> i64 {
        const DAY: i64 = 86_400;
        match self {
            Unit::Hour => 3_600,
            Unit::Day => DAY,
            Unit::Week => 7 * DAY,
            Unit::Month => 30 * DAY,
            Unit::Quarter => 90 * DAY,
            Unit::Year => 365 * DAY,
        }
    }

    /// Months per unit for the month-based units, which need calendar arithmetic.
    pub(crate) fn months(self) -> Option<i64> {
        match self {
            Unit::Month => Some(1),
            Unit::Quarter => Some(3),
            Unit::Year => Some(12),
            _ => None,
        }
    }

    fn parse(word: &str) -> Option<Unit> {
        let word = word.to_ascii_lowercase();
        let singular = word.strip_suffix('s').unwrap_or(&word);
        Unit::ALL.into_iter().find(|u| u.singular() == singular)
    }
}

/// A calendar step such as "1 month" or "6 hours"; `count` is at least 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeStep {
    pub count: u32,
    pub unit: Unit,
}

/// Width of a range partition: a calendar step for time keys, a positive width for integer keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Interval {
    Time(TimeStep),
    Integer(i64),
}

const ACCEPTED_INTERVAL: &str = "use \"N unit\" with unit one of hour, day, week, month, quarter, \
                                 year (plurals allowed), or a positive integer for an integer key";
const ACCEPTED_STEP: &str = "use \"N unit\" with unit one of hour, day, week, month, quarter, \
                             year (plurals allowed), e.g. \"24 months\"";

/// Longest accepted time step: beyond this, shifting a few steps would leave chrono's date
/// range (about ±262,000 years) and a typo like "1000000 years" must fail at parse time,
/// not panic later.
const MAX_STEP_YEARS: i64 = 1_000;

/// Parsed-but-unvalidated pieces shared by the `Interval` and `TimeStep` parsers.
enum RawInterval {
    Time(TimeStep),
    Integer(i64),
}

fn parse_raw(s: &str, accepted: &str) -> Result<RawInterval, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty interval; {accepted}"));
    }
    if t.starts_with('-') {
        return Err(format!(
            "{s:?}: negative intervals are not allowed; {accepted}"
        ));
    }
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, rest) = t.split_at(digits_end);
    let rest = rest.trim_start();
    if digits.is_empty() {
        return Err(format!("{s:?}: missing count before the unit; {accepted}"));
    }
    if rest.starts_with(['.', ',']) {
        return Err(format!(
            "{s:?}: the count must be a whole number; {accepted}"
        ));
    }
    if rest.is_empty() {
        let n: i64 = digits.parse().map_err(|_| {
            format!(
                "{s:?}: {digits} is too large (at most {}); {accepted}",
                i64::MAX
            )
        })?;
        if n == 0 {
            return Err(format!("{s:?}: the interval must be positive; {accepted}"));
        }
        return Ok(RawInterval::Integer(n));
    }
    let Some(unit) = Unit::parse(rest) else {
        return Err(format!("{s:?}: unknown unit {rest:?}; {accepted}"));
    };
    let max_count = MAX_STEP_YEARS * Unit::Year.approx_seconds() / unit.approx_seconds();
    let count = match digits.parse::<i64>() {
        Ok(n) if n <= max_count => u32::try_from(n).expect("bounded by max_count"),
        _ => {
            return Err(format!(
                "{s:?}: the interval is too long (at most {MAX_STEP_YEARS} years); {accepted}"
            ));
        }
    };
    if count == 0 {
        return Err(format!("{s:?}: the count must be at least 1; {accepted}"));
    }
    Ok(RawInterval::Time(TimeStep { count, unit }))
}

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match parse_raw(s, ACCEPTED_INTERVAL)? {
            RawInterval::Time(step) => Interval::Time(step),
            RawInterval::Integer(n) => Interval::Integer(n),
        })
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Interval::Time(step) => step.fmt(f),
            Interval::Integer(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for TimeStep {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match parse_raw(s, ACCEPTED_STEP)? {
            RawInterval::Time(step) => Ok(step),
            RawInterval::Integer(_) => Err(format!("{s:?}: missing unit; {ACCEPTED_STEP}")),
        }
    }
}

impl fmt::Display for TimeStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.count == 1 { "" } else { "s" };
        write!(f, "{} {}{}", self.count, self.unit.singular(), plural)
    }
}

/// The policy's time zone: boundaries are computed in its local wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

const ACCEPTED_ZONE: &str = "use an IANA zone name like \"Europe/Berlin\" or \"UTC\", or a fixed offset like \"+01:00\", \"-05:30\", \"+02\" or \"Z\"";

/// Parses "±HH", "±HHMM" and "±HH:MM" into seconds east of UTC.
fn parse_offset(s: &str) -> Option<i32> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (hh, mm) = match rest.len() {
        2 => (rest, "00"),
        4 => rest.split_at(2),
        5 if rest.as_bytes()[2] == b':' => (&rest[..2], &rest[3..]),
        _ => return None,
    };
    if !(hh.bytes().all(|b| b.is_ascii_digit()) && mm.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (h, m): (i32, i32) = (hh.parse().ok()?, mm.parse().ok()?);
    (h <= 23 && m <= 59).then_some(sign * (h * 3_600 + m * 60))
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.is_empty() {
            return Err(format!("empty time zone; {ACCEPTED_ZONE}"));
        }
        if t == "Z" || t == "z" {
            return Ok(Zone::Fixed(FixedOffset::east_opt(0).expect("zero offset")));
        }
        if t.starts_with(['+', '-']) {
            return parse_offset(t)
                .and_then(FixedOffset::east_opt)
                .map(Zone::Fixed)
                .ok_or_else(|| {
                    format!("time zone {s:?}: not a valid UTC offset; {ACCEPTED_ZONE}")
                });
        }
        if let Ok(tz) = t.parse::<chrono_tz::Tz>() {
            return Ok(Zone::Named(tz));
        }
        // Users write "utc" or "europe/berlin"; the canonical spelling is unambiguous.
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(t))
            .map(|tz| Zone::Named(*tz))
            .ok_or_else(|| format!("unknown time zone {s:?}; {ACCEPTED_ZONE}"))
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Named(tz) => f.write_str(tz.name()),
            Zone::Fixed(off) => write!(f, "{off}"),
        }
    }
}

const ACCEPTED_DURATION: &str = "use a positive duration like \"500ms\", \"5s\", \"1m\", \"1h\" or \"1h30m\" (units h, m, s, ms)";

/// Parse Go-style short durations used by `schedule.every` and `lockTimeout`: "500ms", "5s",
/// "1m", "1h", "1h30m", "2h45m10s". Rejects empty, zero, negative, unknown suffixes, with a
/// message giving the accepted form.
pub fn parse_short_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("empty duration; {ACCEPTED_DURATION}"));
    }
    if t.starts_with('-') {
        return Err(format!(
            "{s:?}: negative durations are not allowed; {ACCEPTED_DURATION}"
        ));
    }
    let mut rest = t;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        if digits.is_empty() {
            return Err(format!(
                "{s:?}: expected a number at {rest:?}; {ACCEPTED_DURATION}"
            ));
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let millis_per: u64 = match unit {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            "" => {
                return Err(format!(
                    "{s:?}: missing unit after {digits}; {ACCEPTED_DURATION}"
                ));
            }
            other => {
                return Err(format!(
                    "{s:?}: unknown unit {other:?}; {ACCEPTED_DURATION}"
                ));
            }
        };
        let part = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(millis_per))
            .map(Duration::from_millis);
        total = match part.and_then(|p| total.checked_add(p)) {
            Some(v) => v,
            None => return Err(format!("{s:?}: duration is too large; {ACCEPTED_DURATION}")),
        };
        rest = next;
    }
    if total.is_zero() {
        return Err(format!(
            "{s:?}: duration must be greater than zero; {ACCEPTED_DURATION}"
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(count: u32, unit: Unit) -> TimeStep {
        TimeStep { count, unit }
    }

    fn zone(s: &str) -> Zone {
        s.parse().unwrap()
    }

    #[test]
    fn parses_time_intervals() {
        let cases = [
            ("1 month", 1, Unit::Month),
            ("3 months", 3, Unit::Month),
            ("1month", 1, Unit::Month),
            ("  2 \t Weeks ", 2, Unit::Week),
            ("1 HOUR", 1, Unit::Hour),
            ("6 hours", 6, Unit::Hour),
            ("7 days", 7, Unit::Day),
            ("1 quarter", 1, Unit::Quarter),
            ("2 Quarters", 2, Unit::Quarter),
            ("10 years", 10, Unit::Year),
            ("1 year", 1, Unit::Year),
        ];
        for (s, count, unit) in cases {
            assert_eq!(
                s.parse::<Interval>(),
                Ok(Interval::Time(step(count, unit))),
                "{s}"
            );
            assert_eq!(s.parse::<TimeStep>(), Ok(step(count, unit)), "{s}");
        }
        assert_eq!(
            "1000000".parse::<Interval>(),
            Ok(Interval::Integer(1_000_000))
        );
        assert_eq!(" 1 ".parse::<Interval>(), Ok(Interval::Integer(1)));
    }

    #[test]
    fn rejects_bad_intervals_with_the_accepted_form() {
        assert_eq!(
            "3 fortnights".parse::<Interval>().unwrap_err(),
            "\"3 fortnights\": unknown unit \"fortnights\"; use \"N unit\" with unit one of \
             hour, day, week, month, quarter, year (plurals allowed), or a positive integer \
             for an integer key"
        );
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("0 days", "at least 1"),
            ("0", "positive"),
            ("-1 day", "negative"),
            ("-5", "negative"),
            ("month", "missing count"),
            ("1.5 days", "whole number"),
            ("99999999999999999999", "too large"),
            ("99999999999999999999 days", "too long"),
            ("5000 years", "too long"),
            ("days 3", "missing count"),
            ("3 days later", "unknown unit \"days later\""),
            ("1 s", "unknown unit"),
        ];
        for (s, needle) in cases {
            let err = s.parse::<Interval>().unwrap_err();
            assert!(err.contains(needle), "{s:?}: {err}");
            assert!(err.contains("\"N unit\""), "{s:?}: {err}");
        }
        let err = "1000000".parse::<TimeStep>().unwrap_err();
        assert!(
            err.contains("missing unit") && err.contains("24 months"),
            "{err}"
        );
        assert!("1000 years".parse::<TimeStep>().is_ok());
        assert!("8760000 hours".parse::<TimeStep>().is_ok());
        assert!("8760001 hours".parse::<TimeStep>().is_err());
    }

    #[test]
    fn displays_canonically_and_round_trips() {
        let cases = [
            ("1month", "1 month"),
            ("3 MONTHS", "3 months"),
            ("1 hours", "1 hour"),
            ("12 hour", "12 hours"),
            ("1 week", "1 week"),
            ("2 quarter", "2 quarters"),
            ("1000000", "1000000"),
        ];
        for (input, canonical) in cases {
            let i: Interval = input.parse().unwrap();
            assert_eq!(i.to_string(), canonical);
            assert_eq!(canonical.parse::<Interval>(), Ok(i));
        }
        assert_eq!(step(24, Unit::Month).to_string(), "24 months");
    }

    #[test]
    fn parses_and_displays_zones() {
        assert_eq!(zone("UTC"), Zone::Named(chrono_tz::UTC));
        assert_eq!(zone("utc"), Zone::Named(chrono_tz::UTC));
        assert_eq!(
            zone("Europe/Berlin"),
            Zone::Named(chrono_tz::Europe::Berlin)
        );
        assert_eq!(
            zone(" europe/berlin "),
            Zone::Named(chrono_tz::Europe::Berlin)
        );
        let fixed = |secs| Zone::Fixed(FixedOffset::east_opt(secs).unwrap());
        assert_eq!(zone("+01:00"), fixed(3_600));
        assert_eq!(zone("-05:30"), fixed(-19_800));
        assert_eq!(zone("+0530"), fixed(19_800));
        assert_eq!(zone("+02"), fixed(7_200));
        assert_eq!(zone("-00:00"), fixed(0));
        assert_eq!(zone("Z"), fixed(0));
        for (input, shown) in [
            ("America/New_York", "America/New_York"),
            ("utc", "UTC"),
            ("+05:45", "+05:45"),
            ("-0530", "-05:30"),
            ("Z", "+00:00"),
        ] {
            let z = zone(input);
            assert_eq!(z.to_string(), shown);
            assert_eq!(zone(shown), z);
        }
        for bad in [
            "",
            "Mars/Olympus",
            "+25:00",
            "+1:00",
            "+01:60",
            "01:00",
            "+01:00:00",
            "+ab",
        ] {
            let err = bad.parse::<Zone>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")) || bad.is_empty(), "{err}");
            assert!(
                err.contains("\"Europe/Berlin\"") && err.contains("\"+01:00\""),
                "{err}"
            );
        }
    }

    #[test]
    fn parses_short_durations() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("5s", Duration::from_secs(5)),
            ("1m", Duration::from_secs(60)),
            ("1h", Duration::from_secs(3_600)),
            ("1h30m", Duration::from_secs(5_400)),
            ("2h45m10s", Duration::from_secs(2 * 3_600 + 45 * 60 + 10)),
            ("1s500ms", Duration::from_millis(1_500)),
            (" 90s ", Duration::from_secs(90)),
        ];
        for (s, want) in cases {
            assert_eq!(parse_short_duration(s), Ok(want), "{s}");
        }
        let bad = [
            ("", "empty"),
            ("0s", "greater than zero"),
            ("0h0m", "greater than zero"),
            ("-5s", "negative"),
            ("5", "missing unit"),
            ("5d", "unknown unit \"d\""),
            ("1h30", "missing unit"),
            ("h", "expected a number"),
            ("1.5h", "unknown unit \".\""),
            ("5 s", "unknown unit \" s\""),
            ("99999999999999999999h", "too large"),
        ];
        for (s, needle) in bad {
            let err = parse_short_duration(s).unwrap_err();
            assert!(err.contains(needle), "{s:?}: {err}");
            assert!(err.contains("\"1h30m\""), "{s:?}: {err}");
        }
    }
}
