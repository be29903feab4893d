//! Observation: ONE catalog query per database per pass, whatever the number of tables.
//! Row counts of DEFAULT partitions and max(key) of integer range tables are read in the
//! same statement through `query_to_xml`, which runs a server-side-quoted query per table.

use serde::Deserialize;
use tokio_postgres::Client;

use crate::db::quote::{ident, qualified};
use crate::error::{Error, Result};
use crate::plan::action::{OWNER_MARK, RETIRING_MARK};
use crate::plan::bounds::{parse_bound, parse_key_value, render_key_value};
use crate::plan::model::{
    Bound, DefaultRows, KeyKind, KeyValue, ObservedPartition, ObservedTable, Strategy,
};
use crate::policy::ValidPolicy;

const OBSERVE_SQL: &str = r#"
WITH parents AS (
  SELECT c.oid, c.relnamespace, n.nspname, c.relname, pt.partstrat, pt.partdefid,
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
   WHERE ($1::text[] IS NULL OR (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[])))
),
children AS (
  SELECT i.inhparent AS parent,
         json_agg(json_build_object(
           'schema', cn.nspname, 'name', c.relname,
           'bound', pg_get_expr(c.relpartbound, 0),
           'comment', d.description,
           'owned', EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.conname = 'pgpart_managed'),  -- action::OWNER_CONSTRAINT
           'detach_pending', i.inhdetachpending,
           'rows', greatest(c.reltuples, 0)::bigint,
           'bytes', CASE WHEN $3 THEN pg_total_relation_size(c.oid) ELSE 0 END)) AS partitions,
         md5(string_agg(i.inhrelid::text || ':' || coalesce(pg_get_expr(c.relpartbound, 0), '') || ':'
                        || i.inhdetachpending::text || ':' || coalesce(d.description, ''), ',' ORDER BY i.inhrelid)) AS fingerprint
    FROM pg_inherits i
    JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_namespace cn ON cn.oid = c.relnamespace
    LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
   WHERE i.inhparent IN (SELECT oid FROM parents)
   GROUP BY i.inhparent
),
retiring AS (
  SELECT r.relnamespace AS ns,
         json_agg(json_build_array(r.relname, d.description)) AS items
    FROM pg_description d
    JOIN pg_class r ON r.oid = d.objoid
   WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0
     AND d.description LIKE 'pgpart: retiring partition of %'
     AND r.relkind = 'r' AND NOT r.relispartition
   GROUP BY r.relnamespace
)
SELECT json_build_object(
  'schema', p.nspname,
  'name', p.relname,
  'strategy', p.partstrat::text,
  'key_columns', p.key_columns,
  'key_types', p.key_types,
  'partitions', coalesce(ch.partitions, '[]'),
  'fingerprint', coalesce(ch.fingerprint, ''),
  'retiring', coalesce(rt.items, '[]'),
  -- action::DEFAULT_GUARDS, left by earlier versions of pgpart
  'default_guard', EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = p.partdefid
                             AND k.conname IN ('pgpart_default_guard', 'pgpart_default_guard_next')),
  'referenced_by', (SELECT coalesce(json_agg(DISTINCT rn.nspname || '.' || r.relname), '[]')
                      FROM pg_constraint k
                      JOIN pg_class r ON r.oid = k.conrelid
                      JOIN pg_namespace rn ON rn.oid = r.relnamespace
                     WHERE k.contype = 'f' AND k.confrelid = p.oid),
  -- standalone children of a killed repair in earlier versions: action::BOUND_CHECK and OWNER_MARK,
  -- with the parent's columns
  'orphans', (SELECT coalesce(json_agg(r.relname ORDER BY r.relname), '[]')
                FROM pg_class r
                JOIN pg_constraint k ON k.conrelid = r.oid AND k.conname = 'pgpart_bound'
               WHERE r.relnamespace = p.relnamespace AND r.relkind = 'r' AND NOT r.relispartition
                 AND obj_description(r.oid, 'pg_class') = 'pgpart: managed partition'
                 AND (SELECT array_agg(a.attname::text || ':' || a.atttypid ORDER BY a.attnum) FROM pg_attribute a
                       WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped)
                   = (SELECT array_agg(a.attname::text || ':' || a.atttypid ORDER BY a.attnum) FROM pg_attribute a
                       WHERE a.attrelid = p.oid AND a.attnum > 0 AND NOT a.attisdropped)),
  'default_stats', (
    SELECT query_to_xml(CASE WHEN p.key1 IS NOT NULL
             THEN format('SELECT count(*) AS c, min(%1$I)::text AS lo, max(%1$I)::text AS hi FROM %2$I.%3$I', p.key1, dn.nspname, dc.relname)
             ELSE format('SELECT count(*) AS c FROM %I.%I', dn.nspname, dc.relname) END, false, true, '')::text
      FROM pg_class dc
      JOIN pg_namespace dn ON dn.oid = dc.relnamespace
     WHERE dc.oid = p.partdefid),
  'max_key', CASE WHEN p.partstrat = 'r' AND p.key1_type IN ('smallint', 'integer', 'bigint') THEN
      query_to_xml(format('SELECT max(%I)::text AS m FROM %I.%I WHERE tableoid <> %s', p.key1, p.nspname, p.relname, p.partdefid), false, true, '')::text END
)
FROM parents p
LEFT JOIN children ch ON ch.parent = p.oid
LEFT JOIN retiring rt ON rt.ns = p.relnamespace
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
    fingerprint: String,
    retiring: Vec<(String, String)>,
    default_guard: bool,
    referenced_by: Vec<String>,
    orphans: Vec<String>,
    default_stats: Option<String>,
    max_key: Option<String>,
}

#[derive(Deserialize)]
struct RawPartition {
    schema: String,
    name: String,
    bound: String,
    comment: Option<String>,
    owned: bool,
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
    /// The database server's clock when it was observed.
    pub db_now: chrono::DateTime<chrono::Utc>,
    pub tables: Vec<ObservedTable>,
}

impl Observation {
    pub fn table(&self, schema: &str, name: &str) -> Option<&ObservedTable> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }
}

/// The longest the observation may wait for a lock (it reads DEFAULT partitions, which
/// another session's pending ACCESS EXCLUSIVE would queue it behind) or run: one stuck
/// table must not stall a pass over the others.
const OBSERVE_LOCK_TIMEOUT: &str = "2s";
const OBSERVE_STATEMENT_TIMEOUT: &str = "60s";

/// Run `f` (reads of the observation) with the observation's lock and statement timeouts.
async fn bounded<T>(client: &Client, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    client
        .batch_execute(&format!(
            "SET lock_timeout = '{OBSERVE_LOCK_TIMEOUT}'; SET statement_timeout = '{OBSERVE_STATEMENT_TIMEOUT}'"
        ))
        .await?;
    let result = f.await;
    client
        .batch_execute("RESET lock_timeout; RESET statement_timeout")
        .await?;
    result
}

/// Observe every partitioned table of the database, or just those of `only` (schema,
/// table): one statement, whatever their number.
pub async fn observe(
    client: &Client,
    only: Option<&[(String, String)]>,
    with_sizes: bool,
) -> Result<Observation> {
    let (schemas, names): (Option<Vec<&str>>, Option<Vec<&str>>) = match only {
        Some(tables) => (
            Some(tables.iter().map(|(s, _)| s.as_str()).collect()),
            Some(tables.iter().map(|(_, t)| t.as_str()).collect()),
        ),
        None => (None, None),
    };
    let rows = bounded(client, async {
        Ok(client
            .query(OBSERVE_SQL, &[&schemas, &names, &with_sizes])
            .await?)
    })
    .await?;
    let mut tables = Vec::with_capacity(rows.len());
    for row in rows {
        let json: serde_json::Value = row.get(0);
        let raw: RawTable = serde_json::from_value(json)
            .map_err(|e| Error::Database(format!("unexpected catalog row: {e}")))?;
        tables.push(convert(raw)?);
    }
    let row = client
        .query_one("SELECT current_setting('server_version_num'), now()", &[])
        .await?;
    let v: String = row.get(0);
    let db_now: chrono::DateTime<chrono::Utc> = row.get(1);
    let server_version_num = v
        .parse()
        .map_err(|_| Error::Database(format!("unexpected server_version_num {v:?}")))?;
    Ok(Observation {
        server_version_num,
        db_now,
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
            managed: p.owned
                || p.comment
                    .as_deref()
                    .is_some_and(|c| c == OWNER_MARK || c.starts_with(RETIRING_MARK)),
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
        default_slot_keys: Vec::new(),
        retiring: raw.retiring,
        default_guard: raw.default_guard,
        referenced_by: raw.referenced_by,
        orphans: raw.orphans,
        fingerprint: raw.fingerprint,
    })
}

/// Find which grid slots the DEFAULT partition's rows fall in: one `min(key)` query per
/// occupied slot, each starting after the previous slot, so a stray row in 1970 costs one
/// query, not a partition per slot in between. Runs only when the default holds rows.
pub async fn scan_default(
    client: &Client,
    table: &mut ObservedTable,
    policy: &ValidPolicy,
    max_slots: usize,
) -> Result<()> {
    let (Some(default), [Some(key)], [key_type]) = (
        table.default_partition().map(|p| p.name.clone()),
        table.key_columns.as_slice(),
        table.key_types.as_slice(),
    ) else {
        return Ok(());
    };
    let Some(kind) = KeyKind::from_sql_type(key_type) else {
        return Ok(());
    };
    if table.default_rows.rows == 0
        || !matches!(policy.kind, crate::policy::validate::Kind::Range(_))
    {
        return Ok(());
    }
    let source = format!(
        "{} WHERE {} IS NOT NULL",
        qualified(&table.schema, &default),
        ident(key)
    );
    let mut keys = Vec::new();
    let mut cursor: Option<KeyValue> = None;
    while keys.len() < max_slots {
        let filter = match cursor {
            Some(c) => format!(" AND {} >= {}", ident(key), render_key_value(c, kind)),
            None => String::new(),
        };
        let row = client
            .query_one(
                &format!("SELECT min({})::text FROM {source}{filter}", ident(key)),
                &[],
            )
            .await?;
        let Some(text) = row.get::<_, Option<String>>(0) else {
            break;
        };
        let Ok(k) = parse_key_value(&text, kind) else {
            break;
        };
        keys.push(k);
        match crate::plan::diff::slot_containing(policy, kind, k) {
            Some((_, to)) if to != KeyValue::Max && Some(to) != cursor => cursor = Some(to),
            _ => break,
        }
    }
    table.default_slot_keys = keys;
    Ok(())
}

/// Finish observing one policy's table: for a DEFAULT holding rows, the slots they fall
/// in; for a table that is not there, why (missing, or not partitioned).
pub async fn complete(
    client: &Client,
    table: Option<&mut ObservedTable>,
    policy: &ValidPolicy,
) -> Result<()> {
    match table {
        Some(t) => {
            bounded(
                client,
                scan_default(client, t, policy, crate::plan::diff::MAX_REPAIR_SLOTS + 1),
            )
            .await
        }
        None => {
            let qualified = format!("{}.{}", policy.schema, policy.table);
            let kind: Option<String> = client
                .query_opt(
                    "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = $1 AND c.relname = $2",
                    &[&policy.schema, &policy.table],
                )
                .await?
                .map(|r| r.get(0));
            Err(match kind.as_deref() {
                None => Error::TableMissing { table: qualified },
                Some("r") => Error::mismatch(
                    "spec.table",
                    format!(
                        "table {qualified} exists but is not partitioned: pgpart manages tables created PARTITION BY RANGE, LIST or HASH"
                    ),
                ),
                Some(_) => Error::mismatch(
                    "spec.table",
                    format!("{qualified} is not a table (a view, index or sequence?)"),
                ),
            })
        }
    }
}

impl Observation {
    /// Move one table out of the observation (for planning it).
    pub fn take(&mut self, schema: &str, name: &str) -> Option<ObservedTable> {
        let i = self
            .tables
            .iter()
            .position(|t| t.schema == schema && t.name == name)?;
        Some(self.tables.swap_remove(i))
    }
}

/// Plan one policy over its observed table, completing the observation first.
pub async fn plan_table(
    client: &Client,
    mut table: Option<ObservedTable>,
    policy: &ValidPolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<crate::plan::Plan> {
    complete(client, table.as_mut(), policy).await?;
    crate::plan::plan(policy, table.as_ref(), now)
}

/// Observe one policy's table and plan it.
pub async fn observe_and_plan(
    client: &Client,
    policy: &ValidPolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(crate::plan::Plan, Observation)> {
    let only = [(policy.schema.clone(), policy.table.clone())];
    let mut o = observe(client, Some(&only), false).await?;
    let table = o.take(&policy.schema, &policy.table);
    Ok((plan_table(client, table, policy, now).await?, o))
}

/// The fingerprint of a parent's partitions (oids, bounds, pending detaches, comments),
/// computed as the observation computes it.
const FINGERPRINT_SQL: &str = "SELECT coalesce(md5(string_agg(i.inhrelid::text || ':' || coalesce(pg_get_expr(c.relpartbound, 0), '') || ':' \
     || i.inhdetachpending::text || ':' || coalesce(obj_description(c.oid, 'pg_class'), ''), ',' ORDER BY i.inhrelid)), '') \
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass($1)";

/// Under the table's advisory lock, plan again if another run changed the table since
/// `plan` was made (any partition added, removed, re-bounded or re-marked). Returns
/// whether it planned again.
pub async fn replan_if_stale(
    client: &Client,
    plan: &mut crate::plan::Plan,
    policy: &ValidPolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let parent = qualified(&policy.schema, &policy.table);
    let fingerprint: String = client.query_one(FINGERPRINT_SQL, &[&parent]).await?.get(0);
    if fingerprint == plan.fingerprint {
        return Ok(false);
    }
    *plan = observe_and_plan(client, policy, now).await?.0;
    Ok(true)
}
