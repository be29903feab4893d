//! Everything about a policy that can be judged without the database, turned into
//! parsed values the planner uses. Errors name the field and the fix.

use std::time::Duration;

use super::{ArchiveSpec, KeyEncoding, OnRows, PartitionPolicySpec, RetentionAction};
use crate::error::{Error, Result};
use crate::policy::template::Template;
use crate::policy::units::{Interval, TimeStep, Zone, parse_short_duration};

#[derive(Clone, Debug)]
pub struct ValidPolicy {
    pub schema: String,
    pub table: String,
    pub kind: Kind,
    pub retention: Option<Retention>,
    pub create_default: bool,
    pub on_rows: OnRows,
    pub lock_timeout: Duration,
    pub every: Duration,
    pub adopt_existing: bool,
    pub suspend: bool,
    pub dry_run: bool,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Range(RangePolicy),
    List(Vec<ListItem>),
    Hash { modulus: u32 },
}

#[derive(Clone, Debug)]
pub struct RangePolicy {
    pub interval: Interval,
    pub premake: u32,
    /// Raw `startFrom`: its meaning depends on the key type, known only after observing.
    pub start_from: Option<String>,
    pub zone: Zone,
    pub template: Template,
    /// How the key holds time when it is not a date or timestamp (`keyEncoding`).
    pub key_encoding: Option<KeyEncoding>,
}

#[derive(Clone, Debug)]
pub struct ListItem {
    pub name: String,
    pub values: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Retention {
    pub keep: Keep,
    pub action: RetentionAction,
    pub schema: Option<String>,
    pub archive: Option<ArchiveSpec>,
    pub max_per_pass: u32,
}

impl Retention {
    /// Where a retired partition goes: the schema of MoveToSchema, the archive's URL of
    /// Archive, nothing for Detach and Drop.
    pub fn target(&self) -> Option<String> {
        match self.action {
            RetentionAction::MoveToSchema => self.schema.clone(),
            RetentionAction::Archive => self.archive.as_ref().map(|a| a.url.clone()),
            RetentionAction::Detach | RetentionAction::Drop => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Keep {
    Time(TimeStep),
    Int(i64),
}

pub const DEFAULT_PREMAKE: u32 = 4;
pub const DEFAULT_RETIRE_PER_PASS: u32 = 10;
/// How long one of pgpart's lock requests may queue, and so the longest any other session
/// can wait behind it. Short: pgpart does not queue behind a long holder at all (it waits
/// for it to finish, then asks), and retries a timed-out request (see db::execute).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(20);
pub const DEFAULT_EVERY: Duration = Duration::from_secs(3600);

/// PostgreSQL's identifier limit (NAMEDATALEN - 1).
pub const MAX_IDENT_BYTES: usize = 63;

/// Split `schema.table`; either part may be double-quoted to hold dots or quotes.
pub fn split_table(s: &str) -> Result<(String, String)> {
    let bad = || {
        Error::invalid(
            "spec.table",
            format!(
                "{s:?} is not schema-qualified: write schema.table, e.g. public.events (double-quote names holding dots)"
            ),
        )
    };
    let mut parts = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err(bad()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.push(c);
                chars.next();
            }
        }
        if part.is_empty() || part.len() > MAX_IDENT_BYTES {
            return Err(if part.len() > MAX_IDENT_BYTES {
                Error::invalid(
                    "spec.table",
                    format!("{part:?} is longer than PostgreSQL's 63-byte identifier limit"),
                )
            } else {
                bad()
            });
        }
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(_) => return Err(bad()),
        }
    }
    match <[String; 2]>::try_from(parts) {
        Ok([schema, table]) => Ok((schema, table)),
        Err(_) => Err(bad()),
    }
}

pub fn validate(spec: &PartitionPolicySpec) -> Result<ValidPolicy> {
    let (schema, table) = split_table(&spec.table)?;
    let kind = match (&spec.range, &spec.list, &spec.hash) {
        (Some(r), None, None) => {
            let interval: Interval = r
                .interval
                .parse()
                .map_err(|e| Error::invalid("spec.range.interval", e))?;
            let zone: Zone = match &r.time_zone {
                Some(z) => z
                    .parse()
                    .map_err(|e| Error::invalid("spec.range.timeZone", e))?,
                None => Zone::Named(chrono_tz::UTC),
            };
            let premake = r.premake.unwrap_or(DEFAULT_PREMAKE as i32);
            if !(1..=1000).contains(&premake) {
                return Err(Error::invalid(
                    "spec.range.premake",
                    "must be between 1 and 1000",
                ));
            }
            let template = match &spec.naming {
                Some(n) => n
                    .template
                    .parse()
                    .map_err(|e| Error::invalid("spec.naming.template", e))?,
                None => Template::default_for(&interval),
            };
            template
                .validate_for(&interval)
                .map_err(|e| Error::invalid("spec.naming.template", e))?;
            if let (Some(e), Interval::Integer(_)) = (r.key_encoding, interval) {
                return Err(Error::invalid(
                    "spec.range.keyEncoding",
                    format!(
                        "{}: the key holds time, so spec.range.interval must be \"N unit\", e.g. \"1 day\", not {:?}",
                        e.as_str(),
                        r.interval
                    ),
                ));
            }
            Kind::Range(RangePolicy {
                interval,
                premake: premake as u32,
                start_from: r.start_from.clone(),
                zone,
                template,
                key_encoding: r.key_encoding,
            })
        }
        (None, Some(l), None) => {
            if l.partitions.is_empty() {
                return Err(Error::invalid(
                    "spec.list.partitions",
                    "list at least one partition with a name and values",
                ));
            }
            let mut seen_names = std::collections::BTreeSet::new();
            let mut seen_values = std::collections::BTreeSet::new();
            let mut items = Vec::new();
            for (i, p) in l.partitions.iter().enumerate() {
                let field = format!("spec.list.partitions[{i}]");
                if p.name.is_empty() {
                    return Err(Error::invalid(format!("{field}.name"), "must not be empty"));
                }
                if !seen_names.insert(p.name.clone()) {
                    return Err(Error::invalid(
                        format!("{field}.name"),
                        format!("{:?} is listed twice", p.name),
                    ));
                }
                if p.values.is_empty() {
                    return Err(Error::invalid(
                        format!("{field}.values"),
                        "list at least one value",
                    ));
                }
                for v in &p.values {
                    if !seen_values.insert(v.clone()) {
                        return Err(Error::invalid(
                            format!("{field}.values"),
                            format!("value {v:?} is in two partitions"),
                        ));
                    }
                }
                let name = format!("{table}_{}", p.name);
                if name.len() > MAX_IDENT_BYTES {
                    return Err(Error::invalid(
                        format!("{field}.name"),
                        format!("partition name {name:?} is over 63 bytes: shorten the name"),
                    ));
                }
                items.push(ListItem {
                    name,
                    values: p.values.clone(),
                });
            }
            Kind::List(items)
        }
        (None, None, Some(h)) => {
            if !(1..=1024).contains(&h.modulus) {
                return Err(Error::invalid(
                    "spec.hash.modulus",
                    "must be between 1 and 1024",
                ));
            }
            Kind::Hash {
                modulus: h.modulus as u32,
            }
        }
        _ => {
            return Err(Error::invalid(
                "spec",
                "set exactly one of spec.range, spec.list or spec.hash, matching how the table is partitioned",
            ));
        }
    };

    let retention = match &spec.retention {
        None => None,
        Some(r) => {
            let Kind::Range(range) = &kind else {
                return Err(Error::invalid(
                    "spec.retention",
                    "only range partitions can be retired: remove spec.retention",
                ));
            };
            let keep = match range.interval {
                Interval::Time(_) => Keep::Time(r.keep.parse().map_err(|e| Error::invalid("spec.retention.keep", e))?),
                Interval::Integer(_) => Keep::Int(r.keep.trim().parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::invalid("spec.retention.keep", format!("{:?}: for an integer key give a positive integer distance below max(key)", r.keep))
                })?),
            };
            if r.action == RetentionAction::MoveToSchema {
                match &r.schema {
                    None => {
                        return Err(Error::invalid(
                            "spec.retention.schema",
                            "required when spec.retention.action is MoveToSchema",
                        ));
                    }
                    Some(s) if s.is_empty() || s.len() > MAX_IDENT_BYTES => {
                        return Err(Error::invalid(
                            "spec.retention.schema",
                            "must be a schema name of 1 to 63 bytes",
                        ));
                    }
                    Some(s) if *s == schema => {
                        return Err(Error::invalid(
                            "spec.retention.schema",
                            "must differ from the table's own schema",
                        ));
                    }
                    _ => {}
                }
            }
            let archive = match (r.action, &r.archive) {
                (RetentionAction::Archive, None) => {
                    return Err(Error::invalid(
                        "spec.retention.archive",
                        "required when spec.retention.action is Archive: say where retired partitions are written, e.g. archive: {url: file:///var/lib/pgpart/archive}",
                    ));
                }
                (RetentionAction::Archive, Some(a)) => Some(validate_archive(a)?),
                _ => None,
            };
            let max_per_pass = r.max_per_pass.unwrap_or(DEFAULT_RETIRE_PER_PASS as i32);
            if max_per_pass < 1 {
                return Err(Error::invalid(
                    "spec.retention.maxPerPass",
                    "must be at least 1",
                ));
            }
            Some(Retention {
                keep,
                action: r.action,
                schema: r.schema.clone(),
                archive,
                max_per_pass: max_per_pass as u32,
            })
        }
    };

    let lock_timeout = match &spec.lock_timeout {
        Some(s) => parse_short_duration(s).map_err(|e| Error::invalid("spec.lockTimeout", e))?,
        None => DEFAULT_LOCK_TIMEOUT,
    };
    let every = match &spec.schedule {
        Some(s) => {
            parse_short_duration(&s.every).map_err(|e| Error::invalid("spec.schedule.every", e))?
        }
        None => DEFAULT_EVERY,
    };
    let dp = spec.default_partition.clone().unwrap_or_default();
    if dp.create && matches!(kind, Kind::Hash { .. }) {
        return Err(Error::invalid(
            "spec.defaultPartition.create",
            "a hash-partitioned table can't have a DEFAULT partition (every row has a remainder): remove spec.defaultPartition",
        ));
    }
    if dp.on_rows == OnRows::Repair && !matches!(kind, Kind::Range(_)) {
        return Err(Error::invalid(
            "spec.defaultPartition.onRows",
            "Repair needs spec.range: rows in a list table's default need a list entry; use Report",
        ));
    }

    Ok(ValidPolicy {
        schema,
        table,
        kind,
        retention,
        create_default: dp.create,
        on_rows: dp.on_rows,
        lock_timeout,
        every,
        adopt_existing: spec.adopt_existing,
        suspend: spec.suspend,
        dry_run: spec.dry_run,
    })
}

/// An archive URL pgpart can write to: an absolute directory or a bucket, nothing else.
fn validate_archive(a: &ArchiveSpec) -> Result<ArchiveSpec> {
    let field = "spec.retention.archive.url";
    if let Some(path) = a.url.strip_prefix("file://") {
        if !path.starts_with('/') || path.len() < 2 {
            return Err(Error::invalid(
                field,
                format!(
                    "{:?}: give an absolute directory, e.g. file:///var/lib/pgpart/archive",
                    a.url
                ),
            ));
        }
        if a.endpoint.is_some() || a.region.is_some() {
            return Err(Error::invalid(
                "spec.retention.archive",
                "endpoint and region are for s3:// archives: remove them for a file:// one",
            ));
        }
    } else if let Some(rest) = a.url.strip_prefix("s3://") {
        let bucket = rest.split('/').next().unwrap_or_default();
        if bucket.is_empty() {
            return Err(Error::invalid(
                field,
                format!("{:?}: name the bucket, e.g. s3://archive/pgpart", a.url),
            ));
        }
        if let Some(e) = &a.endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(Error::invalid(
                "spec.retention.archive.endpoint",
                format!("{e:?}: give the store's URL, e.g. http://minio.storage:9000"),
            ));
        }
    } else {
        return Err(Error::invalid(
            field,
            format!(
                "{:?}: must be file:///absolute/dir or s3://bucket[/prefix]",
                a.url
            ),
        ));
    }
    // The retiring mark holds the URL up to a "; " (see plan::action::retiring_mark).
    if a.url.contains(|c: char| c.is_whitespace() || c == ';') {
        return Err(Error::invalid(
            field,
            format!("{:?}: no spaces or semicolons in an archive URL", a.url),
        ));
    }
    Ok(a.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table_forms() {
        assert_eq!(
            split_table("public.events").unwrap(),
            ("public".into(), "events".into())
        );
        assert_eq!(
            split_table("\"my.schema\".\"a\"\"b\"").unwrap(),
            ("my.schema".into(), "a\"b".into())
        );
        for bad in [
            "events",
            "a.b.c",
            ".x",
            "x.",
            "\"open.x",
            &format!("public.{}", "x".repeat(64)),
        ] {
            assert!(split_table(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn archive_urls() {
        let spec = |url: &str, endpoint: Option<&str>| ArchiveSpec {
            url: url.into(),
            endpoint: endpoint.map(Into::into),
            region: None,
        };
        for ok in [
            spec("file:///var/lib/pgpart/archive", None),
            spec("s3://bucket", None),
            spec("s3://bucket/some/prefix", Some("http://minio:9000")),
        ] {
            assert!(validate_archive(&ok).is_ok(), "{ok:?}");
        }
        for (bad, field) in [
            (spec("file://relative", None), "spec.retention.archive.url"),
            (spec("file:///", None), "spec.retention.archive.url"),
            (spec("s3://", None), "spec.retention.archive.url"),
            (spec("ftp://host/x", None), "spec.retention.archive.url"),
            (spec("file:///a b", None), "spec.retention.archive.url"),
            (spec("file:///a;b", None), "spec.retention.archive.url"),
            (
                spec("file:///a", Some("http://x")),
                "spec.retention.archive",
            ),
            (
                spec("s3://b", Some("minio:9000")),
                "spec.retention.archive.endpoint",
            ),
        ] {
            let e = validate_archive(&bad).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{field}: ")), "{bad:?}: {e}");
        }
    }
}
