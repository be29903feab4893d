//! `pgpart status`: what the database holds, no policy needed.

use serde_json::json;

use super::Output;
use crate::db::connect::Target;
use crate::db::observe::observe;
use crate::error::{Error, Result};
use crate::plan::bounds::display_key_value;
use crate::plan::model::{Bound, KeyKind};
use crate::policy::validate::split_table;

pub async fn status(url: &str, table: Option<&str>, output: Output) -> Result<()> {
    let target = Target::from_url(url)?;
    let only = table
        .map(split_table)
        .transpose()
        .map_err(|e| Error::Input(format!("--table: {e}")))?;
    let client = target.connect().await?;
    let observed = observe(&client, only.as_ref().map(std::slice::from_ref), &[], true).await?;
    if let (Some(t), true) = (table, observed.tables.is_empty()) {
        return Err(Error::TableMissing {
            table: t.to_string(),
        });
    }
    let mut docs = Vec::new();
    for t in &observed.tables {
        let kind = match t.key_types.as_slice() {
            [k] => KeyKind::from_sql_type(k),
            _ => None,
        };
        let show = |b: &Bound| match (b, kind) {
            (Bound::Range { from, to }, Some(k)) => format!(
                "[{}, {})",
                display_key_value(*from, k),
                display_key_value(*to, k)
            ),
            (Bound::RangeOther(s), _) => s.clone(),
            (Bound::List(v), _) => format!(
                "IN ({})",
                v.iter()
                    .map(|x| x
                        .as_deref()
                        .map(crate::plan::quote::literal)
                        .unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Bound::Hash { modulus, remainder }, _) => {
                format!("modulus {modulus} remainder {remainder}")
            }
            (Bound::Default, _) => "DEFAULT".into(),
            _ => "?".into(),
        };
        let mut parts: Vec<_> = t.partitions.iter().collect();
        parts.sort_by(|a, b| match (&a.bound, &b.bound) {
            (Bound::Range { from: x, .. }, Bound::Range { from: y, .. }) => x.cmp(y),
            _ => a.name.cmp(&b.name),
        });
        let ranges: Vec<_> = parts
            .iter()
            .filter_map(|p| match p.bound {
                Bound::Range { from, to } => Some((from, to)),
                _ => None,
            })
            .collect();
        let gaps: Vec<String> = match kind {
            Some(k) => ranges
                .windows(2)
                .filter(|w| w[0].1 < w[1].0)
                .map(|w| {
                    format!(
                        "[{}, {})",
                        display_key_value(w[0].1, k),
                        display_key_value(w[1].0, k)
                    )
                })
                .collect(),
            None => Vec::new(),
        };
        match output {
            Output::Text => {
                println!(
                    "{}.{}  PARTITION BY {} ({})  {} partitions, {} rows in default",
                    t.schema,
                    t.name,
                    t.strategy.as_str().to_uppercase(),
                    t.key_columns.iter().map(|c| c.clone().unwrap_or_else(|| "(expression)".into())).collect::<Vec<_>>().join(", "),
                    t.partitions.len(),
                    t.default_rows.rows
                );
                for p in &parts {
                    println!(
                        "  {:<40} {:<56} {:>10} {:>12} rows{}{}",
                        p.name,
                        show(&p.bound),
                        human_bytes(p.bytes),
                        p.estimated_rows,
                        if p.managed { "  pgpart" } else { "" },
                        if p.detach_pending { "  DETACH PENDING" } else { "" }
                    );
                }
                for g in &gaps {
                    println!("  gap: no partition for {g}");
                }
                // What a crash (or an earlier version) left: the next apply finishes it.
                if t.default_guard {
                    println!(
                        "  default guard: a CHECK an earlier pgpart left on the default refuses rows; the next apply removes it"
                    );
                }
                for o in &t.orphans {
                    println!(
                        "  hidden rows: {o} is a standalone table a killed repair left; the next apply puts its rows back"
                    );
                }
                for (name, comment) in &t.retiring {
                    println!("  retiring: {name} ({comment}); the next apply finishes it");
                }
            }
            Output::Json => docs.push(json!({
                "table": format!("{}.{}", t.schema, t.name),
                "strategy": t.strategy.as_str(),
                "defaultPartitionRows": t.default_rows.rows,
                "gaps": gaps,
                "defaultGuard": t.default_guard,
                "hiddenRowTables": t.orphans,
                "retiring": t.retiring.iter().map(|(n, _)| n).collect::<Vec<_>>(),
                "partitions": parts.iter().map(|p| json!({
                    "name": p.name, "bound": show(&p.bound), "bytes": p.bytes,
                    "estimatedRows": p.estimated_rows, "managed": p.managed, "detachPending": p.detach_pending,
                })).collect::<Vec<_>>(),
            })),
        }
    }
    if output == Output::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&docs).unwrap_or_default()
        );
    }
    Ok(())
}

fn human_bytes(b: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
