//! What the database looks like, as `db::observe` reads it, in the terms `plan` reasons in.

use chrono::{DateTime, NaiveDateTime, Utc};

use crate::policy::KeyEncoding;

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

/// Key types pgpart computes range bounds for. The first five are column types as observed;
/// `Epoch` and `Uuidv7` are an integer or uuid column read as time (`range.keyEncoding`),
/// which only a policy can say: their values are the column's own (`Int`, `Uuid`).
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
    /// uuid, ordered as PostgreSQL orders it (bytewise, so as a big-endian 128-bit number).
    Uuid,
    /// An integer counting `per_second`ths of a second since 1970-01-01 UTC.
    Epoch {
        per_second: i64,
        min: i64,
        max: i64,
    },
    /// A UUIDv7: its first 48 bits count milliseconds since 1970-01-01 UTC.
    Uuidv7,
}

/// Bits of a UUIDv7 after its millisecond prefix.
const UUIDV7_TAIL_BITS: u32 = 80;

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
            "uuid" => KeyKind::Uuid,
            _ => return None,
        })
    }

    /// This column kind read as time the way `encoding` says; `None` where the column cannot
    /// hold it (a uuid as epoch seconds, an integer as a UUIDv7).
    pub fn encoded(self, encoding: KeyEncoding) -> Option<KeyKind> {
        let per_second = match encoding {
            KeyEncoding::Uuidv7 => return (self == KeyKind::Uuid).then_some(KeyKind::Uuidv7),
            KeyEncoding::EpochSeconds => 1,
            KeyEncoding::EpochMillis => 1_000,
            KeyEncoding::EpochMicros => 1_000_000,
        };
        match self {
            KeyKind::Int { min, max } => Some(KeyKind::Epoch {
                per_second,
                min,
                max,
            }),
            _ => None,
        }
    }

    /// The column kind its values are read and written as (an encoded kind's own type).
    pub fn column(self) -> KeyKind {
        match self {
            KeyKind::Epoch { min, max, .. } => KeyKind::Int { min, max },
            KeyKind::Uuidv7 => KeyKind::Uuid,
            k => k,
        }
    }

    /// Whether the policy's interval for this key is a time step.
    pub fn is_time(self) -> bool {
        !matches!(self, KeyKind::Int { .. } | KeyKind::Uuid)
    }

    /// Whether the key is time held in another type (`Epoch`, `Uuidv7`).
    pub fn is_encoded(self) -> bool {
        matches!(self, KeyKind::Epoch { .. } | KeyKind::Uuidv7)
    }

    /// The key value of an instant, for an encoded kind: `Min`/`Max` where the column's type
    /// cannot hold it (before 1970 for a UUIDv7, past 2038 for epoch seconds in an integer).
    pub fn encode(self, t: DateTime<Utc>) -> Option<KeyValue> {
        let micros = t.timestamp_micros();
        Some(match self {
            KeyKind::Epoch {
                per_second,
                min,
                max,
            } => {
                // Grid points are whole seconds; a finer instant is floored to the unit.
                let v = i128::from(micros).div_euclid(1_000_000 / i128::from(per_second));
                if v < i128::from(min) {
                    KeyValue::Min
                } else if v > i128::from(max) {
                    KeyValue::Max
                } else {
                    KeyValue::Int(v as i64)
                }
            }
            KeyKind::Uuidv7 => {
                let ms = micros.div_euclid(1_000);
                if ms < 0 {
                    KeyValue::Min
                } else if ms >= 1 << 48 {
                    KeyValue::Max
                } else {
                    KeyValue::Uuid((ms as u128) << UUIDV7_TAIL_BITS)
                }
            }
            _ => return None,
        })
    }

    /// The largest value of an encoded key's type (the end of the time it can hold).
    pub fn last_value(self) -> KeyValue {
        match self {
            KeyKind::Epoch { max, .. } => KeyValue::Int(max),
            KeyKind::Uuidv7 => KeyValue::Uuid(u128::MAX),
            _ => KeyValue::Max,
        }
    }

    /// The instant an encoded key value stands for (a UUIDv7's millisecond, an epoch value's
    /// unit); `None` for other kinds, MINVALUE/MAXVALUE and a uuid that is not a UUIDv7.
    pub fn decode(self, v: KeyValue) -> Option<DateTime<Utc>> {
        let micros = match (self, v) {
            (KeyKind::Epoch { per_second, .. }, KeyValue::Int(i)) => {
                i64::try_from(i128::from(i) * (1_000_000 / i128::from(per_second))).ok()?
            }
            (KeyKind::Uuidv7, KeyValue::Uuid(u)) => {
                // A bound has nothing after its milliseconds; a row's key must be a UUIDv7
                // (version 7), else its first bits are no time at all (a v4 is random).
                let tail = u & ((1u128 << UUIDV7_TAIL_BITS) - 1);
                if tail != 0 && (u >> 76) & 0xf != 7 {
                    return None;
                }
                ((u >> UUIDV7_TAIL_BITS) as i64) * 1_000
            }
            _ => return None,
        };
        DateTime::from_timestamp_micros(micros)
    }
}

/// One end of a range bound. Variant order gives the right comparison: MINVALUE < values < MAXVALUE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KeyValue {
    Min,
    Time(NaiveDateTime),
    Int(i64),
    Uuid(u128),
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
