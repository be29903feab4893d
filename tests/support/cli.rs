//! Running the built `pgpart` binary from integration tests, and reading the catalog
//! back to check what it did.
//!
//! * [`pgpart`], [`apply`], [`plan`], [`plan_json`]: run the CLI with a policy written to
//!   a throw-away file, `--database-url` and `--now`.
//! * [`partitions`], [`snapshot`]: the partitions of a parent and a whole-database catalog
//!   snapshot, both read with the session TimeZone set to UTC.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_postgres::Client;

/// Path of the binary cargo built for this test run.
pub const PGPART: &str = env!("CARGO_BIN_EXE_pgpart");

/// What one run of the CLI did.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exit code (`-1` when killed by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32, what: &str) -> &Self {
        assert_eq!(
            self.code, code,
            "{what}: expected exit code {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the run exited 0.
    #[track_caller]
    pub fn ok(&self, what: &str) -> &Self {
        self.expect_code(0, what)
    }

    /// stdout and stderr together, for messages.
    pub fn both(&self) -> String {
        format!("--- stdout\n{}\n--- stderr\n{}", self.stdout, self.stderr)
    }

    /// Lines of stdout that report an action taken (not findings, which start with `!`).
    pub fn action_lines(&self) -> Vec<String> {
        self.stdout
            .lines()
            .filter(|l| {
                let l = l.trim();
                !l.is_empty()
                    && !l.contains(": ! ")
                    && !l.starts_with('!')
                    && !l.to_ascii_lowercase().contains("nothing to do")
                    && !l.to_ascii_lowercase().contains("nothing changed")
                    && !l.to_ascii_lowercase().contains("no changes")
            })
            .map(str::to_owned)
            .collect()
    }

    /// Whether the process panicked (Rust's panic exit code or message).
    pub fn panicked(&self) -> bool {
        self.code == 101 || self.stderr.contains("panicked at")
    }
}

/// A policy file that is removed when dropped.
pub struct PolicyFile {
    pub path: PathBuf,
}

impl PolicyFile {
    pub fn new(contents: &str) -> PolicyFile {
        static N: AtomicU64 = AtomicU64::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join("pgpart-tests");
        std::fs::create_dir_all(&dir).expect("create temp dir for policy files");
        let path = dir.join(format!("policy-{}-{n}-{nanos}.yaml", std::process::id()));
        std::fs::write(&path, contents).expect("write policy file");
        PolicyFile { path }
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for PolicyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Runs `pgpart ARGS` to completion.
pub async fn pgpart(args: &[&str]) -> Run {
    let out = tokio::process::Command::new(PGPART)
        .args(args)
        .env_remove("PGPART_DATABASE_URL")
        .env("PGPART_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {PGPART}: {e}"));
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts `pgpart ARGS` without waiting (stdout/stderr piped).
pub fn spawn(args: &[&str]) -> tokio::process::Child {
    spawn_with_env(args, &[])
}

/// [`spawn`] with `env` added to the child's environment.
pub fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> tokio::process::Child {
    tokio::process::Command::new(PGPART)
        .args(args)
        .env_remove("PGPART_DATABASE_URL")
        .env("PGPART_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {PGPART}: {e}"))
}

/// The arguments of `pgpart apply --policy FILE --database-url URL --now NOW`.
pub fn apply_args<'a>(file: &'a PolicyFile, url: &'a str, now: &'a str) -> [&'a str; 7] {
    [
        "apply",
        "--policy",
        file.path_str(),
        "--database-url",
        url,
        "--now",
        now,
    ]
}

/// `pgpart apply --policy FILE --database-url URL --now NOW` as a child process.
pub fn spawn_apply(file: &PolicyFile, url: &str, now: &str) -> tokio::process::Child {
    spawn(&apply_args(file, url, now))
}

/// Waits for a child from [`spawn`] or [`spawn_apply`].
pub async fn wait(child: tokio::process::Child) -> Run {
    let out = child.wait_with_output().await.expect("wait for pgpart");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `pgpart apply --policy FILE --database-url URL --now NOW`.
pub async fn apply(url: &str, policy: &str, now: &str) -> Run {
    let file = PolicyFile::new(policy);
    wait(spawn_apply(&file, url, now)).await
}

/// `pgpart plan --policy FILE --database-url URL --now NOW` (text output).
pub async fn plan(url: &str, policy: &str, now: &str) -> Run {
    let file = PolicyFile::new(policy);
    pgpart(&[
        "plan",
        "--policy",
        file.path_str(),
        "--database-url",
        url,
        "--now",
        now,
    ])
    .await
}

/// `pgpart plan ... --output json`, parsed; panics unless it exits 0 with valid JSON.
pub async fn plan_json(url: &str, policy: &str, now: &str) -> serde_json::Value {
    let file = PolicyFile::new(policy);
    let run = pgpart(&[
        "plan",
        "--policy",
        file.path_str(),
        "--database-url",
        url,
        "--now",
        now,
        "--output",
        "json",
    ])
    .await;
    run.ok("plan --output json");
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
        panic!(
            "plan --output json printed invalid JSON ({e}):\n{}",
            run.both()
        )
    })
}

/// The plan entry for `table` (schema-qualified) in a `plan --output json` document.
#[track_caller]
pub fn plan_for<'a>(doc: &'a serde_json::Value, table: &str) -> &'a serde_json::Value {
    doc.as_array()
        .expect("plan JSON is an array")
        .iter()
        .find(|p| p["table"] == table)
        .unwrap_or_else(|| panic!("no plan for {table} in {doc:#}"))
}

/// Number of actions over all tables of a `plan --output json` document.
pub fn action_count(doc: &serde_json::Value) -> usize {
    doc.as_array()
        .expect("plan JSON is an array")
        .iter()
        .map(|p| p["actions"].as_array().map(Vec::len).unwrap_or(0))
        .sum()
}

/// One partition of a parent, as the catalog shows it (read with TimeZone UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub schema: String,
    pub name: String,
    /// `pg_get_expr(relpartbound)`, e.g. `FOR VALUES FROM ('2026-11-01 00:00:00+00') TO (...)`.
    pub bound: String,
    /// Carries pgpart's ownership comment.
    pub managed: bool,
    /// For range partitions: the FROM and TO values as text, quotes removed.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// `FOR VALUES FROM (x) TO (y)` → (x, y) with surrounding quotes removed.
pub fn parse_range(bound: &str) -> Option<(String, String)> {
    let rest = bound.strip_prefix("FOR VALUES FROM (")?;
    let (from, rest) = rest.split_once(") TO (")?;
    let to = rest.strip_suffix(')')?;
    let unq = |s: &str| s.trim().trim_matches('\'').to_owned();
    Some((unq(from), unq(to)))
}

/// The attached partitions of `parent` (e.g. `public.events`), ordered by their bound
/// (range partitions by FROM value, then the rest by name).
pub async fn partitions(client: &Client, parent: &str) -> Vec<Part> {
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("set TimeZone");
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, pg_get_expr(c.relpartbound, c.oid),
                    coalesce(obj_description(c.oid, 'pg_class'), '') = 'pgpart: managed partition'
                      OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.conname = 'pgpart_managed')
               FROM pg_inherits i
               JOIN pg_class c ON c.oid = i.inhrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE i.inhparent = $1::text::regclass
              ORDER BY c.relname",
            &[&parent],
        )
        .await
        .unwrap_or_else(|e| panic!("list partitions of {parent}: {e:?}"));
    let mut parts: Vec<Part> = rows
        .iter()
        .map(|r| {
            let bound: String = r.get(2);
            let range = parse_range(&bound);
            Part {
                schema: r.get(0),
                name: r.get(1),
                managed: r.get(3),
                from: range.as_ref().map(|(f, _)| f.clone()),
                to: range.map(|(_, t)| t),
                bound,
            }
        })
        .collect();
    // Range values of one key type sort correctly as text only for times; sort numbers as numbers.
    parts.sort_by(|a, b| match (&a.from, &b.from) {
        (Some(x), Some(y)) => match (x.parse::<i128>(), y.parse::<i128>()) {
            (Ok(i), Ok(j)) => i.cmp(&j),
            _ => x.cmp(y),
        },
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.name.cmp(&b.name),
    });
    parts
}

/// The (from, to) pairs of the range partitions of `parent`, in order.
pub async fn range_bounds(client: &Client, parent: &str) -> Vec<(String, String)> {
    partitions(client, parent)
        .await
        .into_iter()
        .filter_map(|p| Some((p.from?, p.to?)))
        .collect()
}

/// Names of the partitions of `parent`, in bound order.
pub async fn partition_names(client: &Client, parent: &str) -> Vec<String> {
    partitions(client, parent)
        .await
        .into_iter()
        .map(|p| p.name)
        .collect()
}

/// A textual snapshot of everything pgpart could change in a database: schemas, relations
/// (with OIDs when `with_oids`, so a drop-and-recreate shows), partition bounds, comments,
/// inheritance, indexes and constraints. Read with TimeZone UTC.
pub async fn snapshot(client: &Client, with_oids: bool) -> Vec<String> {
    client
        .batch_execute("SET TimeZone = 'UTC'")
        .await
        .expect("set TimeZone");
    let rows = client
        .query(
            "WITH user_ns AS (
               SELECT oid, nspname FROM pg_namespace
                WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname NOT LIKE 'pg\\_toast%'
                  AND nspname NOT LIKE 'pg\\_temp%')
             SELECT 'schema ' || nspname FROM user_ns
             UNION ALL
             SELECT format('rel %s.%s kind=%s oid=%s partition=%s bound=%s comment=%s',
                           n.nspname, c.relname, c.relkind, CASE WHEN $1 THEN c.oid::text ELSE '-' END,
                           c.relispartition, coalesce(pg_get_expr(c.relpartbound, c.oid), ''),
                           coalesce(obj_description(c.oid, 'pg_class'), ''))
               FROM pg_class c JOIN user_ns n ON n.oid = c.relnamespace
             UNION ALL
             SELECT format('inherits %s -> %s pending=%s', i.inhrelid::regclass, i.inhparent::regclass, i.inhdetachpending)
               FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN user_ns n ON n.oid = c.relnamespace
             UNION ALL
             SELECT format('constraint %s on %s: %s validated=%s', co.conname, co.conrelid::regclass,
                           pg_get_constraintdef(co.oid), co.convalidated)
               FROM pg_constraint co JOIN user_ns n ON n.oid = co.connamespace
             UNION ALL
             SELECT format('index %s.%s: %s', schemaname, indexname, indexdef)
               FROM pg_indexes WHERE schemaname IN (SELECT nspname FROM user_ns)
             ORDER BY 1",
            &[&with_oids],
        )
        .await
        .expect("catalog snapshot");
    rows.iter().map(|r| r.get::<_, String>(0)).collect()
}

/// Asserts two snapshots are equal, showing only the lines that differ.
#[track_caller]
pub fn assert_same_snapshot(before: &[String], after: &[String], what: &str) {
    if before != after {
        let gone: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
        let new: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
        panic!("{what}: the catalog changed\n--- only before\n{gone:#?}\n--- only after\n{new:#?}");
    }
}

/// `count(*)` of a relation.
pub async fn count(client: &Client, rel: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {rel}"), &[])
        .await
        .unwrap_or_else(|e| panic!("count {rel}: {e}"))
        .get(0)
}

/// Whether a relation exists (`to_regclass`).
pub async fn exists(client: &Client, rel: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&rel])
        .await
        .expect("to_regclass")
        .get(0)
}

/// Index definitions on `rel` whose access method is `am` (e.g. brin).
pub async fn indexes_using(client: &Client, rel: &str, am: &str) -> Vec<String> {
    client
        .query(
            "SELECT pg_get_indexdef(i.indexrelid)
               FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am a ON a.oid = ic.relam
              WHERE i.indrelid = $1::text::regclass AND a.amname = $2
              ORDER BY 1",
            &[&rel, &am],
        )
        .await
        .unwrap_or_else(|e| panic!("indexes of {rel}: {e}"))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A PartitionPolicy document; `spec` is YAML for the spec body, dedented like Python's `inspect.cleandoc`.
pub fn policy_doc(name: &str, spec: &str) -> String {
    let mut doc = format!(
        "apiVersion: pgpart.io/v1alpha1\nkind: PartitionPolicy\nmetadata:\n  name: {name}\nspec:\n"
    );
    // Like Python's inspect.cleandoc: the first line is taken as it is (trimmed), the
    // common indentation of the others is removed.
    let mut lines = spec.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().map(str::trim_start);
    let rest: Vec<&str> = lines.collect();
    let indent = rest
        .iter()
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    for line in first.into_iter().chain(rest.iter().map(|l| &l[indent..])) {
        doc.push_str("  ");
        doc.push_str(line.trim_end());
        doc.push('\n');
    }
    doc
}

/// Several documents in one file.
pub fn policy_docs(docs: &[String]) -> String {
    docs.join("---\n")
}
