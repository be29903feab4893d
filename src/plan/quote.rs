//! The one place SQL text is built from names and values that came from input.
//! Every identifier pgpart puts in a statement goes through [`ident`]; every literal
//! (list values, bounds) through [`literal`].

/// Quote an identifier the way PostgreSQL's `quote_ident` does when in doubt: always.
/// Always quoting keeps mixed case, keywords and hostile names (`a"; drop table x`) inert.
pub fn ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `schema.name`, both quoted.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", ident(schema), ident(name))
}

/// A string literal. With `standard_conforming_strings` on (the default since 9.1 and
/// enforced by pgpart's session setup) only the quote needs doubling; backslashes are
/// plain characters.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push('\'');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Undo [`ident`]: what PostgreSQL's scanner does with a quoted identifier.
    fn unquote(q: &str, quote: char) -> Option<String> {
        let inner = q.strip_prefix(quote)?.strip_suffix(quote)?;
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == quote {
                // A lone quote inside would end the token early: injection.
                if chars.next() != Some(quote) {
                    return None;
                }
            }
            out.push(c);
        }
        Some(out)
    }

    #[test]
    fn examples() {
        assert_eq!(ident("events"), "\"events\"");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            qualified("public", "Mixed Case"),
            "\"public\".\"Mixed Case\""
        );
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("back\\slash"), "'back\\slash'");
    }

    proptest! {
        #[test]
        fn ident_round_trips_any_string(s in any::<String>()) {
            let q = ident(&s);
            prop_assert_eq!(unquote(&q, '"'), Some(s));
        }

        #[test]
        fn literal_round_trips_any_string(s in any::<String>()) {
            let q = literal(&s);
            prop_assert_eq!(unquote(&q, '\''), Some(s));
        }
    }
}
