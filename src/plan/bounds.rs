//! Reading and writing partition bounds.
//!
//! Reads `pg_get_expr(relpartbound, oid)` as PostgreSQL renders it with the session
//! TimeZone set to UTC: `FOR VALUES FROM ('2025-01-01 00:00:00+00') TO (MAXVALUE)`,
//! `FOR VALUES IN ('de', NULL)`, `FOR VALUES WITH (modulus 8, remainder 3)`, `DEFAULT`.

use chrono::{NaiveDate, NaiveDateTime};

use super::model::{Bound, KeyKind, KeyValue};
use crate::plan::quote;

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Num(String),
    Open,
    Close,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            ' ' | '\n' | '\t' => {
                chars.next();
            }
            '(' => {
                chars.next();
                out.push(Token::Open);
            }
            ')' => {
                chars.next();
                out.push(Token::Close);
            }
            ',' => {
                chars.next();
                out.push(Token::Comma);
            }
            '\'' => {
                chars.next();
                let mut v = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            v.push('\'');
                        }
                        Some('\'') => break,
                        Some(ch) => v.push(ch),
                        None => return Err(format!("unterminated string in bound {s:?}")),
                    }
                }
                // A cast may follow a literal (`'x'::text`); bounds carry none, but skip one safely.
                if chars.peek() == Some(&':') {
                    while chars.peek().is_some_and(|c| !matches!(c, ',' | ')')) {
                        chars.next();
                    }
                }
                out.push(Token::Str(v));
            }
            c if c.is_ascii_digit() || c == '-' || c == '.' => {
                let mut v = String::new();
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '+'))
                {
                    v.push(chars.next().unwrap_or_default());
                }
                out.push(Token::Num(v));
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut v = String::new();
                while chars
                    .peek()
                    .is_some_and(|c| c.is_alphanumeric() || *c == '_')
                {
                    v.push(chars.next().unwrap_or_default());
                }
                out.push(Token::Word(v.to_ascii_uppercase()));
            }
            other => return Err(format!("unexpected {other:?} in bound {s:?}")),
        }
    }
    Ok(out)
}

/// A value inside a bound list: text, or MINVALUE/MAXVALUE/NULL.
#[derive(Clone, Debug, PartialEq)]
enum Raw {
    Value(String),
    Min,
    Max,
    Null,
}

fn parse_list(tokens: &[Token], at: &mut usize) -> Result<Vec<Raw>, String> {
    if tokens.get(*at) != Some(&Token::Open) {
        return Err("expected (".into());
    }
    *at += 1;
    let mut values = Vec::new();
    loop {
        let v = match tokens.get(*at) {
            Some(Token::Str(s)) | Some(Token::Num(s)) => Raw::Value(s.clone()),
            Some(Token::Word(w)) if w == "MINVALUE" => Raw::Min,
            Some(Token::Word(w)) if w == "MAXVALUE" => Raw::Max,
            Some(Token::Word(w)) if w == "NULL" => Raw::Null,
            Some(Token::Word(w)) if w == "TRUE" || w == "FALSE" => Raw::Value(w.to_lowercase()),
            other => return Err(format!("unexpected {other:?}")),
        };
        values.push(v);
        *at += 1;
        match tokens.get(*at) {
            Some(Token::Comma) => *at += 1,
            Some(Token::Close) => {
                *at += 1;
                return Ok(values);
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
}

fn expect_word(tokens: &[Token], at: &mut usize, word: &str) -> Result<(), String> {
    match tokens.get(*at) {
        Some(Token::Word(w)) if w == word => {
            *at += 1;
            Ok(())
        }
        other => Err(format!("expected {word}, found {other:?}")),
    }
}

/// Parse a bound. `key` is the kind of a single-column range key (None otherwise).
pub fn parse_bound(text: &str, key: Option<KeyKind>) -> Result<Bound, String> {
    let tokens = tokenize(text)?;
    let mut at = 0;
    if tokens.first() == Some(&Token::Word("DEFAULT".into())) {
        return Ok(Bound::Default);
    }
    expect_word(&tokens, &mut at, "FOR")?;
    expect_word(&tokens, &mut at, "VALUES")?;
    match tokens.get(at) {
        Some(Token::Word(w)) if w == "FROM" => {
            at += 1;
            let from = parse_list(&tokens, &mut at)?;
            expect_word(&tokens, &mut at, "TO")?;
            let to = parse_list(&tokens, &mut at)?;
            let single = |raw: &[Raw]| -> Option<KeyValue> {
                match (raw, key) {
                    ([Raw::Min], Some(_)) => Some(KeyValue::Min),
                    ([Raw::Max], Some(_)) => Some(KeyValue::Max),
                    ([Raw::Value(v)], Some(kind)) => parse_key_value(v, kind).ok(),
                    _ => None,
                }
            };
            Ok(match (single(&from), single(&to)) {
                (Some(from), Some(to)) => Bound::Range { from, to },
                _ => Bound::RangeOther(text.to_string()),
            })
        }
        Some(Token::Word(w)) if w == "IN" => {
            at += 1;
            let values = parse_list(&tokens, &mut at)?;
            Ok(Bound::List(
                values
                    .into_iter()
                    .map(|v| match v {
                        Raw::Value(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ))
        }
        Some(Token::Word(w)) if w == "WITH" => {
            at += 1;
            let mut modulus = None;
            let mut remainder = None;
            if tokens.get(at) != Some(&Token::Open) {
                return Err(format!("expected ( in {text:?}"));
            }
            at += 1;
            while let Some(Token::Word(w)) = tokens.get(at) {
                let n = match tokens.get(at + 1) {
                    Some(Token::Num(n)) => n.parse::<u32>().map_err(|e| e.to_string())?,
                    other => return Err(format!("expected a number, found {other:?}")),
                };
                match w.as_str() {
                    "MODULUS" => modulus = Some(n),
                    "REMAINDER" => remainder = Some(n),
                    _ => return Err(format!("unexpected {w} in {text:?}")),
                }
                at += 2;
                if tokens.get(at) == Some(&Token::Comma) {
                    at += 1;
                }
            }
            match (modulus, remainder) {
                (Some(modulus), Some(remainder)) => Ok(Bound::Hash { modulus, remainder }),
                _ => Err(format!("incomplete hash bound {text:?}")),
            }
        }
        other => Err(format!("unexpected {other:?} in bound {text:?}")),
    }
}

/// A key value as PostgreSQL prints it (session TimeZone UTC, DateStyle ISO).
pub fn parse_key_value(text: &str, kind: KeyKind) -> Result<KeyValue, String> {
    let t = text.trim();
    match t {
        "-infinity" => return Ok(KeyValue::Min),
        "infinity" => return Ok(KeyValue::Max),
        _ => {}
    }
    match kind.column() {
        KeyKind::Int { .. } | KeyKind::Epoch { .. } => t
            .parse::<i64>()
            .map(KeyValue::Int)
            .map_err(|e| format!("{t:?}: {e}")),
        KeyKind::Uuid | KeyKind::Uuidv7 => parse_uuid(t)
            .map(KeyValue::Uuid)
            .ok_or_else(|| format!("{t:?}: not a uuid")),
        KeyKind::Date => NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(|d| KeyValue::Time(d.and_time(chrono::NaiveTime::MIN)))
            .map_err(|e| format!("{t:?}: {e}")),
        KeyKind::Timestamp => parse_naive(t).map(KeyValue::Time),
        KeyKind::Timestamptz => {
            // Printed in UTC as `2025-01-01 00:00:00+00`; keep the wall time, drop the offset.
            let (wall, offset) = split_offset(t);
            if !matches!(offset, "" | "+00" | "+00:00" | "Z") {
                return Err(format!(
                    "{t:?}: expected a UTC offset; set the session TimeZone to UTC"
                ));
            }
            parse_naive(wall).map(KeyValue::Time)
        }
    }
}

/// `0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b` (hyphens optional, any case) as a 128-bit number.
fn parse_uuid(t: &str) -> Option<u128> {
    let hex: String = t.chars().filter(|c| *c != '-').collect();
    (hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| u128::from_str_radix(&hex, 16).ok())
        .flatten()
}

/// A uuid as PostgreSQL prints it.
fn format_uuid(u: u128) -> String {
    let h = format!("{u:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn split_offset(t: &str) -> (&str, &str) {
    // The offset starts at the last '+' or '-' after the time part.
    match t.rfind(['+', '-']) {
        Some(i) if i > 10 => (&t[..i], &t[i..]),
        _ => (t, ""),
    }
}

fn parse_naive(t: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| {
            NaiveDate::parse_from_str(t, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN))
        })
        .map_err(|e| format!("{t:?}: {e}"))
}

/// The SQL literal for a range bound value of this key kind.
pub fn render_key_value(v: KeyValue, kind: KeyKind) -> String {
    match v {
        KeyValue::Min => "MINVALUE".into(),
        KeyValue::Max => "MAXVALUE".into(),
        KeyValue::Int(i) => i.to_string(),
        KeyValue::Uuid(u) => quote::literal(&format_uuid(u)),
        KeyValue::Time(t) => quote::literal(&match kind {
            KeyKind::Date => t.format("%Y-%m-%d").to_string(),
            KeyKind::Timestamptz => t.format("%Y-%m-%d %H:%M:%S+00").to_string(),
            _ => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        }),
    }
}

/// Human form for status and messages; an encoded key (`keyEncoding`) as the time it holds.
pub fn display_key_value(v: KeyValue, kind: KeyKind) -> String {
    if let Some(t) = kind.decode(v) {
        let format = if t.timestamp_subsec_micros() == 0 {
            "%Y-%m-%dT%H:%M:%SZ"
        } else {
            "%Y-%m-%dT%H:%M:%S%.6fZ"
        };
        return t.format(format).to_string();
    }
    match v {
        KeyValue::Min => "MINVALUE".into(),
        KeyValue::Max => "MAXVALUE".into(),
        KeyValue::Int(i) => i.to_string(),
        KeyValue::Uuid(u) => format_uuid(u),
        KeyValue::Time(t) => match kind {
            KeyKind::Date => t.format("%Y-%m-%d").to_string(),
            KeyKind::Timestamptz => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            _ => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> KeyValue {
        KeyValue::Time(parse_naive(s).unwrap())
    }
    const BIG: KeyKind = KeyKind::Int {
        min: i64::MIN,
        max: i64::MAX,
    };

    #[test]
    fn range_forms() {
        assert_eq!(
            parse_bound(
                "FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')",
                Some(KeyKind::Timestamptz)
            ),
            Ok(Bound::Range {
                from: ts("2025-01-01 00:00:00"),
                to: ts("2025-02-01 00:00:00")
            })
        );
        assert_eq!(
            parse_bound(
                "FOR VALUES FROM (MINVALUE) TO ('2025-01-01')",
                Some(KeyKind::Date)
            ),
            Ok(Bound::Range {
                from: KeyValue::Min,
                to: ts("2025-01-01 00:00:00")
            })
        );
        assert_eq!(
            parse_bound(
                "FOR VALUES FROM ('2025-03-30 01:00:00.5') TO (MAXVALUE)",
                Some(KeyKind::Timestamp)
            ),
            Ok(Bound::Range {
                from: ts("2025-03-30 01:00:00.5"),
                to: KeyValue::Max
            })
        );
        assert_eq!(
            parse_bound("FOR VALUES FROM ('-1000') TO (0)", Some(BIG)),
            Ok(Bound::Range {
                from: KeyValue::Int(-1000),
                to: KeyValue::Int(0)
            })
        );
        assert_eq!(
            parse_bound("FOR VALUES FROM ('a', 1) TO ('b', 2)", None),
            Ok(Bound::RangeOther(
                "FOR VALUES FROM ('a', 1) TO ('b', 2)".into()
            ))
        );
    }

    #[test]
    fn other_forms() {
        assert_eq!(parse_bound("DEFAULT", None), Ok(Bound::Default));
        assert_eq!(
            parse_bound("FOR VALUES IN ('de', 'it''s', NULL)", None),
            Ok(Bound::List(vec![
                Some("de".into()),
                Some("it's".into()),
                None
            ]))
        );
        assert_eq!(
            parse_bound("FOR VALUES IN (1, 2)", None),
            Ok(Bound::List(vec![Some("1".into()), Some("2".into())]))
        );
        assert_eq!(
            parse_bound("FOR VALUES WITH (modulus 8, remainder 3)", None),
            Ok(Bound::Hash {
                modulus: 8,
                remainder: 3
            })
        );
        assert!(parse_bound("FOR VALUES FROM ('x'", None).is_err());
    }

    #[test]
    fn render_round_trips() {
        for (kind, text) in [
            (KeyKind::Timestamptz, "2024-02-29 23:00:00+00"),
            (KeyKind::Timestamp, "2024-02-29 23:00:00"),
            (KeyKind::Date, "2024-02-29"),
            (BIG, "-42"),
        ] {
            let v = parse_key_value(text, kind).unwrap();
            assert_eq!(render_key_value(v, kind).trim_matches('\''), text);
        }
        assert_eq!(
            parse_key_value("infinity", KeyKind::Date),
            Ok(KeyValue::Max)
        );
        assert!(parse_key_value("2025-01-01 00:00:00+01", KeyKind::Timestamptz).is_err());
    }

    #[test]
    fn uuid_bounds_round_trip_and_encoded_keys_show_as_time() {
        // 2026-11-01T00:00:00Z = 1793491200000 ms = 0x01a1_9467_e800.
        let nov = KeyValue::Uuid(0x01a1_9467_e800u128 << 80);
        let text = "FOR VALUES FROM ('01a19467-e800-0000-0000-000000000000') TO (MAXVALUE)";
        assert_eq!(
            parse_bound(text, Some(KeyKind::Uuid)),
            Ok(Bound::Range {
                from: nov,
                to: KeyValue::Max
            })
        );
        assert_eq!(
            render_key_value(nov, KeyKind::Uuidv7),
            "'01a19467-e800-0000-0000-000000000000'"
        );
        assert_eq!(
            display_key_value(nov, KeyKind::Uuidv7),
            "2026-11-01T00:00:00Z"
        );
        assert_eq!(
            display_key_value(nov, KeyKind::Uuid),
            "01a19467-e800-0000-0000-000000000000"
        );
        assert!(parse_key_value("01a18a6e-2c00", KeyKind::Uuid).is_err());
        let millis = KeyKind::Int {
            min: i64::MIN,
            max: i64::MAX,
        }
        .encoded(crate::policy::KeyEncoding::EpochMillis)
        .unwrap();
        let v = parse_key_value("1793491200123", millis).unwrap();
        assert_eq!(v, KeyValue::Int(1_793_491_200_123));
        assert_eq!(render_key_value(v, millis), "1793491200123");
        assert_eq!(display_key_value(v, millis), "2026-11-01T00:00:00.123000Z");
    }
}
