//! Partition names from a template such as `"{table}_p{YYYY}{MM}{DD}"` (parsed and checked
//! against the interval in `policy::template`): names are derivable from the slot alone, so the
//! planner recognises existing partitions.

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::policy::template::{Piece, Template, Token};

/// The start of the slot a partition covers: a local time or an integer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotStart {
    Time(NaiveDateTime),
    Integer(i64),
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
    /// The partition name for the slot starting at `start`. Total: tokens that do not apply
    /// to the kind of start (time tokens for an integer start, `{start}` for a time start)
    /// render as "", which [`Template::validate_for`] rules out for real policies.
    pub fn render(&self, table: &str, start: &SlotStart) -> String {
        let mut out = String::new();
        for piece in self.pieces() {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::units::{Interval, TimeStep, Unit};
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
