//! The PartitionPolicy API (pgpart.io/v1alpha1), as `shared/CONTRACT.md` describes it.
//! CEL rules refuse at `kubectl apply` what can be judged without the database;
//! [`validate`] judges the rest (intervals, zones, templates) for the CLI and controller.

pub mod file;
pub mod template;
pub mod units;
pub mod validate;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use validate::{ValidPolicy, validate};

/// Desired shape of one partitioned table.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "pgpart.io",
    version = "v1alpha1",
    kind = "PartitionPolicy",
    namespaced,
    status = "PartitionPolicyStatus",
    shortname = "ppol",
    category = "pgpart",
    printcolumn = r#"{"name":"Table","type":"string","jsonPath":".spec.table"}"#,
    printcolumn = r#"{"name":"Interval","type":"string","jsonPath":".spec.range.interval"}"#,
    printcolumn = r#"{"name":"Partitions","type":"integer","jsonPath":".status.partitions"}"#,
    printcolumn = r#"{"name":"Covered Until","type":"string","jsonPath":".status.coveredUntil"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("[has(self.range), has(self.list), has(self.hash)].filter(x, x).size() == 1").message("exactly one of spec.range, spec.list or spec.hash must be set, matching how the table is partitioned"))]
#[x_kube(validation = Rule::new("!has(self.retention) || has(self.range)").message("spec.retention needs spec.range: list and hash partitions are never retired"))]
#[x_kube(validation = Rule::new("!has(self.hash) || !has(self.defaultPartition) || !has(self.defaultPartition.create) || !self.defaultPartition.create").message("spec.defaultPartition.create: a hash-partitioned table can't have a DEFAULT partition; remove spec.defaultPartition"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartitionPolicySpec {
    /// Where the table lives. Required in a cluster; the CLI's `--database-url` replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<DatabaseRef>,
    /// Schema-qualified partitioned parent, e.g. `public.events`. Immutable once set.
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.table is immutable: create a new policy for another table"))]
    #[x_kube(validation = Rule::new("self.matches('^(\"([^\"]|\"\")+\"|[^.\"]+)[.](\"([^\"]|\"\")+\"|[^.\"]+)$')").message("spec.table must be schema-qualified as schema.table, e.g. public.events (double-quote names holding dots)"))]
    #[schemars(length(min = 3, max = 127))]
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<ListSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashSpec>,
    /// Absent: nothing is ever retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_partition: Option<DefaultPartitionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub naming: Option<NamingSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleSpec>,
    /// How long one lock request of pgpart's may queue, and so the longest another session waits behind it; retried after a timeout (Go duration, default 20ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("spec.lockTimeout must be a duration like 5s, 500ms or 1m"))]
    pub lock_timeout: Option<String>,
    /// Treat existing partitions that match a grid slot exactly as pgpart's own, so retention may retire them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt_existing: bool,
    /// Observe and report only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Plan and report the actions in status; change nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatabaseRef {
    pub secret_ref: SecretRef,
}

/// A Secret in the policy's own namespace. Keys: `uri`, or host, port, dbname, username (or user),
/// password; optional sslmode and sslrootcert (PEM).
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    pub name: String,
    /// Must be absent or the policy's own namespace: cross-namespace references are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.keyEncoding) || !self.interval.matches('^\\\\s*[0-9]+\\\\s*$')").message("spec.range.keyEncoding: the key holds time, so spec.range.interval must be \"N unit\", e.g. \"1 day\""))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RangeSpec {
    /// "N unit" (hour, day, week, month, quarter, year; plurals too), or a positive integer for an integer key.
    #[x_kube(validation = Rule::new("self.matches('^\\\\s*[0-9]+\\\\s*((hour|day|week|month|quarter|year)s?)?\\\\s*$')").message("spec.range.interval must be \"N unit\" (hour, day, week, month, quarter, year) or a positive integer, e.g. \"1 month\""))]
    pub interval: String,
    /// Partitions kept ahead of now (time key) or of max(key) (integer key). Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub premake: Option<i32>,
    /// Also ensure partitions back to here: a date/time ("2025-01-01") or an integer for an integer key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_from: Option<String>,
    /// IANA name or fixed offset (+01:00); boundaries are local to it. Default UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The key holds time in another type: uuidv7 (a uuid whose first 48 bits count milliseconds since 1970) or epochSeconds, epochMillis, epochMicros (an integer counting them since 1970, UTC). The policy is then written in time and the bounds are encoded into the key's type. Absent: the key's own type decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_encoding: Option<KeyEncoding>,
}

/// How a range key that is not a date or timestamp holds time (`spec.range.keyEncoding`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum KeyEncoding {
    Uuidv7,
    EpochSeconds,
    EpochMillis,
    EpochMicros,
}

impl KeyEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyEncoding::Uuidv7 => "uuidv7",
            KeyEncoding::EpochSeconds => "epochSeconds",
            KeyEncoding::EpochMillis => "epochMillis",
            KeyEncoding::EpochMicros => "epochMicros",
        }
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListSpec {
    #[schemars(length(min = 1))]
    pub partitions: Vec<ListPartition>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListPartition {
    /// Partition suffix: the partition is named `{table}_{name}`.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub values: Vec<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashSpec {
    #[schemars(range(min = 1, max = 1024))]
    pub modulus: i32,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.action) || self.action != 'MoveToSchema' || has(self.schema)").message("spec.retention.schema is required when spec.retention.action is MoveToSchema"))]
#[x_kube(validation = Rule::new("!has(self.action) || self.action != 'Archive' || has(self.archive)").message("spec.retention.archive is required when spec.retention.action is Archive: say where retired partitions are written, e.g. archive: {url: file:///var/lib/pgpart/archive}"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionSpec {
    /// Retire partitions whose WHOLE range ends before now − keep, e.g. "24 months".
    #[x_kube(validation = Rule::new("self.matches('^\\\\s*[0-9]+\\\\s*((hour|day|week|month|quarter|year)s?)?\\\\s*$')").message("spec.retention.keep must be \"N unit\", e.g. \"24 months\" (a positive integer for an integer key)"))]
    pub keep: String,
    #[serde(default)]
    pub action: RetentionAction,
    /// Target schema for MoveToSchema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Where Archive writes each retired partition before it is dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSpec>,
    /// At most this many partitions retired per pass (default 10), so a clock jump or a new
    /// policy on an old table never retires everything at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_per_pass: Option<i32>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum RetentionAction {
    #[default]
    Detach,
    Drop,
    MoveToSchema,
    /// Detach, write the partition to `archive`, read it back and verify it, then drop it.
    Archive,
}

/// An archive of retired partitions: a directory or an S3-compatible bucket. Each partition
/// is written as `<schema>/<table>/<partition>/data.copy.gz` (its rows in COPY text format,
/// gzip) and `manifest.json` (columns, bound, row count, SHA-256), read by `pgpart restore`.
#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchiveSpec {
    /// `file:///absolute/dir` (in a cluster: a volume mounted into the controller, see the
    /// chart's `archive` values) or `s3://bucket[/prefix]`.
    #[x_kube(validation = Rule::new("self.startsWith('file:///') || self.startsWith('s3://')").message("spec.retention.archive.url must be file:///absolute/dir or s3://bucket[/prefix]"))]
    pub url: String,
    /// s3:// only: the endpoint of an S3-compatible store (MinIO, Ceph, ...), e.g.
    /// `http://minio.storage:9000`; absent: AWS S3. Credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`; the chart sets them from a Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// s3:// only: the bucket's region (default: `AWS_REGION`, else us-east-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultPartitionSpec {
    /// Ensure a DEFAULT partition exists (a safety net for rows no partition takes).
    #[serde(default)]
    pub create: bool,
    #[serde(default)]
    pub on_rows: OnRows,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum OnRows {
    /// Condition + event; the default partition is left alone.
    #[default]
    Report,
    /// Create the missing partitions and move the rows into them, online, losing none.
    Repair,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamingSpec {
    /// Tokens: {table} {YYYY} {MM} {DD} {HH} {mm} {Q} {WW} {MON} {start}.
    pub template: String,
}

#[derive(KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Re-check period (Go duration, e.g. 1h). Changes to the resource act at once.
    #[x_kube(validation = Rule::new("self.matches('^([0-9]+(ms|s|m|h))+$')").message("spec.schedule.every must be a duration like 1h or 10m"))]
    pub every: String,
}

/// What pgpart last saw and did.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Managed partitions attached now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest: Option<String>,
    /// End of the contiguous run of partitions from now (RFC 3339, or an integer for integer keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covered_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_partition_rows: Option<i64>,
    /// When a pass last changed the database (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_maintenance_time: Option<String>,
    /// What the next pass would do (dry run, suspended, or blocked).
    #[serde(default)]
    pub pending_actions: Vec<String>,
    /// When the last pass ran (pgpart's clock, RFC 3339), whether or not it changed anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_time: Option<String>,
    /// The database and table this policy holds ("user@host:port/dbname schema.table"):
    /// another policy naming the same table is refused with Conflict while this one exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
}

/// The CRD as `crds/` holds it.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    serde_yaml_ng::to_string(&PartitionPolicy::crd()).expect("the CRD serializes")
}
