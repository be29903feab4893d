//! What the database looks like, as `db::observe` reads it, in the terms `plan` reasons in.

use chrono::NaiveDateTime;

/// How a parent is partitioned (`pg_partitioned_table.partstrat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    Range,
    List,
    Hash,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Range => "range",
            Strategy::List => "list",
            Strategy::Hash => "hash",
        }
    }
}

/// Key types pgpart computes range bounds for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// Bounds are instants; stored here as UTC wall time.
    Timestamptz,
    /// Bounds are local wall-clock times in the policy's zone.
    Timestamp,
    Date,
    /// smallint, integer, bigint.
    Int {
        min: i64,
        max: i64,
    },
}

impl KeyKind {
    /// From `format_type()` of the key column; `None` for types pgpart does not range over.
    pub fn from_sql_type(t: &str) -> Option<KeyKind> {
        Some(match t {
            "timestamp with time zone" => KeyKind::Timestamptz,
            "timestamp without time zone" => KeyKind::Timestamp,
            "date" => KeyKind::Date,
            "smallint" => KeyKind::Int {
                min: i16::MIN as i64,
                max: i16::MAX as i64,
            },
            "integer" => KeyKind::Int {
                min: i32::MIN as i64,
                max: i32::MAX as i64,
            },
            "bigint" => KeyKind::Int {
                min: i64::MIN,
                max: i64::MAX,
            },
            _ => return None,
        })
    }

    pub fn is_time(self) -> bool {
        !matches!(self, KeyKind::Int { .. })
    }
}

/// One end of a range bound. Variant order gives the right comparison: MINVALUE < values < MAXVALUE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    Min,
    Time(NaiveDateTime),
    Int(i64),
    Max,
}

/// A partition bound as `pg_get_expr(relpartbound)` states it, values still as SQL text
/// for list partitions (their type is whatever the key is).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    Range {
        from: KeyValue,
        to: KeyValue,
    },
    /// A range bound pgpart can't reason about (multi-column key, unparsable value).
    RangeOther(String),
    List(Vec<Option<String>>),
    Hash {
        modulus: u32,
        remainder: u32,
    },
    Default,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedPartition {
    pub schema: String,
    pub name: String,
    pub bound: Bound,
    /// Carries pgpart's ownership mark (a table comment).
    pub managed: bool,
    /// `DETACH ... CONCURRENTLY` was interrupted; it must be finished before another.
    pub detach_pending: bool,
    pub estimated_rows: i64,
    pub bytes: i64,
}

/// Rows that fell into the DEFAULT partition, with the span of their keys.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DefaultRows {
    /// Exact up to `db::observe::EXACT_DEFAULT_ROWS`; past it the planner's estimate.
    pub rows: i64,
    pub estimated: bool,
    /// An index on the default leads with the key: its span and slots are cheap to read.
    pub key_indexed: bool,
    pub min_key: Option<KeyValue>,
    pub max_key: Option<KeyValue>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ObservedTable {
    pub schema: String,
    pub name: String,
    pub strategy: Strategy,
    /// Key columns; an expression key shows as `None`.
    pub key_columns: Vec<Option<String>>,
    /// `format_type()` of each key column.
    pub key_types: Vec<String>,
    pub partitions: Vec<ObservedPartition>,
    pub default_rows: DefaultRows,
    /// max(key) for an integer range key (None when the table is empty).
    pub max_key: Option<i64>,
    /// One key from each grid slot that holds rows in the DEFAULT partition, oldest first
    /// (filled by `db::observe::scan_default` only when the default holds rows).
    pub default_slot_keys: Vec<KeyValue>,
    /// Detached tables of this schema still marked as being retired: (name, comment).
    pub retiring: Vec<(String, String)>,
    /// The default partition carries a guard CHECK an older pgpart left (it refuses rows).
    pub default_guard: bool,
    /// Tables with a foreign key referencing this one.
    pub referenced_by: Vec<String>,
    /// Standalone tables a killed repair of an older pgpart left, holding hidden rows.
    pub orphans: Vec<String>,
    /// A digest of the partitions as observed: a plan made from it is stale once the
    /// table's fingerprint differs.
    pub fingerprint: String,
    /// Another session held a lock on the table when it was observed, so its rows (the
    /// default's, max(key)) were not read: the facts above that come from rows are unknown.
    pub rows_unread: bool,
}

impl ObservedTable {
    pub fn default_partition(&self) -> Option<&ObservedPartition> {
        self.partitions.iter().find(|p| p.bound == Bound::Default)
    }

    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}
