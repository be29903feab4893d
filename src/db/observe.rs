//! Observation: ONE catalog query per database per pass, whatever the number of tables.
//! Row counts of DEFAULT partitions and max(key) of integer range tables are read in the
//! same statement through `query_to_xml`, which runs a server-side-quoted query per table.

use serde::Deserialize;
use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::plan::action::OWNER_MARK;
use crate::plan::bounds::{parse_bound, parse_key_value};
use crate::plan::model::{Bound, DefaultRows, KeyKind, ObservedPartition, ObservedTable, Strategy};

const OBSERVE_SQL: &str = r#"
WITH parents AS (
  SELECT c.oid, n.nspname, c.relname, pt.partstrat, pt.partdefid,
         (SELECT coalesce(json_agg(a.attname ORDER BY k.ord), '[]')
            FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, ord)
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key_columns,
         (SELECT coalesce(json_agg(coalesce(format_type(a.atttypid, a.atttypmod), 'expression') ORDER BY k.ord), '[]')
            FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY k(attnum, ord)
            LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key_types,
         (SELECT a.attname FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum = pt.partattrs[0] AND pt.partnatts = 1 AND pt.partattrs[0] <> 0) AS key1,
         (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
           WHERE a.attrelid = c.oid AND a.attnum = pt.partattrs[0] AND pt.partnatts = 1 AND pt.partattrs[0] <> 0) AS key1_type
    FROM pg_partitioned_table pt
    JOIN pg_class c ON c.oid = pt.partrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE ($1::text IS NULL OR (n.nspname = $1 AND c.relname = $2))
),
children AS (
  SELECT i.inhparent AS parent,
         json_agg(json_build_object(
           'schema', cn.nspname, 'name', c.relname,
           'bound', pg_get_expr(c.relpartbound, c.oid),
           'comment', d.description,
           'detach_pending', i.inhdetachpending,
           'rows', greatest(c.reltuples, 0)::bigint,
           'bytes', CASE WHEN $3 THEN pg_total_relation_size(c.oid) ELSE 0 END)) AS partitions
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_namespace cn ON cn.oid = c.relnamespace
    LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
   WHERE i.inhparent IN (SELECT oid FROM parents)
   GROUP BY i.inhparent
)
SELECT json_build_object(
  'schema', p.nspname,
  'name', p.relname,
  'strategy', p.partstrat::text,
  'key_columns', p.key_columns,
  'key_types', p.key_types,
  'partitions', coalesce(ch.partitions, '[]'),
  'default_stats', (
    SELECT query_to_xml(CASE WHEN p.key1 IS NOT NULL
             THEN format('SELECT count(*) AS c, min(%1$I)::text AS lo, max(%1$I)::text AS hi FROM %2$I.%3$I', p.key1, dn.nspname, dc.relname)
             ELSE format('SELECT count(*) AS c FROM %I.%I', dn.nspname, dc.relname) END, false, true, '')::text
      FROM pg_class dc
      JOIN pg_namespace dn ON dn.oid = dc.relnamespace
     WHERE dc.oid = p.partdefid),
  'max_key', CASE WHEN p.partstrat = 'r' AND p.key1_type IN ('smallint', 'integer', 'bigint') THEN
      query_to_xml(format('SELECT max(%I)::text AS m FROM %I.%I', p.key1, p.nspname, p.relname), false, true, '')::text END
)
FROM parents p
LEFT JOIN children ch ON ch.parent = p.oid
ORDER BY p.nspname, p.relname
"#;

#[derive(Deserialize)]
struct RawTable {
    schema: String,
    name: String,
    strategy: String,
    key_columns: Vec<Option<String>>,
    key_types: Vec<String>,
    partitions: Vec<RawPartition>,
    default_stats: Option<String>,
    max_key: Option<String>,
}

#[derive(Deserialize)]
struct RawPartition {
    schema: String,
    name: String,
    bound: String,
    comment: Option<String>,
    detach_pending: bool,
    rows: i64,
    bytes: i64,
}

/// The text of `<tag>…</tag>` in query_to_xml output (values are plain numbers and dates).
fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_string())
}

pub struct Observation {
    pub server_version_num: i32,
    pub tables: Vec<ObservedTable>,
}

impl Observation {
    pub fn table(&self, schema: &str, name: &str) -> Option<&ObservedTable> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }
}

/// Observe every partitioned table of the database, or just `only` (schema, table).
pub async fn observe(
    client: &Client,
    only: Option<(&str, &str)>,
    with_sizes: bool,
) -> Result<Observation> {
    let (schema, name) = match only {
        Some((s, n)) => (Some(s), Some(n)),
        None => (None, None),
    };
    let rows = client
        .query(OBSERVE_SQL, &[&schema, &name, &with_sizes])
        .await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        let json: serde_json::Value = row.get(0);
        let raw: RawTable = serde_json::from_value(json)
            .map_err(|e| Error::Database(format!("unexpected catalog row: {e}")))?;
        tables.push(convert(raw)?);
    }
    let v: String = client
        .query_one("SHOW server_version_num", &[])
        .await?
        .get(0);
    let server_version_num = v
        .parse()
        .map_err(|_| Error::Database(format!("unexpected server_version_num {v:?}")))?;
    Ok(Observation {
        server_version_num,
        tables,
    })
}

fn convert(raw: RawTable) -> Result<ObservedTable> {
    let strategy = match raw.strategy.as_str() {
        "r" => Strategy::Range,
        "l" => Strategy::List,
        "h" => Strategy::Hash,
        other => {
            return Err(Error::Database(format!(
                "unknown partition strategy {other:?}"
            )));
        }
    };
    let key_kind = match (strategy, raw.key_types.as_slice()) {
        (Strategy::Range, [t]) if raw.key_columns.first().is_some_and(|c| c.is_some()) => {
            KeyKind::from_sql_type(t)
        }
        _ => None,
    };
    let partitions = raw
        .partitions
        .into_iter()
        .map(|p| ObservedPartition {
            bound: parse_bound(&p.bound, key_kind).unwrap_or(Bound::RangeOther(p.bound.clone())),
            managed: p.comment.as_deref() == Some(OWNER_MARK),
            schema: p.schema,
            name: p.name,
            detach_pending: p.detach_pending,
            estimated_rows: p.rows,
            bytes: p.bytes,
        })
        .collect();
    let mut default_rows = DefaultRows::default();
    if let Some(xml) = &raw.default_stats {
        default_rows.rows = xml_field(xml, "c")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        if let Some(kind) = key_kind {
            default_rows.min_key =
                xml_field(xml, "lo").and_then(|v| parse_key_value(&v, kind).ok());
            default_rows.max_key =
                xml_field(xml, "hi").and_then(|v| parse_key_value(&v, kind).ok());
        }
    }
    let max_key = raw
        .max_key
        .as_deref()
        .and_then(|x| xml_field(x, "m"))
        .and_then(|m| m.parse().ok());
    Ok(ObservedTable {
        schema: raw.schema,
        name: raw.name,
        strategy,
        key_columns: raw.key_columns,
        key_types: raw.key_types,
        partitions,
        default_rows,
        max_key,
    })
}
