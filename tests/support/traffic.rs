//! Live application traffic against a partitioned table while pgpart works on it, and
//! the bookkeeping to check afterwards that nothing was lost, hidden or doubled.
//!
//! The table has the shape of [`table_sql`]: `(id bigint, at timestamptz, n integer,
//! payload text)`, range-partitioned on `at`, primary key `(id, at)`. The harness chooses
//! every id itself, so it knows what the table must hold at the end ([`Model`]).
//!
//! [`Traffic::start`] opens one connection per task and runs, until [`Traffic::stop`]:
//!
//! * readers: `SELECT count(*) FROM t WHERE id = ANY($1)` over a fixed set of rows nobody
//!   changes (must always be the set's size), now and then the same one row at a time, and
//!   a sample of the rows the writers have committed so far;
//! * writers: inserts of new ids with keys drawn from the given spans (none may fail);
//! * updaters: `UPDATE t SET n = n + 1` by `(id, at)` or by `id` alone over their own rows
//!   (each must match exactly one row);
//! * deleters: each of their own rows deleted once, by `(id, at)` or by `id` (each must
//!   match exactly one row).
//!
//! Every statement's latency is measured; the longest per role is reported, never asserted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Statement};

use super::pg::connect;

/// `(id, at)`: the primary key of one row.
pub type Key = (i64, DateTime<Utc>);

/// `CREATE TABLE <table> ...` in the shape the harness works with.
pub fn table_sql(table: &str) -> String {
    format!(
        "CREATE TABLE {table} (
             id bigint NOT NULL,
             at timestamptz NOT NULL,
             n integer NOT NULL DEFAULT 0,
             payload text NOT NULL,
             PRIMARY KEY (id, at)
         ) PARTITION BY RANGE (at)"
    )
}

/// One row as the harness expects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub n: i32,
    pub payload: String,
}

/// `count` rows with ids from `first_id`, keys spread evenly over [from, to).
pub fn spread_rows(first_id: i64, from: DateTime<Utc>, to: DateTime<Utc>, count: i64) -> Vec<Row> {
    let span = (to - from)
        .num_microseconds()
        .expect("span fits in microseconds");
    (0..count)
        .map(|i| {
            let id = first_id + i;
            Row {
                id,
                at: from + chrono::Duration::microseconds(span / count * i),
                n: 0,
                // Tabs, quotes, backslashes and non-ASCII: a copy that changes them shows.
                payload: format!("seed {id}\t'\"\\ü€ {}", "x".repeat((id % 13) as usize)),
            }
        })
        .collect()
}

/// A seed for the test's random choices: `PGPART_TEST_SEED` if set, else a fresh one.
/// Print it, so a failing run can be repeated.
pub fn seed() -> u64 {
    match std::env::var("PGPART_TEST_SEED") {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("PGPART_TEST_SEED={s:?}: {e}")),
        _ => {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            h.finish()
        }
    }
}

/// SplitMix64: small, seeded, good enough to pick ids and moments.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------
// the expected contents

/// What the table must hold: the seeded rows, then what the traffic reported it did.
#[derive(Clone, Debug, Default)]
pub struct Model {
    pub rows: BTreeMap<i64, Row>,
    /// Ids the traffic deleted (each delete matched one row).
    pub deleted: BTreeSet<i64>,
    /// Ids the traffic inserted.
    pub inserted: BTreeSet<i64>,
    /// Successful updates per id.
    pub updated: BTreeMap<i64, i32>,
}

const SEED_CHUNK: usize = 10_000;

impl Model {
    /// Inserts `rows` into `table` (in chunks, one statement each) and returns the model.
    pub async fn seed(client: &Client, table: &str, rows: Vec<Row>) -> Model {
        let sql = format!(
            "INSERT INTO {table} (id, at, n, payload)
             SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::int4[], $4::text[])"
        );
        for chunk in rows.chunks(SEED_CHUNK) {
            let (ids, ats, ns, payloads) = columns(chunk.iter());
            client
                .execute(&sql, &[&ids, &ats, &ns, &payloads])
                .await
                .unwrap_or_else(|e| panic!("seed {table}: {}", err_text(&e)));
        }
        let mut m = Model::default();
        for r in rows {
            assert!(
                m.rows.insert(r.id, r).is_none(),
                "seed: duplicate id in the fixture"
            );
        }
        m
    }

    /// Adds more rows the test inserted itself (outside the traffic).
    pub fn extend(&mut self, rows: impl IntoIterator<Item = Row>) {
        for r in rows {
            self.rows.insert(r.id, r);
        }
    }

    /// Disjoint sets of keys of the rows with `at` in [from, to), `counts[i]` keys in set
    /// `i`, spread over the span (rows in id order, every k-th taken).
    pub fn disjoint(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        counts: &[usize],
    ) -> Vec<Vec<Key>> {
        let candidates: Vec<Key> = self
            .rows
            .values()
            .filter(|r| r.at >= from && r.at < to)
            .map(|r| (r.id, r.at))
            .collect();
        let total: usize = counts.iter().sum();
        assert!(
            candidates.len() >= total,
            "only {} rows in [{from}, {to}), {total} wanted",
            candidates.len()
        );
        let stride = candidates.len() / total.max(1);
        let mut sets: Vec<Vec<Key>> = counts.iter().map(|&c| Vec::with_capacity(c)).collect();
        let mut set = 0;
        for j in 0..total {
            while sets[set].len() == counts[set] {
                set = (set + 1) % counts.len();
            }
            sets[set].push(candidates[j * stride]);
            set = (set + 1) % counts.len();
        }
        sets
    }

    /// Takes in what the traffic did: its inserts, updates (that matched one row) and
    /// deletes (that matched one row).
    pub fn record(&mut self, report: &Report) {
        for r in &report.inserted {
            self.inserted.insert(r.id);
            self.rows.insert(r.id, r.clone());
        }
        for (id, k) in &report.updated {
            *self.updated.entry(*id).or_default() += *k;
            if let Some(r) = self.rows.get_mut(id) {
                r.n += *k;
            }
        }
        for id in &report.deleted {
            self.deleted.insert(*id);
            self.rows.remove(id);
        }
    }

    /// Removes and returns the rows matching `pred` (e.g. those retention retires).
    pub fn split_off(&mut self, pred: impl Fn(&Row) -> bool) -> Model {
        let ids: Vec<i64> = self
            .rows
            .values()
            .filter(|r| pred(r))
            .map(|r| r.id)
            .collect();
        let mut out = Model::default();
        for id in ids {
            let r = self.rows.remove(&id).expect("id just listed");
            out.rows.insert(id, r);
        }
        out
    }

    /// Rows with `at` in [from, to).
    pub fn count_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
        self.rows
            .values()
            .filter(|r| r.at >= from && r.at < to)
            .count() as i64
    }

    /// Compares what `from` (a relation, or any FROM item with the four columns) holds
    /// with the model: row count and an md5 over all rows in id order, and on a mismatch
    /// which ids are missing, unexpected, doubled or different. Returns the problems found.
    pub async fn check(&self, client: &Client, from: &str, what: &str) -> Vec<String> {
        const DIGEST: &str = "count(*), md5(coalesce(string_agg(format('%s|%s|%s|%s', id, \
             (extract(epoch FROM at) * 1000000)::bigint, n, payload), ',' ORDER BY id, at), ''))";
        let (ids, ats, ns, payloads) = columns(self.rows.values());
        let expected = client
            .query_one(
                &format!(
                    "SELECT {DIGEST} FROM unnest($1::bigint[], $2::timestamptz[], $3::int4[], $4::text[]) \
                     AS x(id, at, n, payload)"
                ),
                &[&ids, &ats, &ns, &payloads],
            )
            .await
            .unwrap_or_else(|e| panic!("{what}: expected digest: {}", err_text(&e)));
        let actual = client
            .query_one(&format!("SELECT {DIGEST} FROM {from} x"), &[])
            .await
            .unwrap_or_else(|e| panic!("{what}: digest of {from}: {}", err_text(&e)));
        let (ec, ed): (i64, String) = (expected.get(0), expected.get(1));
        let (ac, ad): (i64, String) = (actual.get(0), actual.get(1));
        if (ec, &ed) == (ac, &ad) {
            return Vec::new();
        }
        let mut problems = vec![format!(
            "{what}: {from} holds {ac} rows (md5 {ad}), expected {ec} (md5 {ed})"
        )];
        // Which rows differ.
        let rows = client
            .query(&format!("SELECT id, at, n, payload FROM {from} x"), &[])
            .await
            .unwrap_or_else(|e| panic!("{what}: rows of {from}: {}", err_text(&e)));
        let mut found: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
        for r in &rows {
            let row = Row {
                id: r.get(0),
                at: r.get(1),
                n: r.get(2),
                payload: r.get(3),
            };
            found.entry(row.id).or_default().push(row);
        }
        let origin = |id: i64| {
            if self.inserted.contains(&id) {
                "inserted by the traffic"
            } else if self.deleted.contains(&id) {
                "deleted by the traffic"
            } else if self.updated.contains_key(&id) {
                "updated by the traffic"
            } else {
                "seeded"
            }
        };
        let mut missing = Vec::new();
        let mut changed = Vec::new();
        for (id, want) in &self.rows {
            match found.get(id).map(Vec::as_slice) {
                None | Some([]) => missing.push(format!("{id} ({}, at {})", origin(*id), want.at)),
                Some([got]) if got == want => {}
                Some([got]) => changed.push(format!(
                    "{id} ({}): found n={} at {} payload {:?}, expected n={} at {} payload {:?}",
                    origin(*id),
                    got.n,
                    got.at,
                    got.payload,
                    want.n,
                    want.at,
                    want.payload
                )),
                Some(_) => {}
            }
        }
        let doubled: Vec<String> = found
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(id, v)| format!("{id} ({}) x{}", origin(*id), v.len()))
            .collect();
        let unexpected: Vec<String> = found
            .keys()
            .filter(|id| !self.rows.contains_key(id))
            .map(|id| format!("{id} ({})", origin(*id)))
            .collect();
        for (label, v) in [
            ("missing ids", missing),
            ("ids present more than once", doubled),
            ("unexpected ids (e.g. deleted ones back)", unexpected),
            ("rows that differ (counter n = successful updates)", changed),
        ] {
            if !v.is_empty() {
                problems.push(format!(
                    "{what}: {} {label}, e.g. {:#?}",
                    v.len(),
                    first(&v, 8)
                ));
            }
        }
        problems
    }
}

type Columns = (Vec<i64>, Vec<DateTime<Utc>>, Vec<i32>, Vec<String>);

fn columns<'a>(rows: impl Iterator<Item = &'a Row>) -> Columns {
    let mut c: Columns = Default::default();
    for r in rows {
        c.0.push(r.id);
        c.1.push(r.at);
        c.2.push(r.n);
        c.3.push(r.payload.clone());
    }
    c
}

fn first(v: &[String], n: usize) -> &[String] {
    &v[..v.len().min(n)]
}

/// A database error's severity, code, message and detail; other errors as displayed.
pub fn err_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
            if let Some(d) = db.detail() {
                let _ = write!(s, " (detail: {d})");
            }
            s
        }
        None => format!("{e}"),
    }
}

// ---------------------------------------------------------------------------------------
// the traffic

/// The rows the traffic works on. The sets must be disjoint.
#[derive(Clone, Debug, Default)]
pub struct Sets {
    /// Existing rows nobody changes: readers count them.
    pub stable: Vec<Key>,
    /// Existing rows the updaters increment `n` of, over and over.
    pub update: Vec<Key>,
    /// Existing rows the deleters delete, each once.
    pub delete: Vec<Key>,
    /// Writers insert new rows with keys in these spans [from, to), in turn.
    pub insert_spans: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    /// Ids of new rows start here (above every existing id).
    pub first_insert_id: i64,
}

/// How many tasks of each kind, and how fast the deleters go.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub readers: usize,
    pub writers: usize,
    pub updaters: usize,
    pub deleters: usize,
    /// Pause between two deletes of one deleter (its set should last through the action).
    pub delete_every: Duration,
}

impl Default for Shape {
    fn default() -> Shape {
        Shape {
            readers: 2,
            writers: 2,
            updaters: 1,
            deleters: 1,
            delete_every: Duration::from_millis(10),
        }
    }
}

/// Pause between two statements of a reader, writer or updater: keeps two cores usable
/// for the server and pgpart.
const PACE: Duration = Duration::from_millis(1);
/// Inserts per writer at most.
const MAX_INSERTS_PER_WRITER: u64 = 100_000;
/// Messages kept per kind of problem (all are counted).
const KEEP: usize = 40;

/// A count of problems of one kind and the first few, with when they happened.
#[derive(Clone, Debug, Default)]
pub struct Log {
    pub total: u64,
    pub first: Vec<String>,
}

impl Log {
    fn push(&mut self, msg: String) {
        self.total += 1;
        if self.first.len() < KEEP {
            self.first.push(msg);
        }
    }

    fn merge(&mut self, other: Log) {
        self.total += other.total;
        for m in other.first {
            if self.first.len() < KEEP {
                self.first.push(m);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

/// The longest statement one role saw.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub max: Duration,
    /// Which statement and when (`t+` since the traffic started).
    pub what: String,
}

impl Latency {
    fn note(&mut self, took: Duration, what: impl FnOnce() -> String) {
        if took > self.max {
            self.max = took;
            self.what = what();
        }
    }
}

/// What the traffic did and saw.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub ran_for: Duration,
    pub probes: u64,
    pub inserts: u64,
    pub updates: u64,
    pub deletes: u64,
    /// Statements that failed, with the error.
    pub errors: Log,
    /// Probes that did not see every row they should have.
    pub invisible: Log,
    /// Updates of an existing row that did not match exactly one row.
    pub missed_updates: Log,
    /// Deletes of an existing row that did not match exactly one row.
    pub missed_deletes: Log,
    /// Per role: reader, writer, updater, deleter.
    pub latency: BTreeMap<&'static str, Latency>,
    pub inserted: Vec<Row>,
    /// Successful updates per id.
    pub updated: BTreeMap<i64, i32>,
    /// Ids deleted (the delete matched one row).
    pub deleted: Vec<i64>,
}

impl Report {
    fn merge(&mut self, o: Report) {
        self.probes += o.probes;
        self.inserts += o.inserts;
        self.updates += o.updates;
        self.deletes += o.deletes;
        self.errors.merge(o.errors);
        self.invisible.merge(o.invisible);
        self.missed_updates.merge(o.missed_updates);
        self.missed_deletes.merge(o.missed_deletes);
        for (role, l) in o.latency {
            let mine = self.latency.entry(role).or_default();
            if l.max > mine.max {
                *mine = l;
            }
        }
        self.inserted.extend(o.inserted);
        for (id, k) in o.updated {
            *self.updated.entry(id).or_default() += k;
        }
        self.deleted.extend(o.deleted);
    }

    /// One paragraph: counts, problems, the longest statement per role.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "traffic for {:.1?}: {} probes, {} inserts, {} updates, {} deletes; {} errors, {} invisible probes, {} missed updates, {} missed deletes",
            self.ran_for,
            self.probes,
            self.inserts,
            self.updates,
            self.deletes,
            self.errors.total,
            self.invisible.total,
            self.missed_updates.total,
            self.missed_deletes.total
        );
        for (role, l) in &self.latency {
            let _ = write!(
                s,
                "\n  longest {role} statement: {:.1?} ({})",
                l.max, l.what
            );
        }
        s
    }

    /// The broken promises, one entry per kind, each with its first occurrences.
    pub fn problems(&self, what: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (label, log) in [
            ("statements failed", &self.errors),
            ("probes missed rows that were committed", &self.invisible),
            (
                "updates of an existing row did not match exactly one row",
                &self.missed_updates,
            ),
            (
                "deletes of an existing row did not match exactly one row",
                &self.missed_deletes,
            ),
        ] {
            if !log.is_empty() {
                out.push(format!(
                    "{what}: {} {label}, e.g. {:#?}",
                    log.total,
                    first(&log.first, 6)
                ));
            }
        }
        out
    }
}

struct Shared {
    stop: AtomicBool,
    ops: AtomicU64,
    probes: AtomicU64,
    /// Ids of rows the writers have committed.
    committed: Mutex<Vec<i64>>,
    /// One permit per task once it has run its first statement.
    ready: Semaphore,
    /// Woken on every statement, for [`Traffic::until_ops`].
    progress: Notify,
    /// Misses so far: invisible probes, missed updates, missed deletes.
    missed: [AtomicU64; 3],
    t0: Instant,
}

impl Shared {
    /// Log a miss of `kind` (0 invisible probe, 1 missed update, 2 missed delete).
    fn miss(&self, kind: usize, log: &mut Log, msg: String) {
        self.missed[kind].fetch_add(1, Ordering::SeqCst);
        log.push(msg);
    }

    fn stamp(&self) -> String {
        format!("t+{:.3}s", self.t0.elapsed().as_secs_f64())
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One more statement done.
    fn bump(&self) {
        self.ops.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_waiters();
    }
}

/// Running traffic; [`Traffic::stop`] ends it and returns the [`Report`].
pub struct Traffic {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<Report>>,
}

impl Traffic {
    /// Starts traffic of the default [`Shape`] on `table` (all connections are opened and
    /// statements prepared before this returns).
    pub async fn start(url: &str, table: &str, sets: Sets) -> Traffic {
        Traffic::start_with(url, table, sets, Shape::default(), seed()).await
    }

    pub async fn start_with(
        url: &str,
        table: &str,
        sets: Sets,
        shape: Shape,
        seed: u64,
    ) -> Traffic {
        assert!(
            !sets.stable.is_empty() && !sets.insert_spans.is_empty(),
            "traffic needs stable rows and insert spans"
        );
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            ops: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            committed: Mutex::new(Vec::new()),
            ready: Semaphore::new(0),
            progress: Notify::new(),
            missed: Default::default(),
            t0: Instant::now(),
        });
        let mut tasks = Vec::new();
        let stable_ids: Arc<Vec<i64>> = Arc::new(sets.stable.iter().map(|k| k.0).collect());
        for r in 0..shape.readers {
            let c = connect(url).await;
            let probe = prepare(
                &c,
                format!("SELECT count(*) FROM {table} WHERE id = ANY($1)"),
            )
            .await;
            let one = prepare(&c, format!("SELECT count(*) FROM {table} WHERE id = $1")).await;
            let (shared, ids) = (shared.clone(), stable_ids.clone());
            let rng = Rng::new(seed ^ (0x100 + r as u64));
            tasks.push(tokio::spawn(reader(c, probe, one, ids, shared, rng, r)));
        }
        for w in 0..shape.writers {
            let c = connect(url).await;
            let ins = prepare(
                &c,
                format!("INSERT INTO {table} (id, at, payload) VALUES ($1, $2, $3)"),
            )
            .await;
            let spans = sets.insert_spans.clone();
            let rng = Rng::new(seed ^ (0x200 + w as u64));
            let job = Writer {
                w,
                writers: shape.writers,
                first_id: sets.first_insert_id,
                spans,
            };
            tasks.push(tokio::spawn(writer(c, ins, job, shared.clone(), rng)));
        }
        for (u, own) in split(&sets.update, shape.updaters).into_iter().enumerate() {
            let c = connect(url).await;
            let by_key = prepare(
                &c,
                format!("UPDATE {table} SET n = n + 1 WHERE id = $1 AND at = $2"),
            )
            .await;
            let by_id = prepare(&c, format!("UPDATE {table} SET n = n + 1 WHERE id = $1")).await;
            tasks.push(tokio::spawn(updater(
                c,
                by_key,
                by_id,
                own,
                shared.clone(),
                u,
            )));
        }
        for (d, own) in split(&sets.delete, shape.deleters).into_iter().enumerate() {
            let c = connect(url).await;
            let by_key =
                prepare(&c, format!("DELETE FROM {table} WHERE id = $1 AND at = $2")).await;
            let by_id = prepare(&c, format!("DELETE FROM {table} WHERE id = $1")).await;
            tasks.push(tokio::spawn(deleter(
                c,
                by_key,
                by_id,
                own,
                shared.clone(),
                d,
                shape.delete_every,
            )));
        }
        Traffic { shared, tasks }
    }

    /// Waits until every task has run its first statement.
    pub async fn started(&self) {
        let n = u32::try_from(self.tasks.len()).expect("few tasks");
        self.shared
            .ready
            .acquire_many(n)
            .await
            .expect("traffic semaphore")
            .forget();
        // Give the permits back: a second call returns at once.
        self.shared.ready.add_permits(n as usize);
    }

    /// Statements run so far, over all tasks.
    pub fn ops(&self) -> u64 {
        self.shared.ops.load(Ordering::SeqCst)
    }

    /// Waits until `more` statements have run from now on.
    pub async fn until_ops(&self, more: u64) {
        let target = self.ops() + more;
        loop {
            let woken = self.shared.progress.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.ops() >= target {
                return;
            }
            woken.await;
        }
    }

    /// Waits until the traffic has seen each kind of miss (for the harness's self-check).
    pub async fn until_each_kind_missed(&self) {
        loop {
            let woken = self.shared.progress.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self
                .shared
                .missed
                .iter()
                .all(|m| m.load(Ordering::SeqCst) > 0)
            {
                return;
            }
            woken.await;
        }
    }

    /// Reader probes completed so far.
    pub fn probes(&self) -> u64 {
        self.shared.probes.load(Ordering::SeqCst)
    }

    /// Since the traffic started, as in the report's messages.
    pub fn stamp(&self) -> String {
        self.shared.stamp()
    }

    /// Stops every task and returns what they did and saw.
    pub async fn stop(self) -> Report {
        self.shared.stop.store(true, Ordering::SeqCst);
        let mut report = Report::default();
        for t in self.tasks {
            match t.await {
                Ok(r) => report.merge(r),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("traffic task: {e}"),
            }
        }
        report.ran_for = self.shared.t0.elapsed();
        report
    }
}

async fn prepare(c: &Client, sql: String) -> Statement {
    c.prepare(&sql)
        .await
        .unwrap_or_else(|e| panic!("prepare {sql}: {}", err_text(&e)))
}

/// `keys` dealt round-robin into `n` sets (none when `n` is 0 or there are no keys).
fn split(keys: &[Key], n: usize) -> Vec<Vec<Key>> {
    if n == 0 || keys.is_empty() {
        return Vec::new();
    }
    let mut out = vec![Vec::new(); n];
    for (i, k) in keys.iter().enumerate() {
        out[i % n].push(*k);
    }
    out
}

/// Marks the end of a task's first statement (once).
fn first_done(shared: &Shared, done: &mut bool) {
    if !*done {
        *done = true;
        shared.ready.add_permits(1);
    }
}

async fn reader(
    c: Client,
    probe: Statement,
    one: Statement,
    ids: Arc<Vec<i64>>,
    shared: Arc<Shared>,
    mut rng: Rng,
    r: usize,
) -> Report {
    let mut rep = Report::default();
    let mut lat = Latency::default();
    let mut done = false;
    let want = ids.len() as i64;
    let mut i = 0u64;
    while !shared.stopped() {
        // The whole stable set at once.
        let t = Instant::now();
        let res = c.query_one(&probe, &[&*ids]).await;
        lat.note(t.elapsed(), || {
            format!("count of the {want} stable rows at {}", shared.stamp())
        });
        match res {
            Ok(row) => {
                let got: i64 = row.get(0);
                if got != want {
                    shared.miss(
                        0,
                        &mut rep.invisible,
                        format!(
                            "{} reader {r}: count of the stable rows is {got}, expected {want}",
                            shared.stamp()
                        ),
                    );
                }
            }
            Err(e) => rep.errors.push(format!(
                "{} reader {r}: count of the stable rows: {}",
                shared.stamp(),
                err_text(&e)
            )),
        }
        rep.probes += 1;
        shared.probes.fetch_add(1, Ordering::SeqCst);
        shared.bump();
        first_done(&shared, &mut done);

        // Now and then, a few stable rows one by one.
        if i % 8 == 7 {
            for _ in 0..4 {
                let id = ids[rng.below(ids.len() as u64) as usize];
                let t = Instant::now();
                let res = c.query_one(&one, &[&id]).await;
                lat.note(t.elapsed(), || {
                    format!("lookup of stable id {id} at {}", shared.stamp())
                });
                match res {
                    Ok(row) if row.get::<_, i64>(0) == 1 => {}
                    Ok(row) => shared.miss(
                        0,
                        &mut rep.invisible,
                        format!(
                            "{} reader {r}: stable id {id} found {} times, expected once",
                            shared.stamp(),
                            row.get::<_, i64>(0)
                        ),
                    ),
                    Err(e) => rep.errors.push(format!(
                        "{} reader {r}: lookup of stable id {id}: {}",
                        shared.stamp(),
                        err_text(&e)
                    )),
                }
                rep.probes += 1;
                shared.bump();
            }
        }

        // Now and then, a sample of the rows the writers committed so far.
        if i % 4 == 3 {
            let sample: Vec<i64> = {
                let committed = shared.committed.lock().expect("committed ids");
                if committed.is_empty() {
                    Vec::new()
                } else {
                    let mut s: Vec<i64> = (0..64)
                        .map(|_| committed[rng.below(committed.len() as u64) as usize])
                        .collect();
                    s.sort_unstable();
                    s.dedup();
                    s
                }
            };
            if !sample.is_empty() {
                let t = Instant::now();
                let res = c.query_one(&probe, &[&sample]).await;
                lat.note(t.elapsed(), || {
                    format!(
                        "count of {} committed new rows at {}",
                        sample.len(),
                        shared.stamp()
                    )
                });
                match res {
                    Ok(row) if row.get::<_, i64>(0) == sample.len() as i64 => {}
                    Ok(row) => shared.miss(
                        0,
                        &mut rep.invisible,
                        format!(
                            "{} reader {r}: count of {} committed new rows is {}",
                            shared.stamp(),
                            sample.len(),
                            row.get::<_, i64>(0)
                        ),
                    ),
                    Err(e) => rep.errors.push(format!(
                        "{} reader {r}: count of committed new rows: {}",
                        shared.stamp(),
                        err_text(&e)
                    )),
                }
                rep.probes += 1;
                shared.bump();
            }
        }
        i += 1;
        tokio::time::sleep(PACE).await;
    }
    rep.latency.insert("reader", lat);
    rep
}

struct Writer {
    w: usize,
    writers: usize,
    first_id: i64,
    spans: Vec<(DateTime<Utc>, DateTime<Utc>)>,
}

async fn writer(
    c: Client,
    ins: Statement,
    job: Writer,
    shared: Arc<Shared>,
    mut rng: Rng,
) -> Report {
    let mut rep = Report::default();
    let mut lat = Latency::default();
    let mut done = false;
    let mut k = 0u64;
    while !shared.stopped() && k < MAX_INSERTS_PER_WRITER {
        let id = job.first_id + (k as i64) * job.writers as i64 + job.w as i64;
        let (from, to) = job.spans[(k as usize + job.w) % job.spans.len()];
        let span = (to - from).num_microseconds().expect("span fits").max(1) as u64;
        let at = from + chrono::Duration::microseconds(rng.below(span) as i64);
        let payload = format!("writer {} row {k}", job.w);
        let t = Instant::now();
        let res = c.execute(&ins, &[&id, &at, &payload]).await;
        lat.note(t.elapsed(), || {
            format!("insert of id {id} at {at} at {}", shared.stamp())
        });
        match res {
            Ok(1) => {
                rep.inserted.push(Row {
                    id,
                    at,
                    n: 0,
                    payload,
                });
                shared.committed.lock().expect("committed ids").push(id);
            }
            Ok(n) => rep.errors.push(format!(
                "{} writer {}: insert of id {id} at {at} reported {n} rows",
                shared.stamp(),
                job.w
            )),
            Err(e) => rep.errors.push(format!(
                "{} writer {}: insert of id {id} at {at}: {}",
                shared.stamp(),
                job.w,
                err_text(&e)
            )),
        }
        rep.inserts += 1;
        shared.bump();
        first_done(&shared, &mut done);
        k += 1;
        tokio::time::sleep(PACE).await;
    }
    rep.latency.insert("writer", lat);
    rep
}

async fn updater(
    c: Client,
    by_key: Statement,
    by_id: Statement,
    own: Vec<Key>,
    shared: Arc<Shared>,
    u: usize,
) -> Report {
    let mut rep = Report::default();
    let mut lat = Latency::default();
    let mut done = false;
    let mut j = 0usize;
    while !shared.stopped() {
        let (id, at) = own[j % own.len()];
        let t = Instant::now();
        let (res, how) = if j.is_multiple_of(2) {
            (c.execute(&by_key, &[&id, &at]).await, "by (id, at)")
        } else {
            (c.execute(&by_id, &[&id]).await, "by id")
        };
        lat.note(t.elapsed(), || {
            format!("update of id {id} {how} at {}", shared.stamp())
        });
        match res {
            Ok(1) => *rep.updated.entry(id).or_default() += 1,
            Ok(n) => shared.miss(
                1,
                &mut rep.missed_updates,
                format!(
                    "{} updater {u}: update of id {id} (at {at}) {how} matched {n} rows",
                    shared.stamp()
                ),
            ),
            Err(e) => rep.errors.push(format!(
                "{} updater {u}: update of id {id} {how}: {}",
                shared.stamp(),
                err_text(&e)
            )),
        }
        rep.updates += 1;
        shared.bump();
        first_done(&shared, &mut done);
        j += 1;
        tokio::time::sleep(PACE).await;
    }
    rep.latency.insert("updater", lat);
    rep
}

async fn deleter(
    c: Client,
    by_key: Statement,
    by_id: Statement,
    own: Vec<Key>,
    shared: Arc<Shared>,
    d: usize,
    every: Duration,
) -> Report {
    let mut rep = Report::default();
    let mut lat = Latency::default();
    let mut done = false;
    for (j, (id, at)) in own.into_iter().enumerate() {
        if shared.stopped() {
            break;
        }
        let t = Instant::now();
        let (res, how) = if j.is_multiple_of(2) {
            (c.execute(&by_key, &[&id, &at]).await, "by (id, at)")
        } else {
            (c.execute(&by_id, &[&id]).await, "by id")
        };
        lat.note(t.elapsed(), || {
            format!("delete of id {id} {how} at {}", shared.stamp())
        });
        match res {
            Ok(1) => rep.deleted.push(id),
            Ok(n) => shared.miss(
                2,
                &mut rep.missed_deletes,
                format!(
                    "{} deleter {d}: delete of id {id} (at {at}) {how} matched {n} rows",
                    shared.stamp()
                ),
            ),
            Err(e) => rep.errors.push(format!(
                "{} deleter {d}: delete of id {id} {how}: {}",
                shared.stamp(),
                err_text(&e)
            )),
        }
        rep.deletes += 1;
        shared.bump();
        first_done(&shared, &mut done);
        tokio::time::sleep(every).await;
    }
    // A deleter with nothing (left) to delete still counts as started.
    first_done(&shared, &mut done);
    rep.latency.insert("deleter", lat);
    rep
}
