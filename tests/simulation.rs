//! Years of operation, simulated: the real engine (`pgpart apply`) against a real
//! PostgreSQL of the test's own, one pass per simulated day, with a seeded generator of
//! what happens between passes: rows at now, late rows and rows far ahead, policy edits
//! (premake, retention, suspend, interval, time zone), SIGKILL in the middle of a pass, two
//! passes at once, clock jumps forward and back, and a PostgreSQL restart. The tables' keys
//! are timestamptz, bigint, and time held in a bigint (epochMillis) and in a UUIDv7.
//!
//! After every completed pass, for every table:
//! * every key from now to the end of the premake window lands in a partition (probed by
//!   inserts that are rolled back), or the pass reported an error for that table;
//! * every row inserted is still there, once (in the parent, or in a retired table for
//!   Detach and MoveToSchema; for Drop, every row newer than the cutoff);
//! * no partition left whose range ends after now − keep, none that pgpart did not make,
//!   never more than maxPerPass in a pass, and the expired ones go at that pace;
//! * no advisory lock and no pgpart session left behind; the plan stays the size of the
//!   window.
//!
//! `PGPART_SIM_SEEDS=7,8` and `PGPART_SIM_DAYS=3650` run other seeds or longer; a failure
//! prints its seed, day and the events so far, and replays from the seed.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use pgpart::policy::units::{TimeStep, Zone};
use support::cli::{self, PolicyFile};
use support::clock;
use support::faults::OwnPg;
use tokio_postgres::Client;

/// xorshift64*: small, seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in lo..hi.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo).max(1) as u64) as i64
    }
    /// True once in `n` on average.
    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

#[derive(Clone, Debug)]
struct Pol {
    table: &'static str,
    /// "1 hour" … "1 year", or an integer step.
    interval: String,
    premake: u32,
    zone: &'static str,
    /// keep, action, maxPerPass.
    retention: Option<(String, &'static str, u32)>,
    /// onRows of a DEFAULT partition pgpart keeps.
    default: Option<&'static str>,
    suspend_until: Option<i64>,
    /// `keyEncoding` of a time key held in a uuid or an integer (None: timestamptz).
    encoding: Option<&'static str>,
}

impl Pol {
    fn time(&self) -> bool {
        self.interval.contains(' ')
    }

    fn step(&self) -> TimeStep {
        self.interval.parse().expect("interval parses")
    }

    fn zone(&self) -> Zone {
        self.zone.parse().expect("zone parses")
    }

    /// The key column's type.
    fn column(&self) -> &'static str {
        match self.encoding {
            _ if !self.time() => "bigint",
            None => "timestamptz",
            Some("uuidv7") => "uuid",
            Some(_) => "bigint",
        }
    }

    /// Units of an epoch encoding per second.
    fn per_second(&self) -> i64 {
        match self.encoding {
            Some("epochSeconds") => 1,
            Some("epochMillis") => 1_000,
            Some("epochMicros") => 1_000_000,
            other => panic!("{other:?} is not an epoch encoding"),
        }
    }

    /// SQL for the key of a row at the instant `at` (RFC 3339), made by the server.
    fn key_sql(&self, at: &str) -> String {
        match self.encoding {
            None => format!("'{at}'::timestamptz"),
            Some("uuidv7") => format!("uuidv7_at('{at}')"),
            Some(_) => format!(
                "floor(extract(epoch FROM '{at}'::timestamptz) * {})::bigint",
                self.per_second()
            ),
        }
    }

    /// SQL for the least key at or after the instant `at`: an instant, or its encoding with
    /// nothing below the millisecond (UUIDv7) or the unit (epoch).
    fn least_key_sql(&self, at: &str) -> String {
        match self.encoding {
            Some("uuidv7") => format!(
                "(lpad(to_hex(floor(extract(epoch FROM '{at}'::timestamptz) * 1000)::bigint), 12, '0') || repeat('0', 20))::uuid"
            ),
            _ => self.key_sql(at),
        }
    }

    /// The instant a time bound (catalog text under TimeZone UTC) stands for, decoded by
    /// hand for an encoded key: a UUIDv7's first 48 bits, or the epoch count.
    fn bound_instant(&self, bound: &str) -> DateTime<Utc> {
        let bad =
            |e: &dyn std::fmt::Display| -> ! { panic!("{} bound {bound:?}: {e}", self.table) };
        match self.encoding {
            None => DateTime::parse_from_str(bound, "%Y-%m-%d %H:%M:%S%#z")
                .unwrap_or_else(|e| bad(&e))
                .to_utc(),
            Some("uuidv7") => {
                let hex: String = bound.chars().filter(|c| *c != '-').take(12).collect();
                let ms = i64::from_str_radix(&hex, 16).unwrap_or_else(|e| bad(&e));
                DateTime::from_timestamp_millis(ms).unwrap_or_else(|| bad(&"out of range"))
            }
            Some(_) => {
                let n: i64 = bound.parse().unwrap_or_else(|e| bad(&e));
                let per = self.per_second();
                DateTime::from_timestamp(
                    n.div_euclid(per),
                    (n.rem_euclid(per) * (1_000_000_000 / per)) as u32,
                )
                .unwrap_or_else(|| bad(&"out of range"))
            }
        }
    }

    fn yaml(&self, day: i64) -> String {
        let mut spec = format!(
            "table: public.{}\nrange: {{interval: \"{}\", premake: {}{}}}\n",
            self.table,
            self.interval,
            self.premake,
            if self.time() {
                format!(
                    ", timeZone: \"{}\"{}",
                    self.zone,
                    self.encoding
                        .map(|e| format!(", keyEncoding: {e}"))
                        .unwrap_or_default()
                )
            } else {
                String::new()
            }
        );
        if let Some((keep, action, max)) = &self.retention {
            let schema = if *action == "MoveToSchema" {
                ", schema: archive"
            } else {
                ""
            };
            let _ = writeln!(
                spec,
                "retention: {{keep: \"{keep}\", action: {action}{schema}, maxPerPass: {max}}}"
            );
        }
        if let Some(on_rows) = self.default {
            let _ = writeln!(
                spec,
                "defaultPartition: {{create: true, onRows: {on_rows}}}"
            );
        }
        if self.suspend_until.is_some_and(|d| day < d) {
            spec.push_str("suspend: true\n");
        }
        cli::policy_doc(self.table, &spec)
    }

    fn suspended(&self, day: i64) -> bool {
        self.suspend_until.is_some_and(|d| day < d)
    }

    fn max_per_pass(&self) -> usize {
        self.retention.as_ref().map_or(0, |(_, _, m)| *m as usize)
    }
}

fn policies() -> Vec<Pol> {
    let ret = |keep: &str, action, max| Some((keep.to_owned(), action, max));
    vec![
        Pol {
            table: "hourly",
            interval: "1 hour".into(),
            premake: 36,
            zone: "UTC",
            retention: ret("14 days", "Drop", 48),
            default: None,
            suspend_until: None,
            encoding: None,
        },
        Pol {
            table: "daily",
            interval: "1 day".into(),
            premake: 10,
            zone: "Europe/Berlin",
            retention: ret("60 days", "Detach", 5),
            default: Some("Report"),
            suspend_until: None,
            encoding: None,
        },
        Pol {
            table: "weekly",
            interval: "1 week".into(),
            premake: 4,
            zone: "America/New_York",
            retention: ret("20 weeks", "MoveToSchema", 3),
            default: None,
            suspend_until: None,
            encoding: None,
        },
        Pol {
            table: "monthly",
            interval: "1 month".into(),
            premake: 3,
            zone: "America/New_York",
            retention: ret("12 months", "Drop", 2),
            default: Some("Repair"),
            suspend_until: None,
            encoding: None,
        },
        Pol {
            table: "quarterly",
            interval: "1 quarter".into(),
            premake: 2,
            zone: "UTC",
            retention: None,
            default: None,
            suspend_until: None,
            encoding: Some("epochMillis"),
        },
        Pol {
            table: "yearly",
            interval: "1 year".into(),
            premake: 1,
            zone: "+05:30",
            retention: None,
            default: None,
            suspend_until: None,
            encoding: None,
        },
        Pol {
            table: "orders",
            interval: "1 week".into(),
            premake: 3,
            zone: "Europe/Berlin",
            retention: ret("8 weeks", "Drop", 3),
            default: Some("Repair"),
            suspend_until: None,
            encoding: Some("uuidv7"),
        },
        Pol {
            table: "ids",
            interval: "1000".into(),
            premake: 3,
            zone: "UTC",
            retention: ret("20000", "Detach", 4),
            default: None,
            suspend_until: None,
            encoding: None,
        },
    ]
}

/// What the simulation knows independently of pgpart: the rows it inserted.
#[derive(Default)]
struct Rows {
    /// Rows inserted per table.
    count: BTreeMap<&'static str, i64>,
    /// Keys of the rows of Drop tables (time keys as instants).
    keys: BTreeMap<&'static str, Vec<DateTime<Utc>>>,
    /// The largest integer key inserted.
    max_id: i64,
    /// Per Drop table, the latest cutoff any pass had: rows older than it may be gone even
    /// after the clock went back.
    high_cutoff: BTreeMap<&'static str, String>,
}

/// One attached partition as the catalog says: name, bound ends as text, pgpart's.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Attached {
    name: String,
    from: String,
    to: String,
    managed: bool,
}

async fn attached(c: &Client, table: &str) -> Vec<Attached> {
    cli::partitions(c, &format!("public.{table}"))
        .await
        .into_iter()
        .filter_map(|p| {
            Some(Attached {
                from: p.from?,
                to: p.to?,
                name: p.name,
                managed: p.managed,
            })
        })
        .collect()
}

/// Whether a bound of `p` (catalog text under TimeZone UTC, an encoded time, or an integer)
/// is at or before the cutoff (RFC 3339, or an integer).
fn ends_by(p: &Pol, bound: &str, cutoff: &str) -> bool {
    if p.time() {
        p.bound_instant(bound) <= clock::parse(cutoff)
    } else {
        let n = |s: &str| s.parse::<i64>().unwrap_or_else(|e| panic!("{s:?}: {e}"));
        n(bound) <= n(cutoff)
    }
}

struct Sim {
    seed: u64,
    server: OwnPg,
    client: Client,
    url: String,
    pols: Vec<Pol>,
    rows: Rows,
    log: String,
}

impl Sim {
    fn fail(&self, day: i64, now: DateTime<Utc>, what: String) -> ! {
        panic!(
            "simulation seed {} failed on day {day} ({now}): {what}\nreplay: PGPART_SIM_SEEDS={} cargo test --test simulation\nevents:\n{}",
            self.seed, self.seed, self.log
        );
    }

    fn file(&self, day: i64) -> PolicyFile {
        let docs: Vec<String> = self.pols.iter().map(|p| p.yaml(day)).collect();
        PolicyFile::new(&cli::policy_docs(&docs))
    }

    async fn sql(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("seed {}: {sql}: {e}", self.seed));
    }

    /// The retention cutoff of `p` at `now`, as SQL text comparable with its bounds.
    fn cutoff(&self, p: &Pol, now: DateTime<Utc>) -> Option<String> {
        let (keep, ..) = p.retention.as_ref()?;
        Some(if p.time() {
            let step: TimeStep = keep.parse().expect("keep parses");
            let zone = p.zone();
            let local = step.shift(zone.to_local(now), -1);
            clock::rfc3339(zone.to_instant(local))
        } else {
            (self.rows.max_id - keep.parse::<i64>().expect("integer keep")).to_string()
        })
    }

    /// Keys from now to the end of the premake window: now, every slot start, the last
    /// instant, and a few at random.
    fn window_probes(&self, p: &Pol, now: DateTime<Utc>, rng: &mut Rng) -> Vec<String> {
        if p.time() {
            let (step, zone) = (p.step(), p.zone());
            let current = step.floor(zone.to_local(now));
            let end = zone.to_instant(step.shift(current, p.premake as i64 + 1));
            let mut v = vec![now, end - chrono::Duration::seconds(1)];
            for k in 1..=p.premake as i64 {
                v.push(zone.to_instant(step.shift(current, k)));
            }
            let span = (end - now).num_seconds().max(1);
            for _ in 0..4 {
                v.push(now + chrono::Duration::seconds(rng.range(0, span)));
            }
            v.into_iter().map(clock::rfc3339).collect()
        } else {
            let step: i64 = p.interval.parse().unwrap();
            let current = self.rows.max_id.div_euclid(step) * step;
            let end = current + step * (p.premake as i64 + 1);
            let mut v: Vec<i64> = (0..=p.premake as i64).map(|k| current + k * step).collect();
            v.push(self.rows.max_id);
            v.push(end - 1);
            v.into_iter().map(|i| i.to_string()).collect()
        }
    }

    /// Insert `keys` into `p`'s table in a transaction that is rolled back: the relation
    /// each row went to, or the error.
    async fn probe(&mut self, p: &Pol, keys: &[String]) -> Result<Vec<String>, String> {
        let key = if p.time() { "at" } else { "id" };
        let values: Vec<String> = keys
            .iter()
            .map(|k| match p.time() {
                true => format!("({})", p.key_sql(k)),
                false => format!("({k}::bigint)"),
            })
            .collect();
        let tx = self.client.transaction().await.map_err(|e| e.to_string())?;
        let rows = tx
            .query(
                &format!(
                    "INSERT INTO public.{} ({key}) VALUES {} RETURNING tableoid::regclass::text",
                    p.table,
                    values.join(", ")
                ),
                &[],
            )
            .await
            .map_err(|e| match e.as_db_error() {
                Some(d) => d.message().to_owned(),
                None => e.to_string(),
            });
        let _ = tx.rollback().await;
        rows.map(|r| r.iter().map(|r| r.get(0)).collect())
    }

    /// Rows at now (and for some tables late ones and far-out ones), counted.
    async fn insert_rows(&mut self, now: DateTime<Utc>, rng: &mut Rng) {
        for i in 0..self.pols.len() {
            let p = self.pols[i].clone();
            let n = rng.range(1, 4);
            let mut keys = Vec::new();
            if p.time() {
                for _ in 0..n {
                    keys.push(now - chrono::Duration::seconds(rng.range(0, 600)));
                }
                // Late rows, and rows far ahead (they wait in the default partition).
                if p.default.is_some() && rng.one_in(5) {
                    keys.push(now - chrono::Duration::hours(rng.range(1, 24 * 5)));
                }
                if p.default == Some("Repair") && rng.one_in(30) {
                    keys.push(now + chrono::Duration::days(rng.range(200, 700)));
                    let _ = writeln!(self.log, "  a row far ahead in {}", p.table);
                }
                let values: Vec<String> = keys
                    .iter()
                    .map(|k| format!("({})", p.key_sql(&clock::rfc3339(*k))))
                    .collect();
                let sql = format!(
                    "INSERT INTO public.{} (at) VALUES {}",
                    p.table,
                    values.join(", ")
                );
                if let Err(e) = self.client.batch_execute(&sql).await {
                    // Only a key without a partition may be refused, and only when the
                    // pass before reported that table (the window check has its say).
                    let _ = writeln!(self.log, "  insert into {} refused: {e}", p.table);
                    continue;
                }
                if matches!(p.retention, Some((_, "Drop", _))) {
                    self.rows
                        .keys
                        .entry(p.table)
                        .or_default()
                        .extend(keys.iter().copied());
                }
            } else {
                let from = self.rows.max_id + 1;
                let to = self.rows.max_id + rng.range(50, 400);
                let sql = format!(
                    "INSERT INTO public.{} (id) SELECT generate_series({from}, {to})",
                    p.table
                );
                if let Err(e) = self.client.batch_execute(&sql).await {
                    let _ = writeln!(self.log, "  insert into {} refused: {e}", p.table);
                    continue;
                }
                self.rows.max_id = to;
                keys.resize((to - from + 1) as usize, now);
            }
            *self.rows.count.entry(p.table).or_default() += keys.len() as i64;
        }
    }

    /// `pgpart apply` of `file` at `now`.
    fn apply_args(&self, file: &PolicyFile, now: DateTime<Utc>) -> Vec<String> {
        [
            "apply",
            "--policy",
            file.path_str(),
            "--database-url",
            &self.url,
            "--now",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([clock::rfc3339(now)])
        .collect()
    }

    /// One `pgpart apply --output json` at `now`; its documents by table.
    async fn pass(
        &self,
        day: i64,
        now: DateTime<Utc>,
    ) -> (i32, BTreeMap<String, serde_json::Value>) {
        let file = self.file(day);
        let mut args = self.apply_args(&file, now);
        args.extend(["--output".into(), "json".into()]);
        let run = cli::pgpart(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
        if run.panicked() || ![0, 1].contains(&run.code) {
            self.fail(
                day,
                now,
                format!("apply exited {}:\n{}", run.code, run.both()),
            );
        }
        let docs: Vec<serde_json::Value> = serde_json::from_str(&run.stdout).unwrap_or_else(|e| {
            self.fail(
                day,
                now,
                format!("apply printed no JSON ({e}):\n{}", run.both()),
            )
        });
        let by_table = docs
            .into_iter()
            .map(|d| (d["table"].as_str().unwrap_or_default().to_owned(), d))
            .collect();
        (run.code, by_table)
    }

    /// Start `pgpart apply` and SIGKILL it after `ms` milliseconds.
    async fn killed_pass(&self, day: i64, now: DateTime<Utc>, ms: u64) {
        let file = self.file(day);
        let args = self.apply_args(&file, now);
        let mut child = cli::spawn(&args.iter().map(String::as_str).collect::<Vec<_>>());
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => { let _ = child.start_kill(); }
            _ = child.wait() => {}
        }
        let _ = cli::wait(child).await;
    }

    async fn snapshot(&self) -> BTreeMap<&'static str, Vec<Attached>> {
        let mut m = BTreeMap::new();
        for p in &self.pols {
            m.insert(p.table, attached(&self.client, p.table).await);
        }
        m
    }

    /// Rows of `table` in the parent and in its retired tables.
    async fn rows_everywhere(&self, table: &str) -> i64 {
        let retired: Vec<String> = self
            .client
            .query(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE n.nspname IN ('public', 'archive') AND c.relkind = 'r' AND NOT c.relispartition
                    AND c.relname LIKE $1",
                &[&format!("{table}\\_%")],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        // One statement for all of them: a retired table is counted every day, and they pile
        // up over the years (a count each made the simulation quadratic in its length).
        let counts: Vec<String> = std::iter::once(format!("public.{table}"))
            .chain(retired)
            .map(|t| format!("SELECT count(*) AS n FROM {t}"))
            .collect();
        self.client
            .query_one(
                &format!(
                    "SELECT sum(n)::bigint FROM ({}) c",
                    counts.join(" UNION ALL ")
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("count the rows of {table}: {e}"))
            .get(0)
    }

    /// Everything the module doc promises, after a pass at `now`.
    #[allow(clippy::too_many_arguments)]
    async fn check(
        &mut self,
        day: i64,
        now: DateTime<Utc>,
        docs: &BTreeMap<String, serde_json::Value>,
        before: &BTreeMap<&'static str, Vec<Attached>>,
        passes: usize,
        foreign: &str,
        rng: &mut Rng,
    ) {
        // Sessions and advisory locks end with the process.
        let mut left = (0, 0);
        for _ in 0..1000 {
            let r = self
                .client
                .query_one(
                    "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'),
                            (SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpart')",
                    &[],
                )
                .await
                .unwrap();
            left = (r.get::<_, i64>(0), r.get::<_, i64>(1));
            if left == (0, 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if left != (0, 0) {
            self.fail(
                day,
                now,
                format!(
                    "left behind: {} advisory locks, {} sessions",
                    left.0, left.1
                ),
            );
        }
        let after = self.snapshot().await;
        for p in self.pols.clone() {
            let doc = &docs[&format!("public.{}", p.table)];
            let reported = !doc["error"].is_null();
            // The window.
            if !p.suspended(day) && !reported {
                let probes = self.window_probes(&p, now, rng);
                match self.probe(&p, &probes).await {
                    Err(e) => self.fail(day, now, format!("{}: a key in the window has no partition and the pass said nothing: {e}\n{doc:#}", p.table)),
                    Ok(rels) if rels.iter().any(|r| r.ends_with("_default")) => {
                        self.fail(day, now, format!("{}: a key in the window lands in the default: {probes:?} -> {rels:?}\n{doc:#}", p.table))
                    }
                    Ok(_) => {}
                }
            }
            // The plan is the size of the window (plus retirements, bridges, repairs).
            let actions = doc["actions"].as_array().map_or(0, Vec::len);
            let bound = 2 * (p.premake as usize + 1) + passes * p.max_per_pass() + 8;
            if actions > bound {
                self.fail(
                    day,
                    now,
                    format!("{}: {actions} actions in one pass (bound {bound})", p.table),
                );
            }
            // Rows.
            let inserted = self.rows.count.get(p.table).copied().unwrap_or(0);
            match &p.retention {
                Some((_, "Drop", _)) => {
                    let cutoff = self.cutoff(&p, now).unwrap();
                    let high = self.rows.high_cutoff.entry(p.table).or_default();
                    if cutoff > *high {
                        *high = cutoff;
                    }
                    let cutoff = high.clone();
                    let at = clock::parse(&cutoff);
                    let expected = self
                        .rows
                        .keys
                        .get(p.table)
                        .map_or(0, |k| k.iter().filter(|k| **k >= at).count() as i64);
                    let have: i64 = self
                        .client
                        .query_one(
                            &format!(
                                "SELECT count(*) FROM public.{} WHERE at >= {}",
                                p.table,
                                p.least_key_sql(&cutoff)
                            ),
                            &[],
                        )
                        .await
                        .unwrap()
                        .get(0);
                    if have != expected {
                        self.fail(day, now, format!("{}: {have} rows newer than the cutoff {cutoff}, inserted {expected}", p.table));
                    }
                }
                _ => {
                    let have = self.rows_everywhere(p.table).await;
                    if have != inserted {
                        self.fail(
                            day,
                            now,
                            format!(
                                "{}: {have} rows in all its tables, inserted {inserted}",
                                p.table
                            ),
                        );
                    }
                }
            }
            // Retirements.
            let was: BTreeSet<&Attached> = before[p.table].iter().collect();
            let now_there: BTreeSet<&str> =
                after[p.table].iter().map(|a| a.name.as_str()).collect();
            let gone: Vec<&&Attached> = was
                .iter()
                .filter(|a| !now_there.contains(a.name.as_str()))
                .collect();
            if !gone.is_empty() {
                let Some(cutoff) = self.cutoff(&p, now) else {
                    self.fail(
                        day,
                        now,
                        format!(
                            "{}: partitions retired without retention: {gone:?}",
                            p.table
                        ),
                    );
                };
                if gone.len() > passes * p.max_per_pass() {
                    self.fail(
                        day,
                        now,
                        format!(
                            "{}: {} retired in {passes} passes, maxPerPass {}",
                            p.table,
                            gone.len(),
                            p.max_per_pass()
                        ),
                    );
                }
                for g in gone {
                    if !g.managed {
                        self.fail(
                            day,
                            now,
                            format!("{}: retired {} that pgpart did not make", p.table, g.name),
                        );
                    }
                    if !ends_by(&p, &g.to, &cutoff) {
                        self.fail(
                            day,
                            now,
                            format!(
                                "{}: retired {} [{}, {}) which ends after the cutoff {cutoff}",
                                p.table, g.name, g.from, g.to
                            ),
                        );
                    }
                }
            }
            // Expired partitions go at maxPerPass a pass.
            if let (Some(cutoff), false, false) = (self.cutoff(&p, now), p.suspended(day), reported)
            {
                let mut expired_before: usize = 0;
                for a in before[p.table].iter().filter(|a| a.managed) {
                    expired_before += usize::from(ends_by(&p, &a.to, &cutoff));
                }
                let expired_after = after[p.table]
                    .iter()
                    .filter(|a| a.managed && ends_by(&p, &a.to, &cutoff))
                    .count();
                if expired_after > expired_before.saturating_sub(p.max_per_pass()) {
                    self.fail(day, now, format!("{}: {expired_after} expired partitions left of {expired_before} (maxPerPass {})", p.table, p.max_per_pass()));
                }
            }
        }
        // The partition nobody asked pgpart to manage stays.
        if !after["daily"].iter().any(|a| a.name == foreign) {
            self.fail(
                day,
                now,
                format!("the foreign partition {foreign} was retired"),
            );
        }
    }
}

async fn simulate(seed: u64, days: i64) {
    let mut rng = Rng::new(seed);
    let server = OwnPg::start(17, &[]);
    let client = support::pg::connect(&server.url).await;
    support::pg::create_uuidv7_at(&client).await;
    let url = server.url.clone();
    let mut sim = Sim {
        seed,
        server,
        client,
        url,
        pols: policies(),
        rows: Rows::default(),
        log: String::new(),
    };
    let mut ddl = String::from("CREATE SCHEMA archive;");
    for p in &sim.pols {
        let key = if p.time() { "at" } else { "id" };
        let _ = write!(
            ddl,
            "CREATE TABLE public.{} ({key} {} NOT NULL, note text) PARTITION BY RANGE ({key});",
            p.table,
            p.column()
        );
    }
    let start = clock::now();
    // A partition made by hand, on the daily grid, a week before the start: pgpart must
    // never retire it (it did not make it, and adoptExisting is off).
    let berlin: Zone = "Europe/Berlin".parse().unwrap();
    let day_step: TimeStep = "1 day".parse().unwrap();
    let first = day_step.shift(day_step.floor(berlin.to_local(start)), -7);
    let foreign = "daily_by_hand".to_owned();
    let _ = write!(
        ddl,
        "CREATE TABLE public.{foreign} PARTITION OF public.daily FOR VALUES FROM ('{}') TO ('{}');",
        clock::rfc3339(berlin.to_instant(first)),
        clock::rfc3339(berlin.to_instant(day_step.shift(first, 1)))
    );
    sim.sql(&ddl).await;

    let mut now = start;
    for day in 0..days {
        // The day's pass at a random hour, unless the clock jumps.
        now += chrono::Duration::hours(24) + chrono::Duration::minutes(rng.range(-180, 180));
        if rng.one_in(120) {
            let d = rng.range(2, 40);
            now += chrono::Duration::days(d);
            let _ = writeln!(sim.log, "day {day}: the clock jumps {d} days ahead");
        } else if rng.one_in(120) {
            let d = rng.range(1, 5);
            now -= chrono::Duration::days(d);
            let _ = writeln!(sim.log, "day {day}: the clock goes back {d} days");
        }
        // Policy edits.
        if rng.one_in(60) {
            let i = rng.range(0, sim.pols.len() as i64) as usize;
            let p = &mut sim.pols[i];
            match rng.range(0, 4) {
                0 => p.premake = (p.premake as i64 + rng.range(-2, 3)).clamp(1, 40) as u32,
                1 => p.suspend_until = Some(day + rng.range(1, 6)),
                2 if p.table == "daily" => {
                    p.interval = if p.interval == "1 day" {
                        "1 week".into()
                    } else {
                        "1 day".into()
                    };
                }
                3 if p.table == "daily" => {
                    p.zone = if p.zone == "Europe/Berlin" {
                        "UTC"
                    } else {
                        "Europe/Berlin"
                    };
                }
                _ => {
                    if let Some((keep, ..)) = &mut p.retention
                        && p.table == "weekly"
                    {
                        *keep = if keep == "20 weeks" {
                            "26 weeks".into()
                        } else {
                            "20 weeks".into()
                        };
                    }
                }
            }
            let _ = writeln!(
                sim.log,
                "day {day}: edit {}: {:?}",
                sim.pols[i].table, sim.pols[i]
            );
        }
        if rng.one_in(200) {
            let _ = writeln!(sim.log, "day {day}: PostgreSQL restarts");
            sim.server.restart("fast");
            sim.client = support::pg::connect(&sim.url).await;
        }
        let before = sim.snapshot().await;
        let mut passes = 1;
        if rng.one_in(40) {
            let ms = rng.range(5, 400) as u64;
            let _ = writeln!(sim.log, "day {day}: SIGKILL {ms} ms into a pass");
            sim.killed_pass(day, now, ms).await;
            passes += 1;
        }
        let (code, docs) = if rng.one_in(40) {
            let _ = writeln!(sim.log, "day {day}: two passes at once");
            passes += 1;
            let (a, b) = tokio::join!(sim.pass(day, now), sim.pass(day, now));
            let _ = a;
            b
        } else {
            sim.pass(day, now).await
        };
        if code != 0 {
            let errors: Vec<String> = docs
                .values()
                .filter(|d| !d["error"].is_null())
                .map(|d| format!("{}: {}", d["table"], d["error"]["message"]))
                .collect();
            let _ = writeln!(sim.log, "day {day}: the pass reported {errors:?}");
        }
        sim.check(day, now, &docs, &before, passes, &foreign, &mut rng)
            .await;
        sim.insert_rows(now, &mut rng).await;
    }
    eprintln!(
        "simulation seed {seed}: {days} passes, {} simulated days, events:\n{}",
        (now - start).num_days(),
        sim.log
    );
    sim.server.stop();
}

fn seeds() -> Vec<u64> {
    std::env::var("PGPART_SIM_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 2])
}

fn days() -> i64 {
    std::env::var("PGPART_SIM_DAYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(730)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn years_of_passes_keep_every_promise() {
    let runs = seeds()
        .into_iter()
        .map(|seed| tokio::spawn(simulate(seed, days())));
    for r in futures::future::join_all(runs).await {
        if let Err(e) = r {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}
