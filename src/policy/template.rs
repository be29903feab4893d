//! Partition-name templates such as `"{table}_p{YYYY}{MM}{DD}"`: their tokens, parsing and
//! the check that a template tells every slot of the policy's interval apart (so the planner
//! can recognise existing partitions by name). Rendering a name is the planner's
//! (`plan::naming`).

use std::fmt;
use std::str::FromStr;

use crate::policy::units::{Interval, TimeStep, Unit};

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

/// A template's parts, in order: literal text and tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Literal(String),
    Token(Token),
}

/// A parsed partition-name template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
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

    /// Its parts in order, for rendering.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
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

    fn tpl(s: &str) -> Template {
        s.parse().unwrap()
    }

    fn interval(s: &str) -> Interval {
        s.parse().unwrap()
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
}
