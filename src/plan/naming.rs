//! Partition names from a template such as `"{table}_p{YYYY}{MM}{DD}"`.
//!
//! Names must be derivable from the slot alone (so the planner can recognise existing
//! partitions) and distinct for distinct slots; [`Template::validate_for`] checks the latter
//! against the policy's interval before anything is created.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::plan::calendar::{Interval, TimeStep, Unit};

/// A `{...}` placeholder in a template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Token {
    /// `{table}`: the parent table's name.
    Table,
    /// `{YYYY}`: 4-digit year.
    Year,
    /// `{MM}`: 2-digit month.
    Month,
    /// `{DD}`: 2-digit day of month.
    Day,
    /// `{HH}`: 2-digit hour.
    Hour,
    /// `{mm}`: 2-digit minute.
    Minute,
    /// `{Q}`: quarter 1-4.
    Quarter,
    /// `{WW}`: week of year as strftime `%W` (Monday-first, 00-53).
    Week,
    /// `{MON}`: lowercase English month abbreviation (`jan`).
    MonthName,
    /// `{start}`: integer slot start, `m` prefix for negatives.
    Start,
}

impl Token {
    const ALL: [Token; 10] = [
        Token::Table,
        Token::Year,
        Token::Month,
        Token::Day,
        Token::Hour,
        Token::Minute,
        Token::Quarter,
        Token::Week,
        Token::MonthName,
        Token::Start,
    ];

    /// The text between the braces.
    pub fn name(self) -> &'static str {
        match self {
            Token::Table => "table",
            Token::Year => "YYYY",
            Token::Month => "MM",
            Token::Day => "DD",
            Token::Hour => "HH",
            Token::Minute => "mm",
            Token::Quarter => "Q",
            Token::Week => "WW",
            Token::MonthName => "MON",
            Token::Start => "start",
        }
    }

    /// Whether the token renders part of a time slot start.
    pub fn is_time(self) -> bool {
        !matches!(self, Token::Table | Token::Start)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.name())
    }
}

fn valid_tokens() -> String {
    Token::ALL
        .iter()
        .map(Token::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Token(Token),
}

/// A parsed partition-name template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// The start of the slot a partition covers: a local time or an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotStart {
    Time(NaiveDateTime),
    Integer(i64),
}

fn unknown_token(source: &str, inner: &str) -> String {
    let near: Vec<Token> = Token::ALL
        .into_iter()
        .filter(|t| t.name().eq_ignore_ascii_case(inner))
        .collect();
    let hint = match near.as_slice() {
        [t] => format!(" (did you mean {t}?)"),
        _ => String::new(),
    };
    format!(
        "template {source:?}: unknown token {{{inner}}}{hint}; valid tokens are {}",
        valid_tokens()
    )
}

impl FromStr for Template {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(format!(
                "empty partition name template; use e.g. \"{{table}}_p{{YYYY}}{{MM}}{{DD}}\" with tokens {}",
                valid_tokens()
            ));
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = s;
        while let Some(i) = rest.find(['{', '}']) {
            literal.push_str(&rest[..i]);
            if rest[i..].starts_with('}') {
                return Err(format!(
                    "template {s:?}: unbalanced '}}' after {:?}; tokens are written in braces, one of {}",
                    &s[..s.len() - rest.len() + i],
                    valid_tokens()
                ));
            }
            let after = &rest[i + 1..];
            let Some(close) = after
                .find(['{', '}'])
                .filter(|&j| after[j..].starts_with('}'))
            else {
                return Err(format!(
                    "template {s:?}: unbalanced '{{' before {after:?}; tokens are written in braces, one of {}",
                    valid_tokens()
                ));
            };
            let inner = &after[..close];
            let token = Token::ALL
                .into_iter()
                .find(|t| t.name() == inner)
                .ok_or_else(|| unknown_token(s, inner))?;
            if !literal.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
            }
            pieces.push(Piece::Token(token));
            rest = &after[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template {
            source: s.to_owned(),
            pieces,
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// strftime `%W`: Monday-first week of year; days before the first Monday are week 0.
fn week_of_year(t: NaiveDateTime) -> u32 {
    (t.ordinal0() + 7 - t.weekday().num_days_from_monday()) / 7
}

/// Writes `n` with `m` instead of a minus sign, so names need no quoting.
fn push_signed(out: &mut String, n: i64, width: usize) {
    if n < 0 {
        out.push('m');
    }
    out.push_str(&format!("{:0width$}", n.unsigned_abs()));
}

impl Template {
    /// Default: "{table}_p{YYYY}{MM}{DD}" for day/week/month/quarter/year,
    /// "{table}_p{YYYY}{MM}{DD}_{HH}{mm}" for hours, "{table}_p{start}" for integer ranges.
    pub fn default_for(interval: &Interval) -> Template {
        let source = match interval {
            Interval::Time(TimeStep {
                unit: Unit::Hour, ..
            }) => "{table}_p{YYYY}{MM}{DD}_{HH}{mm}",
            Interval::Time(_) => "{table}_p{YYYY}{MM}{DD}",
            Interval::Integer(_) => "{table}_p{start}",
        };
        source.parse().expect("default templates are valid")
    }

    /// The partition name for the slot starting at `start`. Total: tokens that do not apply
    /// to the kind of start (time tokens for an integer start, `{start}` for a time start)
    /// render as "", which [`Template::validate_for`] rules out for real policies.
    pub fn render(&self, table: &str, start: &SlotStart) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            let token = match piece {
                Piece::Literal(text) => {
                    out.push_str(text);
                    continue;
                }
                Piece::Token(token) => *token,
            };
            match (token, start) {
                (Token::Table, _) => out.push_str(table),
                (Token::Start, SlotStart::Integer(n)) => push_signed(&mut out, *n, 1),
                (Token::Year, SlotStart::Time(t)) => push_signed(&mut out, t.year().into(), 4),
                (Token::Month, SlotStart::Time(t)) => out.push_str(&format!("{:02}", t.month())),
                (Token::Day, SlotStart::Time(t)) => out.push_str(&format!("{:02}", t.day())),
                (Token::Hour, SlotStart::Time(t)) => out.push_str(&format!("{:02}", t.hour())),
                (Token::Minute, SlotStart::Time(t)) => {
                    out.push_str(&format!("{:02}", t.minute()));
                }
                (Token::Quarter, SlotStart::Time(t)) => {
                    out.push_str(&(t.month0() / 3 + 1).to_string());
                }
                (Token::Week, SlotStart::Time(t)) => {
                    out.push_str(&format!("{:02}", week_of_year(*t)));
                }
                (Token::MonthName, SlotStart::Time(t)) => {
                    out.push_str(MONTH_NAMES[t.month0() as usize]);
                }
                (Token::Start, SlotStart::Time(_))
                | (
                    Token::Year
                    | Token::Month
                    | Token::Day
                    | Token::Hour
                    | Token::Minute
                    | Token::Quarter
                    | Token::Week
                    | Token::MonthName,
                    SlotStart::Integer(_),
                ) => {}
            }
        }
        out
    }

    /// The template text as written, for messages and status.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The tokens the template uses, each once, in order of first use.
    pub fn tokens(&self) -> Vec<Token> {
        let mut seen = Vec::new();
        for piece in &self.pieces {
            if let Piece::Token(t) = piece
                && !seen.contains(t)
            {
                seen.push(*t);
            }
        }
        seen
    }

    fn uses(&self, token: Token) -> bool {
        self.pieces.contains(&Piece::Token(token))
    }

    /// Checks that the template fits the policy's interval: no `{start}` for a time interval,
    /// no time tokens for an integer interval, and enough slot tokens that different slots get
    /// different names (a daily policy whose template lacks `{DD}` would name every day of a
    /// month alike, and the second CREATE would fail or, worse, match the wrong partition).
    pub fn validate_for(&self, interval: &Interval) -> Result<(), String> {
        let suggestion = Template::default_for(interval);
        let src = &self.source;
        match interval {
            Interval::Integer(width) => {
                if let Some(t) = self.tokens().into_iter().find(|t| t.is_time()) {
                    return Err(format!(
                        "template {src:?}: token {t} needs a time interval, but this policy \
                         partitions an integer key in ranges of {width}; use {{start}} instead, \
                         e.g. {:?}",
                        suggestion.as_str()
                    ));
                }
                if !self.uses(Token::Start) {
                    return Err(format!(
                        "template {src:?} has no {{start}} token, so every partition would get \
                         the same name; add {{start}}, e.g. {:?}",
                        suggestion.as_str()
                    ));
                }
            }
            Interval::Time(step) => {
                if self.uses(Token::Start) {
                    return Err(format!(
                        "template {src:?}: token {{start}} is for integer intervals, but this \
                         policy's interval is \"{step}\"; use date tokens instead, e.g. {:?}",
                        suggestion.as_str()
                    ));
                }
                if !self.tokens().into_iter().any(Token::is_time) {
                    return Err(format!(
                        "template {src:?} has no slot tokens, so every partition would get the \
                         same name; add date tokens, e.g. {:?}",
                        suggestion.as_str()
                    ));
                }
                let missing = self.missing_for(step);
                if !missing.is_empty() {
                    return Err(format!(
                        "template {src:?} cannot tell \"{step}\" partitions apart (it lacks {}), \
                         so different partitions would get the same name; add the missing \
                         token, e.g. {:?}",
                        missing.join(" and "),
                        suggestion.as_str()
                    ));
                }
            }
        }
        Ok(())
    }

    /// What the template lacks to give every grid point of `step` its own name. Grid points
    /// are aligned (see `TimeStep::floor`), so e.g. yearly points only need the year and
    /// quarter-aligned month points can use `{Q}` instead of the month.
    fn missing_for(&self, step: &TimeStep) -> Vec<&'static str> {
        let has = |t| self.uses(t);
        let has_month = has(Token::Month) || has(Token::MonthName);
        let mut missing = Vec::new();
        if !has(Token::Year) {
            missing.push("{YYYY}");
        }
        let count = u64::from(step.count);
        let months = match step.unit {
            Unit::Month => Some(count),
            Unit::Quarter => Some(3 * count),
            Unit::Year => Some(12 * count),
            Unit::Hour | Unit::Day | Unit::Week => None,
        };
        match months {
            Some(m) if m % 12 == 0 => {}
            Some(m) if m % 3 == 0 => {
                if !(has_month || has(Token::Quarter)) {
                    missing.push("{MM} (or {MON} or {Q})");
                }
            }
            Some(_) => {
                if !has_month {
                    missing.push("{MM} (or {MON})");
                }
            }
            None => {
                let hours = match step.unit {
                    Unit::Day => 24 * count,
                    Unit::Week => 168 * count,
                    _ => count,
                };
                // Whole weeks of slots put exactly one grid point in each %W week.
                let week_ok = hours % 168 == 0 && has(Token::Week);
                if !week_ok {
                    match (has_month, has(Token::Day)) {
                        (true, true) => {}
                        (true, false) if hours % 168 == 0 => missing.push("{DD} (or {WW})"),
                        (true, false) => missing.push("{DD}"),
                        (false, true) => missing.push("{MM} (or {MON})"),
                        (false, false) if hours % 168 == 0 => {
                            missing.push("{WW} (or {MM} and {DD})");
                        }
                        (false, false) => missing.push("{MM} and {DD}"),
                    }
                }
                if hours % 24 != 0 && !has(Token::Hour) {
                    missing.push("{HH}");
                }
            }
        }
        missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;
    use proptest::prelude::*;

    fn dt(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_opt(h, mi, 0)
            .unwrap()
    }

    fn tpl(s: &str) -> Template {
        s.parse().unwrap()
    }

    fn render_time(template: &str, t: NaiveDateTime) -> String {
        tpl(template).render("events", &SlotStart::Time(t))
    }

    fn interval(s: &str) -> Interval {
        s.parse().unwrap()
    }

    #[test]
    fn renders_each_time_token() {
        let t = dt(2025, 2, 14, 9, 5);
        let cases = [
            ("{table}", "events"),
            ("{YYYY}", "2025"),
            ("{MM}", "02"),
            ("{DD}", "14"),
            ("{HH}", "09"),
            ("{mm}", "05"),
            ("{Q}", "1"),
            ("{WW}", "06"),
            ("{MON}", "feb"),
            ("{start}", ""),
            ("x_{YYYY}-{MM}", "x_2025-02"),
        ];
        for (template, want) in cases {
            assert_eq!(render_time(template, t), want, "{template}");
        }
        assert_eq!(render_time("{YYYY}", dt(812, 1, 1, 0, 0)), "0812");
        assert_eq!(render_time("{Q}", dt(2025, 3, 31, 0, 0)), "1");
        assert_eq!(render_time("{Q}", dt(2025, 4, 1, 0, 0)), "2");
        assert_eq!(render_time("{Q}", dt(2025, 12, 1, 0, 0)), "4");
        assert_eq!(render_time("{MON}", dt(2025, 5, 1, 0, 0)), "may");
        assert_eq!(render_time("{MON}", dt(2025, 12, 1, 0, 0)), "dec");
    }

    #[test]
    fn week_token_matches_strftime_w() {
        let mut d = NaiveDate::from_ymd_opt(1999, 1, 1).unwrap();
        while d.year() < 2031 {
            let t = d.and_time(chrono::NaiveTime::MIN);
            assert_eq!(render_time("{WW}", t), t.format("%W").to_string(), "{d}");
            d = d.succ_opt().unwrap();
        }
        assert_eq!(render_time("{WW}", dt(2025, 1, 5, 0, 0)), "00");
        assert_eq!(render_time("{WW}", dt(2025, 1, 6, 0, 0)), "01");
        assert_eq!(render_time("{WW}", dt(2024, 12, 30, 0, 0)), "53");
    }

    #[test]
    fn renders_integer_starts_without_minus_signs() {
        let t = tpl("{table}_p{start}");
        let name = |n| t.render("ids", &SlotStart::Integer(n));
        assert_eq!(name(1_000_000), "ids_p1000000");
        assert_eq!(name(0), "ids_p0");
        assert_eq!(name(-1000), "ids_pm1000");
        assert_eq!(name(i64::MIN), "ids_pm9223372036854775808");
        assert_eq!(
            tpl("{table}_{YYYY}{start}").render("ids", &SlotStart::Integer(5)),
            "ids_5"
        );
    }

    #[test]
    fn renders_django_postgres_extra_names() {
        assert_eq!(
            render_time("{table}_{YYYY}_{MON}", dt(2025, 1, 1, 0, 0)),
            "events_2025_jan"
        );
        assert_eq!(
            render_time("{table}_{YYYY}_week_{WW}", dt(2025, 2, 17, 0, 0)),
            "events_2025_week_07"
        );
        assert!(
            tpl("{table}_{YYYY}_{MON}")
                .validate_for(&interval("1 month"))
                .is_ok()
        );
        let weekly = tpl("{table}_{YYYY}_week_{WW}");
        assert!(weekly.validate_for(&interval("1 week")).is_ok());
        assert!(weekly.validate_for(&interval("1 day")).is_err());
    }

    #[test]
    fn defaults_per_interval() {
        let t = SlotStart::Time(dt(2025, 2, 14, 9, 0));
        for (i, template, name) in [
            (
                "1 hour",
                "{table}_p{YYYY}{MM}{DD}_{HH}{mm}",
                "events_p20250214_0900",
            ),
            (
                "6 hours",
                "{table}_p{YYYY}{MM}{DD}_{HH}{mm}",
                "events_p20250214_0900",
            ),
            ("1 day", "{table}_p{YYYY}{MM}{DD}", "events_p20250214"),
            ("1 week", "{table}_p{YYYY}{MM}{DD}", "events_p20250214"),
            ("1 month", "{table}_p{YYYY}{MM}{DD}", "events_p20250214"),
            ("1 quarter", "{table}_p{YYYY}{MM}{DD}", "events_p20250214"),
            ("1 year", "{table}_p{YYYY}{MM}{DD}", "events_p20250214"),
        ] {
            let d = Template::default_for(&interval(i));
            assert_eq!(d.as_str(), template, "{i}");
            assert_eq!(d.render("events", &t), name, "{i}");
        }
        let d = Template::default_for(&Interval::Integer(1_000_000));
        assert_eq!(d.as_str(), "{table}_p{start}");
        assert_eq!(
            d.render("events", &SlotStart::Integer(2_000_000)),
            "events_p2000000"
        );
    }

    #[test]
    fn defaults_validate_for_their_interval() {
        for unit in ["hour", "day", "week", "month", "quarter", "year"] {
            for count in [1, 2, 3, 5, 7, 12, 24, 168] {
                let i = interval(&format!("{count} {unit}"));
                assert_eq!(Template::default_for(&i).validate_for(&i), Ok(()), "{i}");
            }
        }
        let i = Interval::Integer(10);
        assert_eq!(Template::default_for(&i).validate_for(&i), Ok(()));
    }

    #[test]
    fn exposes_source_and_tokens() {
        let t = tpl("{table}_{YYYY}_{MM}_{YYYY}");
        assert_eq!(t.as_str(), "{table}_{YYYY}_{MM}_{YYYY}");
        assert_eq!(t.to_string(), t.as_str());
        assert_eq!(t.tokens(), vec![Token::Table, Token::Year, Token::Month]);
        assert!(tpl("plain").tokens().is_empty());
        assert_eq!(Token::MonthName.to_string(), "{MON}");
    }

    #[test]
    fn rejects_bad_templates_naming_the_problem() {
        let cases = [
            ("", "empty"),
            ("   ", "empty"),
            ("{table}_{YYYY", "unbalanced '{'"),
            ("{table}_YYYY}", "unbalanced '}'"),
            ("{table}_{{YYYY}}", "unbalanced '{'"),
            ("{table}_{YY{YY}", "unbalanced '{'"),
            ("{table}_{foo}", "unknown token {foo}"),
            ("{}", "unknown token {}"),
            (
                "{table}_{yyyy}",
                "unknown token {yyyy} (did you mean {YYYY}?)",
            ),
            ("{Table}", "(did you mean {table}?)"),
            ("{mon}", "(did you mean {MON}?)"),
        ];
        for (s, needle) in cases {
            let err = s.parse::<Template>().unwrap_err();
            assert!(err.contains(needle), "{s:?}: {err}");
            assert!(err.contains("{table}, {YYYY}, {MM}"), "{s:?}: {err}");
        }
        // {Mm} could be {MM} or {mm}: no guess.
        let err = "{Mm}".parse::<Template>().unwrap_err();
        assert!(!err.contains("did you mean"), "{err}");
    }

    #[test]
    fn validate_rejects_tokens_of_the_wrong_kind() {
        let err = tpl("{table}_{start}")
            .validate_for(&interval("1 month"))
            .unwrap_err();
        assert!(
            err.contains("token {start} is for integer intervals"),
            "{err}"
        );
        assert!(
            err.contains("\"1 month\"") && err.contains("{table}_p{YYYY}{MM}{DD}"),
            "{err}"
        );
        let err = tpl("{table}_{start}_{YYYY}")
            .validate_for(&Interval::Integer(1000))
            .unwrap_err();
        assert!(err.contains("token {YYYY} needs a time interval"), "{err}");
        assert!(err.contains("{table}_p{start}"), "{err}");
        let err = tpl("{table}_x")
            .validate_for(&Interval::Integer(1000))
            .unwrap_err();
        assert!(err.contains("no {start} token"), "{err}");
        let err = tpl("{table}_x")
            .validate_for(&interval("1 day"))
            .unwrap_err();
        assert!(
            err.contains("no slot tokens") && err.contains("{table}_p{YYYY}{MM}{DD}"),
            "{err}"
        );
        assert!(
            tpl("ids_{start}")
                .validate_for(&Interval::Integer(7))
                .is_ok()
        );
    }

    #[test]
    fn validate_requires_tokens_that_tell_slots_apart() {
        let ok = [
            ("{table}_{YYYY}", "1 year"),
            ("{table}_{YYYY}", "12 months"),
            ("{table}_{YYYY}", "4 quarters"),
            ("{table}_{YYYY}q{Q}", "1 quarter"),
            ("{table}_{YYYY}q{Q}", "3 months"),
            ("{table}_{YYYY}h{Q}", "6 months"),
            ("{table}_{YYYY}{MM}", "1 month"),
            ("{table}_{YYYY}{MON}", "5 months"),
            ("{table}_{YYYY}w{WW}", "2 weeks"),
            ("{table}_{YYYY}{MM}{DD}", "1 week"),
            ("{table}_{YYYY}{MM}{DD}", "3 days"),
            ("{table}_{YYYY}w{WW}", "7 days"),
            ("{table}_{YYYY}{MON}{DD}", "1 day"),
            ("{table}_{YYYY}{MM}{DD}", "24 hours"),
            ("{table}_{YYYY}{MM}{DD}{HH}", "1 hour"),
            ("{YYYY}{MM}{DD}{HH}", "7 hours"),
        ];
        for (t, i) in ok {
            assert_eq!(tpl(t).validate_for(&interval(i)), Ok(()), "{t} / {i}");
        }
        let bad = [
            ("{table}_{MM}", "1 month", "lacks {YYYY}"),
            ("{table}_{YYYY}", "1 month", "lacks {MM} (or {MON})"),
            ("{table}_{YYYY}q{Q}", "1 month", "lacks {MM} (or {MON})"),
            (
                "{table}_{YYYY}",
                "1 quarter",
                "lacks {MM} (or {MON} or {Q})",
            ),
            ("{table}_{YYYY}{MM}", "1 day", "lacks {DD}"),
            ("{table}_{YYYY}{DD}", "1 day", "lacks {MM} (or {MON})"),
            ("{table}_{YYYY}{MM}", "1 week", "lacks {DD} (or {WW})"),
            ("{table}_{YYYY}", "1 week", "lacks {WW} (or {MM} and {DD})"),
            ("{table}_{YYYY}w{WW}", "1 day", "lacks {MM} and {DD}"),
            ("{table}_{YYYY}{MM}{DD}", "1 hour", "lacks {HH}"),
            ("{table}_{MM}{DD}", "12 hours", "lacks {YYYY} and {HH}"),
        ];
        for (t, i, needle) in bad {
            let err = tpl(t).validate_for(&interval(i)).unwrap_err();
            assert!(err.contains(needle), "{t} / {i}: {err}");
            assert!(
                err.contains(&format!("cannot tell \"{}\"", interval(i))),
                "{err}"
            );
        }
    }

    const UNITS: [Unit; 6] = [
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Quarter,
        Unit::Year,
    ];
    const SLOT_TOKENS: [&str; 8] = [
        "{YYYY}", "{MM}", "{DD}", "{HH}", "{mm}", "{Q}", "{WW}", "{MON}",
    ];

    proptest! {
        /// Whatever `validate_for` accepts names consecutive grid points distinctly.
        #[test]
        fn accepted_templates_give_distinct_names(
            unit in prop::sample::select(UNITS.to_vec()),
            count in prop::sample::select(vec![1u32, 2, 3, 4, 6, 7, 12, 14, 24, 168]),
            tokens in prop::sample::subsequence(SLOT_TOKENS.to_vec(), 1..=5),
            secs in 631_152_000i64..2_840_140_800,
        ) {
            let template = tpl(&format!("{{table}}_{}", tokens.join("_")));
            let step = TimeStep { count, unit };
            if template.validate_for(&Interval::Time(step)).is_err() {
                return Ok(());
            }
            let start = chrono::DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
            let mut p = step.floor(start);
            let mut names = std::collections::HashSet::new();
            for _ in 0..400 {
                let name = template.render("t", &SlotStart::Time(p));
                prop_assert!(names.insert(name.clone()), "{} repeats {}", template, name);
                p = step.shift(p, 1);
            }
        }
    }
}
