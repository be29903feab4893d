//! Observation: four statements sent together in one snapshot per database and pass,
//! whatever the number of tables. Bounded row counts of DEFAULT partitions and max(key) of
//! integer range tables are read in the parents statement through `query_to_xml`, which
//! runs a server-side-quoted query per table.

use tokio_postgres::Client;

use crate::error::{Error, Result};
use crate::plan::action::{OWNER_MARK, RETIRING_MARK};
use crate::plan::bounds::{parse_bound, parse_key_value, render_key_value};
use crate::plan::model::{
    Bound, DefaultRows, KeyKind, KeyValue, ObservedPartition, ObservedTable, Strategy,
};
use crate::plan::quote::{ident, qualified};
use crate::policy::ValidPolicy;

/// How many rows of a DEFAULT partition are counted exactly each pass. Beyond this the
/// count is the planner's estimate: a big default is not scanned on every pass.
pub const EXACT_DEFAULT_ROWS: i64 = 10_000;

/// The partitioned tables named by `$1` (schemas) and `$2` (names), or every one when `$1`
/// is NULL. Named tables are found through pg_class's name index, so observing a few
/// tables does not scan the catalog.
macro_rules! parents_cte {
    () => {
        r#"parents AS (
  SELECT c.oid, c.relnamespace, n.nspname, c.relname, pt.partstrat, pt.partdefid, pt.partattrs, pt.partnatts
    FROM pg_partitioned_table pt
    JOIN pg_class c ON c.oid = pt.partrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE $1::text[] IS NULL
  UNION ALL
  SELECT c.oid, c.relnamespace, n.nspname, c.relname, pt.partstrat, pt.partdefid, pt.partattrs, pt.partnatts
    FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[])) w(schema_name, table_name)
    JOIN pg_namespace n ON n.nspname = w.schema_name
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.table_name
    JOIN pg_partitioned_table pt ON pt.partrelid = c.oid
   WHERE $1::text[] IS NOT NULL
)"#
    };
}

/// One row per partitioned table named (or every one): what the table is, and cheap facts
/// about its DEFAULT partition — a count that stops at [`EXACT_DEFAULT_ROWS`] + 1, and the
/// oldest and newest keys only where an index on the key makes them cheap.
const PARENTS_SQL: &str = concat!(
    "WITH ",
    parents_cte!(),
    r#",
-- Relations someone holds or awaits ACCESS EXCLUSIVE on: reading their rows would wait.
locked AS MATERIALIZED (
  SELECT DISTINCT l.relation FROM pg_locks l
   WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid()
     AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
),
-- Foreign keys referencing the tables, and the standalone tables a killed repair of an
-- earlier version left (action::BOUND_CHECK and OWNER_MARK): each read once, not once
-- per table (pg_constraint has no index on confrelid).
referencing AS MATERIALIZED (
  SELECT k.confrelid, array_agg(DISTINCT rn.nspname || '.' || r.relname) AS tables
    FROM pg_constraint k
    JOIN pg_class r ON r.oid = k.conrelid
    JOIN pg_namespace rn ON rn.oid = r.relnamespace
   WHERE k.contype = 'f' AND k.confrelid IN (SELECT oid FROM parents)
   GROUP BY k.confrelid
),
orphan_candidates AS MATERIALIZED (
  SELECT r.relnamespace, r.relname,
         (SELECT array_agg(a.attname::text || ':' || a.atttypid ORDER BY a.attnum) FROM pg_attribute a
           WHERE a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns
    FROM pg_constraint k
    JOIN pg_class r ON r.oid = k.conrelid
   WHERE k.conname = 'pgpart_bound' AND r.relkind = 'r' AND NOT r.relispartition
     AND obj_description(r.oid, 'pg_class') = 'pgpart: managed partition'
),
keyed AS (
  SELECT p.*,
         NOT $4 AND EXISTS (SELECT 1 FROM locked l WHERE l.relation = p.oid
                               OR l.relation IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = p.oid)) AS rows_unread,
         (SELECT a.attname FROM pg_attribute a
           WHERE a.attrelid = p.oid AND a.attnum = p.partattrs[0] AND p.partnatts = 1 AND p.partattrs[0] <> 0) AS key1,
         (SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
           WHERE a.attrelid = p.oid AND a.attnum = p.partattrs[0] AND p.partnatts = 1 AND p.partattrs[0] <> 0) AS key1_type,
         dc.relname AS default_name, dn.nspname AS default_schema, dc.reltuples AS default_estimate,
         -- an index on the default leading with the key: min and max are then two probes
         EXISTS (SELECT 1 FROM pg_index ix
                   JOIN pg_class ic ON ic.oid = ix.indexrelid
                   JOIN pg_am am ON am.oid = ic.relam AND am.amname = 'btree'
                   JOIN pg_attribute ka ON ka.attrelid = p.oid AND ka.attnum = p.partattrs[0]
                   JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = ix.indkey[0]
                  WHERE ix.indrelid = p.partdefid AND ix.indisvalid AND ix.indpred IS NULL
                    AND p.partnatts = 1 AND a.attname = ka.attname) AS default_key_indexed
    FROM parents p
    LEFT JOIN pg_class dc ON dc.oid = p.partdefid
    LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace
)
SELECT p.nspname, p.relname, p.partstrat::text,
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM unnest(p.partattrs::int2[]) WITH ORDINALITY k(attnum, ord)
          LEFT JOIN pg_attribute a ON a.attrelid = p.oid AND a.attnum = k.attnum) AS key_columns,
       (SELECT array_agg(coalesce(format_type(a.atttypid, a.atttypmod), 'expression') ORDER BY k.ord)
          FROM unnest(p.partattrs::int2[]) WITH ORDINALITY k(attnum, ord)
          LEFT JOIN pg_attribute a ON a.attrelid = p.oid AND a.attnum = k.attnum) AS key_types,
       -- action::DEFAULT_GUARDS, left by earlier versions of pgpart
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = p.partdefid
                AND k.conname IN ('pgpart_default_guard', 'pgpart_default_guard_next')) AS default_guard,
       (SELECT tables FROM referencing f WHERE f.confrelid = p.oid) AS referenced_by,
       -- orphans: in the parent's schema, with the parent's columns
       (SELECT array_agg(o.relname::text ORDER BY o.relname)
          FROM orphan_candidates o
         WHERE o.relnamespace = p.relnamespace
           AND o.columns = (SELECT array_agg(a.attname::text || ':' || a.atttypid ORDER BY a.attnum) FROM pg_attribute a
                             WHERE a.attrelid = p.oid AND a.attnum > 0 AND NOT a.attisdropped)) AS orphans,
       p.default_key_indexed,
       greatest(p.default_estimate, 0)::int8 AS default_estimate,
       CASE WHEN p.default_name IS NOT NULL AND NOT p.rows_unread THEN query_to_xml(format(
         'SELECT (SELECT count(*) FROM (SELECT FROM %1$I.%2$I LIMIT %3$s) s) AS c',
         p.default_schema, p.default_name, $3::int8 + 1), false, true, '')::text END AS default_count,
       CASE WHEN p.default_key_indexed AND p.key1 IS NOT NULL AND NOT p.rows_unread THEN query_to_xml(format(
         'SELECT (SELECT %1$I FROM %2$I.%3$I WHERE %1$I IS NOT NULL ORDER BY 1 LIMIT 1)::text AS lo, '
         '(SELECT %1$I FROM %2$I.%3$I WHERE %1$I IS NOT NULL ORDER BY 1 DESC LIMIT 1)::text AS hi',
         p.key1, p.default_schema, p.default_name), false, true, '')::text END AS default_span,
       -- max(key): for integer keys, but not those holding time ($5, $6: keyEncoding), whose plans never use it
       CASE WHEN p.partstrat = 'r' AND p.key1_type IN ('smallint', 'integer', 'bigint') AND NOT p.rows_unread
             AND NOT EXISTS (SELECT 1 FROM unnest($5::text[], $6::text[]) tk(schema_name, table_name)
                              WHERE tk.schema_name = p.nspname AND tk.table_name = p.relname) THEN
         query_to_xml(format('SELECT max(%I)::text AS m FROM %I.%I WHERE tableoid <> %s',
           p.key1, p.nspname, p.relname, p.partdefid), false, true, '')::text END AS max_key,
       p.rows_unread
  FROM keyed p
 ORDER BY p.nspname, p.relname
"#
);

/// One row per partition of the tables named (the same filter as [`PARENTS_SQL`]).
const PARTITIONS_SQL: &str = concat!(
    "WITH ",
    parents_cte!(),
    r#"
SELECT p.nspname AS parent_schema, p.relname AS parent_name,
       i.inhrelid, cn.nspname, c.relname, pg_get_expr(c.relpartbound, 0) AS bound, d.description,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.conname = 'pgpart_managed') AS owned,  -- action::OWNER_CONSTRAINT
       i.inhdetachpending, greatest(c.reltuples, 0)::int8 AS rows,
       CASE WHEN $3 THEN pg_total_relation_size(c.oid) ELSE 0 END AS bytes
  FROM parents p
  JOIN pg_inherits i ON i.inhparent = p.oid
  JOIN pg_class c ON c.oid = i.inhrelid
  JOIN pg_namespace cn ON cn.oid = c.relnamespace
  LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0
"#
);

/// Detached tables still marked as being retired, in the schemas of the tables named.
const RETIRING_SQL: &str = r#"
SELECT n.nspname, r.relname, d.description
  FROM pg_description d
  JOIN pg_class r ON r.oid = d.objoid
  JOIN pg_namespace n ON n.oid = r.relnamespace
 WHERE d.classoid = 'pg_class'::regclass AND d.objsubid = 0
   AND d.description LIKE 'pgpart: retiring partition of %'
   AND r.relkind = 'r' AND NOT r.relispartition
   AND ($1::text[] IS NULL OR n.nspname = ANY($1::text[]))
"#;

/// The rows that make a parent's fingerprint, as [`PARTITIONS_SQL`] reads them.
const FINGERPRINT_SQL: &str = "SELECT i.inhrelid, pg_get_expr(c.relpartbound, 0), i.inhdetachpending, d.description \
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
     LEFT JOIN pg_description d ON d.objoid = c.oid AND d.classoid = 'pg_class'::regclass AND d.objsubid = 0 \
     WHERE i.inhparent = to_regclass($1) ORDER BY i.inhrelid";

/// A digest of a parent's partitions (oids in order, bounds, pending detaches, comments):
/// a plan made from one is stale once the table's digest differs.
#[derive(Default)]
struct Fingerprint(std::collections::hash_map::DefaultHasher);

impl Fingerprint {
    fn add(&mut self, oid: u32, bound: Option<&str>, detach_pending: bool, comment: Option<&str>) {
        use std::hash::Hash;
        (oid, bound, detach_pending, comment).hash(&mut self.0);
    }

    fn finish(&self) -> String {
        use std::hash::Hasher;
        format!("{:016x}", self.0.finish())
    }
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

    /// Move one table out of the observation (for planning it).
    pub fn take(&mut self, schema: &str, name: &str) -> Option<ObservedTable> {
        let i = self
            .tables
            .iter()
            .position(|t| t.schema == schema && t.name == name)?;
        Some(self.tables.swap_remove(i))
    }
}

/// The longest the observation may wait for a lock (it reads DEFAULT partitions, which
/// another session's pending ACCESS EXCLUSIVE would queue it behind) or run: one stuck
/// table must not stall a pass over the others.
const OBSERVE_LOCK_TIMEOUT: &str = "2s";
const OBSERVE_STATEMENT_TIMEOUT: &str = "60s";

/// Run `f` (reads of the observation) in one read-only snapshot, with the observation's
/// lock and statement timeouts.
async fn bounded<T>(client: &Client, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    client
        .batch_execute(&format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL lock_timeout = '{OBSERVE_LOCK_TIMEOUT}'; SET LOCAL statement_timeout = '{OBSERVE_STATEMENT_TIMEOUT}'"
        ))
        .await?;
    let result = f.await;
    client
        .batch_execute(if result.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .await?;
    result
}

/// Observe every partitioned table of the database, or just those of `only` (schema,
/// table): four statements sent together in one snapshot, whatever the number of tables.
/// Rows of a table another session holds or awaits an ACCESS EXCLUSIVE lock on are not
/// read (the table is marked `rows_unread`): one locked table must not stall the others.
/// `time_keyed` names tables whose integer key holds time (`keyEncoding`): their max(key),
/// a scan where the key has no index, is not read.
pub async fn observe(
    client: &Client,
    only: Option<&[(String, String)]>,
    time_keyed: &[(String, String)],
    with_sizes: bool,
) -> Result<Observation> {
    observe_tables(client, only, time_keyed, with_sizes, false).await
}

/// `[(schema, table)]` of `policy` if its key holds time (`keyEncoding`), else empty: the
/// `time_keyed` of [`observe`].
pub fn time_keyed(policy: &ValidPolicy) -> Vec<(String, String)> {
    match &policy.kind {
        crate::policy::validate::Kind::Range(r) if r.key_encoding.is_some() => {
            vec![(policy.schema.clone(), policy.table.clone())]
        }
        _ => Vec::new(),
    }
}

/// [`observe`], reading rows even of locked tables when `wait_for_locks` (bounded by the
/// observation's lock timeout).
async fn observe_tables(
    client: &Client,
    only: Option<&[(String, String)]>,
    time_keyed: &[(String, String)],
    with_sizes: bool,
    wait_for_locks: bool,
) -> Result<Observation> {
    let (schemas, names): (Option<Vec<&str>>, Option<Vec<&str>>) = match only {
        Some(tables) => (
            Some(tables.iter().map(|(s, _)| s.as_str()).collect()),
            Some(tables.iter().map(|(_, t)| t.as_str()).collect()),
        ),
        None => (None, None),
    };
    let exact = EXACT_DEFAULT_ROWS;
    let (time_schemas, time_names): (Vec<&str>, Vec<&str>) = time_keyed
        .iter()
        .map(|(s, t)| (s.as_str(), t.as_str()))
        .unzip();
    let parents_params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &schemas,
        &names,
        &exact,
        &wait_for_locks,
        &time_schemas,
        &time_names,
    ];
    let partitions_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
        [&schemas, &names, &with_sizes];
    let retiring_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&schemas];
    let (parents, partitions, retiring, server) = bounded(client, async {
        // Sent together, run in order: once one fails the rest only say the transaction
        // is aborted, so the first statement's error is the one that tells why.
        let (parents, partitions, retiring, server) = tokio::join!(
            client.query(PARENTS_SQL, &parents_params),
            client.query(PARTITIONS_SQL, &partitions_params),
            client.query(RETIRING_SQL, &retiring_params),
            client.query_one("SELECT current_setting('server_version_num'), now()", &[]),
        );
        Ok((parents?, partitions?, retiring?, server?))
    })
    .await?;

    // Partitions and retiring tables by their parent's (schema, name).
    type Key = (String, String);
    let mut children: std::collections::HashMap<Key, Vec<tokio_postgres::Row>> =
        std::collections::HashMap::new();
    for row in partitions {
        children
            .entry((row.get(0), row.get(1)))
            .or_default()
            .push(row);
    }
    let mut retiring_by_schema: std::collections::HashMap<String, Vec<(String, String)>> =
        std::collections::HashMap::new();
    for row in retiring {
        retiring_by_schema
            .entry(row.get(0))
            .or_default()
            .push((row.get(1), row.get(2)));
    }
    let mut tables = Vec::with_capacity(parents.len());
    for row in parents {
        let key: Key = (row.get(0), row.get(1));
        let parts = children.remove(&key).unwrap_or_default();
        let retiring = retiring_by_schema.get(&key.0).cloned().unwrap_or_default();
        tables.push(convert(&row, &parts, retiring)?);
    }
    let v: String = server.get(0);
    let db_now: chrono::DateTime<chrono::Utc> = server.get(1);
    let server_version_num = v
        .parse()
        .map_err(|_| Error::Database(format!("unexpected server_version_num {v:?}")))?;
    Ok(Observation {
        server_version_num,
        db_now,
        tables,
    })
}

fn convert(
    row: &tokio_postgres::Row,
    parts: &[tokio_postgres::Row],
    retiring: Vec<(String, String)>,
) -> Result<ObservedTable> {
    let strategy = match row.get::<_, &str>(2) {
        "r" => Strategy::Range,
        "l" => Strategy::List,
        "h" => Strategy::Hash,
        other => {
            return Err(Error::Database(format!(
                "unknown partition strategy {other:?}"
            )));
        }
    };
    let key_columns: Vec<Option<String>> = row.get::<_, Option<_>>(3).unwrap_or_default();
    let key_types: Vec<String> = row.get::<_, Option<_>>(4).unwrap_or_default();
    let key_kind = match (strategy, key_types.as_slice()) {
        (Strategy::Range, [t]) if key_columns.first().is_some_and(|c| c.is_some()) => {
            KeyKind::from_sql_type(t)
        }
        _ => None,
    };
    // In oid order, as the fingerprint is taken under the lock.
    let mut parts: Vec<&tokio_postgres::Row> = parts.iter().collect();
    parts.sort_by_key(|p| p.get::<_, u32>(2));
    let mut fingerprint = Fingerprint::default();
    let partitions = parts
        .into_iter()
        .map(|p| {
            let bound: Option<&str> = p.get(5);
            let comment: Option<&str> = p.get(6);
            fingerprint.add(p.get(2), bound, p.get(8), comment);
            let bound = bound.unwrap_or_default();
            ObservedPartition {
                bound: parse_bound(bound, key_kind)
                    .unwrap_or_else(|_| Bound::RangeOther(bound.to_string())),
                managed: p.get::<_, bool>(7)
                    || comment.is_some_and(|c| c == OWNER_MARK || c.starts_with(RETIRING_MARK)),
                schema: p.get(3),
                name: p.get(4),
                detach_pending: p.get(8),
                estimated_rows: p.get(9),
                bytes: p.get(10),
            }
        })
        .collect();
    let xml = |i: usize, tag: &str| {
        row.get::<_, Option<&str>>(i)
            .and_then(|x| xml_field(x, tag))
    };
    let key_value = |text: Option<String>| {
        key_kind.and_then(|kind| text.and_then(|v| parse_key_value(&v, kind).ok()))
    };
    let counted: i64 = xml(10, "c").and_then(|c| c.parse().ok()).unwrap_or(0);
    let estimate: i64 = row.get(9);
    let default_rows = DefaultRows {
        // Past the exact count, the planner's estimate (at least what was counted).
        rows: if counted > EXACT_DEFAULT_ROWS {
            estimate.max(counted)
        } else {
            counted
        },
        estimated: counted > EXACT_DEFAULT_ROWS,
        key_indexed: row.get(8),
        min_key: key_value(xml(11, "lo")),
        max_key: key_value(xml(11, "hi")),
    };
    Ok(ObservedTable {
        schema: row.get(0),
        name: row.get(1),
        strategy,
        key_columns,
        key_types,
        partitions,
        default_rows,
        max_key: xml(12, "m").and_then(|m| m.parse().ok()),
        default_slot_keys: Vec::new(),
        retiring,
        default_guard: row.get(5),
        referenced_by: row.get::<_, Option<_>>(6).unwrap_or_default(),
        orphans: row.get::<_, Option<_>>(7).unwrap_or_default(),
        fingerprint: fingerprint.finish(),
        rows_unread: row.get(13),
    })
}

/// The DEFAULT partition's name, and the table's one key column with its kind (none for
/// a table without a default or with an expression or composite key).
fn default_and_key(table: &ObservedTable) -> Option<(String, String, KeyKind)> {
    let (Some(default), [Some(key)], [key_type]) = (
        table.default_partition().map(|p| p.name.clone()),
        table.key_columns.as_slice(),
        table.key_types.as_slice(),
    ) else {
        return None;
    };
    Some((default, key.clone(), KeyKind::from_sql_type(key_type)?))
}

/// The key as an expression `min()`/`max()` order the way PostgreSQL orders the key: the key
/// itself, or for a uuid (which has no min or max) its text in the C collation, whose
/// fixed-width lowercase hex sorts bytewise, as uuids do.
fn ordered_text(key: &str, kind: KeyKind) -> String {
    match kind.column() {
        KeyKind::Uuid => format!("{}::text COLLATE \"C\"", ident(key)),
        _ => ident(key),
    }
}

/// Find which grid slots the DEFAULT partition's rows fall in: one `min(key)` query per
/// occupied slot, each starting after the previous slot, so a stray row in 1970 costs one
/// query, not a partition per slot in between. Runs only when the default holds rows, and
/// stops past the most slots a repair takes.
async fn scan_default(
    client: &Client,
    table: &mut ObservedTable,
    policy: &ValidPolicy,
) -> Result<()> {
    let max_slots = crate::plan::repair::MAX_REPAIR_SLOTS + 1;
    let Some((default, ref key, kind)) = default_and_key(table) else {
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
        // The least key from the cursor on (ORDER BY, not min(): uuid has no min()).
        let row = client
            .query_opt(
                &format!(
                    "SELECT {k}::text FROM {source}{filter} ORDER BY {k} LIMIT 1",
                    k = ident(key)
                ),
                &[],
            )
            .await?;
        let Some(text) = row.and_then(|r| r.get::<_, Option<String>>(0)) else {
            break;
        };
        let Ok(k) = parse_key_value(&text, kind) else {
            break;
        };
        keys.push(k);
        match crate::plan::grid::slot_containing(policy, kind, k) {
            Some((_, to)) if to != KeyValue::Max && Some(to) != cursor => cursor = Some(to),
            // A key in no slot (a uuid that is not a UUIDv7, under keyEncoding: uuidv7): it
            // stays in the default, reported; look past it for keys that have one.
            None if matches!(k, KeyValue::Uuid(u) if u < u128::MAX) => {
                let KeyValue::Uuid(u) = k else { break };
                cursor = Some(KeyValue::Uuid(u + 1));
            }
            _ => break,
        }
    }
    table.default_slot_keys = keys;
    Ok(())
}

/// Why a policy's table is not in the observation: missing, or not partitioned.
async fn absent(client: &Client, policy: &ValidPolicy) -> Error {
    let qualified = format!("{}.{}", policy.schema, policy.table);
    let kind = client
        .query_opt(
            "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = $2",
            &[&policy.schema, &policy.table],
        )
        .await;
    match kind {
        Err(e) => e.into(),
        Ok(None) => Error::TableMissing { table: qualified },
        Ok(Some(row)) if row.get::<_, &str>(0) == "r" => Error::mismatch(
            "spec.table",
            format!(
                "table {qualified} exists but is not partitioned: pgpart manages tables created PARTITION BY RANGE, LIST or HASH"
            ),
        ),
        Ok(Some(_)) => Error::mismatch(
            "spec.table",
            format!("{qualified} is not a table (a view, index or sequence?)"),
        ),
    }
}

/// Count a big DEFAULT partition's rows and read its key span exactly (one scan), then
/// find the slots its rows fall in.
async fn read_default_exactly(
    client: &Client,
    table: &mut ObservedTable,
    policy: &ValidPolicy,
) -> Result<()> {
    let Some((default, ref key, kind)) = default_and_key(table) else {
        return Ok(());
    };
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), min({k})::text, max({k})::text FROM {}",
                qualified(&table.schema, &default),
                k = ordered_text(key, kind)
            ),
            &[],
        )
        .await?;
    let key = |i: usize| {
        row.get::<_, Option<&str>>(i)
            .and_then(|v| parse_key_value(v, kind).ok())
    };
    table.default_rows = DefaultRows {
        rows: row.get(0),
        estimated: false,
        min_key: key(1),
        max_key: key(2),
        ..table.default_rows
    };
    scan_default(client, table, policy).await
}

/// Plan one policy over its observed table, completing the observation first: a table
/// whose rows were not read (another session held a lock on it) is read again alone,
/// waiting a bounded time; a DEFAULT holding rows is scanned for the slots they fall in —
/// a big one without an index on the key only when this pass must act on it (create
/// partitions beside it, or repair it), so a quiet pass never scans it.
pub async fn plan_table(
    client: &Client,
    table: Option<ObservedTable>,
    policy: &ValidPolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<crate::plan::Plan> {
    let mut table = match table {
        Some(t) if t.rows_unread => {
            let only = [(policy.schema.clone(), policy.table.clone())];
            let mut o =
                observe_tables(client, Some(&only), &time_keyed(policy), false, true).await?;
            o.take(&policy.schema, &policy.table)
        }
        t => t,
    };
    let Some(t) = table.as_mut() else {
        return Err(absent(client, policy).await);
    };
    // Small, or indexed on the key: its slots cost little to find.
    let cheap = !t.default_rows.estimated || t.default_rows.key_indexed;
    if t.default_rows.rows > 0 && cheap {
        bounded(client, scan_default(client, t, policy)).await?;
    }
    let plan = crate::plan::plan(policy, Some(&*t), now)?;
    let repairable = policy.on_rows == crate::policy::OnRows::Repair && t.referenced_by.is_empty();
    if t.default_rows.rows > 0 && !cheap && (repairable || !plan.actions.is_empty()) {
        bounded(client, read_default_exactly(client, t, policy)).await?;
        return crate::plan::plan(policy, Some(&*t), now);
    }
    Ok(plan)
}

/// Observe one policy's table and plan it.
pub async fn observe_and_plan(
    client: &Client,
    policy: &ValidPolicy,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(crate::plan::Plan, Observation)> {
    let only = [(policy.schema.clone(), policy.table.clone())];
    let mut o = observe(client, Some(&only), &time_keyed(policy), false).await?;
    let table = o.take(&policy.schema, &policy.table);
    Ok((plan_table(client, table, policy, now).await?, o))
}

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
    let mut fingerprint = Fingerprint::default();
    for row in client.query(FINGERPRINT_SQL, &[&parent]).await? {
        fingerprint.add(row.get(0), row.get(1), row.get(2), row.get(3));
    }
    if fingerprint.finish() == plan.fingerprint {
        return Ok(false);
    }
    *plan = observe_and_plan(client, policy, now).await?.0;
    Ok(true)
}
