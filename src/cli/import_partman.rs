//! `pgpart import-partman`: read pg_partman's part_config and print the equivalent
//! PartitionPolicy YAML, so a migration starts from what is running today.

use crate::db::connect::Target;
use crate::error::{Error, Result};
use crate::plan::quote::ident;
use crate::policy::{
    DatabaseRef, DefaultPartitionSpec, KeyEncoding, NamingSpec, OnRows, PartitionPolicy,
    PartitionPolicySpec, RangeSpec, RetentionAction, RetentionSpec, SecretRef,
};

/// pg_partman 4.x interval text (`1 mon`, `7 days`, `01:00:00`, `1000000`) → ours.
pub fn convert_interval(text: &str) -> Option<String> {
    let t = text.trim();
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Some(t.to_string());
    }
    if let Some((h, rest)) = t.split_once(':') {
        // "HH:MM:SS": whole hours only.
        let hours: u32 = h.parse().ok()?;
        return (rest == "00:00" && hours > 0)
            .then(|| format!("{hours} hour{}", if hours == 1 { "" } else { "s" }));
    }
    let (n, unit) = t.split_once(' ')?;
    let n: u32 = n.parse().ok()?;
    let unit = match unit.trim_end_matches('s') {
        "year" => "year",
        "mon" | "month" => "month",
        "day" if n.is_multiple_of(7) => {
            return Some(format!("{} week{}", n / 7, if n == 7 { "" } else { "s" }));
        }
        "day" => "day",
        "hour" => "hour",
        _ => return None,
    };
    Some(if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    })
}

/// pg_partman's datetime_string → our naming template.
fn template(datetime_string: &str) -> Option<String> {
    let suffix = match datetime_string {
        "YYYY" => "{YYYY}",
        "YYYY\"q\"Q" => "{YYYY}q{Q}",
        "YYYY_MM" => "{YYYY}_{MM}",
        "YYYY_MM_DD" => "{YYYY}_{MM}_{DD}",
        "YYYY_MM_DD_HH24MI" => "{YYYY}_{MM}_{DD}_{HH}{mm}",
        "YYYY_MM_DD_HH24MISS" => "{YYYY}_{MM}_{DD}_{HH}{mm}00",
        _ => return None,
    };
    Some(format!("{{table}}_p{suffix}"))
}

fn k8s_name(table: &str) -> String {
    let mut s: String = table
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s = s.trim_matches('-').to_string();
    s.truncate(63);
    s.trim_end_matches('-').to_string()
}

pub async fn import(url: &str, secret: &str) -> Result<()> {
    let client = Target::from_url(url)?.connect().await?;
    let schema: Option<String> = client
        .query_opt("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_partman'", &[])
        .await?
        .map(|r| r.get(0));
    let schema = schema
        .ok_or_else(|| Error::Input("pg_partman is not installed in this database".into()))?;
    // The zone pg_partman's maintenance runs in: the sessions' default (server, database or
    // role setting), not the UTC this session was set to.
    let zone: String = client
        .query_one(
            "SELECT reset_val FROM pg_settings WHERE name = 'TimeZone'",
            &[],
        )
        .await?
        .get(0);
    // The schema name is a catalog value, still quoted like any identifier.
    let sql = format!(
        "SELECT parent_table, partition_interval, premake, retention, retention_schema, retention_keep_table, \
         coalesce(datetime_string, ''), epoch FROM {}.part_config ORDER BY parent_table",
        ident(schema.trim_matches('"'))
    );
    let rows = client.query(&sql, &[]).await?;
    if rows.is_empty() {
        return Err(Error::Input(
            "pg_partman's part_config is empty: nothing to import".into(),
        ));
    }
    for row in rows {
        let table: String = row.get(0);
        let interval_text: String = row.get(1);
        let premake: i32 = row.get(2);
        let retention: Option<String> = row.get(3);
        let retention_schema: Option<String> = row.get(4);
        let keep_table: bool = row.get(5);
        let datetime_string: String = row.get(6);
        // An integer key holding time (pg_partman's `epoch`): pgpart's keyEncoding.
        let key_encoding = match row.get::<_, &str>(7) {
            "none" => None,
            "seconds" => Some(KeyEncoding::EpochSeconds),
            "milliseconds" => Some(KeyEncoding::EpochMillis),
            "microseconds" => Some(KeyEncoding::EpochMicros),
            other => {
                eprintln!(
                    "# skipped {table}: epoch {other:?} has no pgpart keyEncoding (seconds, milliseconds and microseconds do)"
                );
                continue;
            }
        };
        let Some(interval) = convert_interval(&interval_text) else {
            eprintln!("# skipped {table}: interval {interval_text:?} has no pgpart equivalent");
            continue;
        };
        let is_integer = interval.chars().all(|c| c.is_ascii_digit());
        let retention = retention.filter(|r| !r.is_empty()).map(|r| {
            let keep = convert_interval(&r).unwrap_or(r);
            let (action, schema) = match (retention_schema.filter(|s| !s.is_empty()), keep_table) {
                (Some(s), _) => (RetentionAction::MoveToSchema, Some(s)),
                (None, true) => (RetentionAction::Detach, None),
                (None, false) => (RetentionAction::Drop, None),
            };
            RetentionSpec {
                keep,
                action,
                schema,
                archive: None,
                max_per_pass: None,
            }
        });
        let naming = if is_integer {
            None
        } else {
            template(&datetime_string).map(|template| NamingSpec { template })
        };
        let spec = PartitionPolicySpec {
            database: Some(DatabaseRef {
                secret_ref: SecretRef {
                    name: secret.to_string(),
                    namespace: None,
                },
            }),
            table: table.clone(),
            range: Some(RangeSpec {
                interval,
                premake: Some(premake.max(1)),
                start_from: None,
                time_zone: (!is_integer).then(|| zone.clone()),
                key_encoding,
            }),
            list: None,
            hash: None,
            retention,
            // pg_partman 4.x always makes a DEFAULT partition; keep it, and say when rows land there.
            default_partition: Some(DefaultPartitionSpec {
                create: true,
                on_rows: OnRows::Report,
            }),
            naming,
            schedule: None,
            lock_timeout: None,
            // Partitions pg_partman made match the grid: let retention treat them as pgpart's own.
            adopt_existing: true,
            suspend: false,
            dry_run: false,
        };
        let mut policy = PartitionPolicy::new(&k8s_name(&table), spec);
        policy.metadata.annotations = Some(
            [(
                "pgpart.io/imported-from".to_string(),
                format!("pg_partman part_config {table}"),
            )]
            .into(),
        );
        println!("---");
        print!(
            "{}",
            serde_yaml_ng::to_string(&policy).map_err(|e| Error::Input(e.to_string()))?
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        for (pm, ours) in [
            ("1 mon", Some("1 month")),
            ("3 mons", Some("3 months")),
            ("1 day", Some("1 day")),
            ("7 days", Some("1 week")),
            ("1 year", Some("1 year")),
            ("01:00:00", Some("1 hour")),
            ("00:30:00", None),
            ("1000000", Some("1000000")),
            ("24 months", Some("24 months")),
        ] {
            assert_eq!(convert_interval(pm).as_deref(), ours, "{pm}");
        }
        assert_eq!(
            k8s_name("public.License_Heartbeats"),
            "public-license-heartbeats"
        );
        assert_eq!(template("YYYY_MM").as_deref(), Some("{table}_p{YYYY}_{MM}"));
    }
}
