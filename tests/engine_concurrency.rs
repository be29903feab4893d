//! pgpart under concurrency, on PostgreSQL 15 and 17 (`<case>::pg15`, `<case>::pg17`):
//!
//! * two `apply` processes started at once on the same policies both succeed and leave
//!   exactly what one apply leaves;
//! * inserts keep flowing (none fails, none is lost) while apply creates partitions next
//!   to a DEFAULT partition;
//! * an apply whose ATTACH is blocked leaves the DEFAULT partition taking rows, as it did
//!   before the apply.
//!
//! Each case hands pgpart (`--now`) an instant chosen for its calendar situation (a DST
//! change, a year end, a Wednesday, a backlog of days) and writes its rows for that instant:
//! fixed on purpose, and independent of the date the suite runs on. Tests whose "now"
//! stands for today take it from `support::clock` instead.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use support::cli::{self, Run, action_count, policy_doc, policy_docs};
use support::pg::{Server, TestDb, sql};
use tokio_postgres::Client;

on_every_major!(
    worker_threads = 4;
    two_applies_at_once_equal_one_apply,
    inserts_keep_flowing_while_apply_creates_partitions,
    blocked_attach_leaves_default_taking_rows,
    repair_while_inserts_flow_into_the_backlog_days,
);

// ---------------------------------------------------------------------------------------
// two applies at once

const RACE_TABLES: usize = 10;

async fn race_schema(db: &TestDb) {
    let mut s = String::new();
    for i in 0..RACE_TABLES {
        s.push_str(&format!(
            "CREATE TABLE public.race_{i} (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, v text)
                 PARTITION BY RANGE (at);
             CREATE INDEX race_{i}_at_brin ON public.race_{i} USING brin (at);"
        ));
    }
    s.push_str(
        "CREATE TABLE public.race_hash (id bigint NOT NULL) PARTITION BY HASH (id);
         CREATE TABLE public.race_list (id bigint NOT NULL, region text NOT NULL) PARTITION BY LIST (region);",
    );
    sql(&db.client, &s).await;
}

fn race_policy() -> String {
    let mut docs: Vec<String> = (0..RACE_TABLES)
        .map(|i| {
            policy_doc(
                &format!("race-{i}"),
                &format!(
                    "table: public.race_{i}
                     range: {{interval: 1 day, premake: 7, startFrom: \"2026-10-01\"}}
                     defaultPartition: {{create: true}}"
                ),
            )
        })
        .collect();
    docs.push(policy_doc(
        "race-hash",
        "table: public.race_hash\nhash: {modulus: 16}",
    ));
    docs.push(policy_doc(
        "race-list",
        "table: public.race_list
         list:
           partitions:
             - {name: eu, values: [de, fr]}
             - {name: us, values: [us]}
         defaultPartition: {create: true}",
    ));
    policy_docs(&docs)
}

async fn two_applies_at_once_equal_one_apply(server: &Server) {
    let now = "2026-11-22T10:00:00Z";
    let policy = race_policy();

    // The reference: one apply.
    let reference = TestDb::create(server).await;
    race_schema(&reference).await;
    cli::apply(&reference.url, &policy, now)
        .await
        .ok("reference apply");
    let expected = cli::snapshot(&reference.client, false).await;
    reference.drop_db().await;

    for round in 1..=3 {
        let db = TestDb::create(server).await;
        race_schema(&db).await;
        let file = cli::PolicyFile::new(&policy);
        let args = [
            "apply",
            "--policy",
            file.path_str(),
            "--database-url",
            &db.url,
            "--now",
            now,
        ];
        // One run with four connections, one with a single connection: both are ordinary
        // invocations, and the slower one reaches most tables after the faster one is done.
        let a = cli::spawn(&[&args[..], &["--connections", "4"]].concat());
        let b = cli::spawn(&[&args[..], &["--connections", "1"]].concat());
        let (a, b): (Run, Run) = tokio::join!(cli::wait(a), cli::wait(b));
        for (who, run) in [("first", &a), ("second", &b)] {
            run.ok(&format!(
                "round {round}: {who} of two concurrent applies on PostgreSQL {}",
                server.major
            ));
            // Each run says something of every table, also of one the other run did
            // while it waited for the table's lock.
            for i in 0..RACE_TABLES {
                let table = format!("public.race_{i}:");
                assert!(
                    run.stdout.lines().any(|l| l.starts_with(&table)),
                    "round {round}: the {who} run says nothing of {table}\n{}",
                    run.both()
                );
            }
        }
        let got = cli::snapshot(&db.client, false).await;
        cli::assert_same_snapshot(
            &expected,
            &got,
            &format!("round {round}: two concurrent applies vs one apply"),
        );
        for i in 0..RACE_TABLES {
            let bounds = cli::range_bounds(&db.client, &format!("public.race_{i}")).await;
            // 2026-10-01 .. 2026-11-29 (today + 7): 60 days, one partition each, no overlap.
            assert_eq!(bounds.len(), 60, "race_{i}: {bounds:#?}");
            for w in bounds.windows(2) {
                assert_eq!(w[0].1, w[1].0, "race_{i}: gap or overlap");
            }
        }
        let doc = cli::plan_json(&db.url, &policy, now).await;
        assert_eq!(
            action_count(&doc),
            0,
            "round {round}: plan after the race: {doc:#}"
        );
        db.drop_db().await;
    }
}

// ---------------------------------------------------------------------------------------
// inserts while apply runs

struct Inserted {
    attempts: u64,
    failures: Vec<String>,
}

/// Runs `insert_sql` (parameters: $1 timestamptz, $2 text `row {i}`) once per row until
/// `stop` is set and at least `min` rows were attempted (capped at 200,000). `key(i)` gives
/// row i's timestamp; `started` is notified after the first `warmup` inserts.
#[allow(clippy::too_many_arguments)]
async fn insert_loop(
    client: Client,
    insert_sql: &'static str,
    key: impl Fn(u64) -> DateTime<Utc> + Send + 'static,
    min: u64,
    warmup: u64,
    started: Arc<tokio::sync::Notify>,
    stop: Arc<AtomicBool>,
    attempts_seen: Arc<AtomicU64>,
) -> Inserted {
    let stmt = client.prepare(insert_sql).await.expect("prepare insert");
    let mut failures = Vec::new();
    let mut i = 0u64;
    while (i < min || !stop.load(Ordering::SeqCst)) && i < 200_000 {
        let at = key(i);
        let payload = format!("row {i}");
        if let Err(e) = client.execute(&stmt, &[&at, &payload]).await {
            failures.push(format!("row {i} at {at}: {e:?}"));
        }
        i += 1;
        attempts_seen.store(i, Ordering::SeqCst);
        if i == warmup {
            started.notify_one();
        }
    }
    Inserted {
        attempts: i,
        failures,
    }
}

const STREAM_INSERT: &str = "INSERT INTO public.stream (at, payload) VALUES ($1, $2)";

fn stream_policy(premake: u32, on_rows: &str, lock_timeout: &str) -> String {
    policy_doc(
        "stream",
        &format!(
            "table: public.stream
             range: {{interval: 1 month, premake: {premake}}}
             defaultPartition: {{create: true, onRows: {on_rows}}}
             lockTimeout: {lock_timeout}"
        ),
    )
}

async fn stream_schema(db: &TestDb, now: &str) {
    sql(
        &db.client,
        "CREATE TABLE public.stream (
             id bigint GENERATED ALWAYS AS IDENTITY,
             at timestamptz NOT NULL,
             payload text NOT NULL
         ) PARTITION BY RANGE (at);
         CREATE INDEX stream_at_brin ON public.stream USING brin (at);",
    )
    .await;
    // November and December 2026 plus the default partition exist before the test starts.
    cli::apply(&db.url, &stream_policy(1, "Report", "5s"), now)
        .await
        .ok("initial apply");
    assert_eq!(
        cli::partition_names(&db.client, "public.stream").await,
        ["stream_p20261101", "stream_p20261201", "stream_default"]
    );
}

async fn inserts_keep_flowing_while_apply_creates_partitions(server: &Server) {
    let now = "2026-11-22T10:00:00Z";
    let db = TestDb::create(server).await;
    stream_schema(&db, now).await;

    // Rows for now, for December (both have partitions) and for 2020 (kept by the default).
    let base = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    let old = Utc.with_ymd_and_hms(2020, 5, 5, 0, 0, 0).unwrap();
    let key = move |i: u64| match i % 3 {
        0 => base + Duration::milliseconds(i as i64),
        1 => base + Duration::days(15) + Duration::seconds(i as i64),
        _ => old + Duration::seconds(i as i64),
    };
    let started = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let inserter = tokio::spawn(insert_loop(
        db.connect().await,
        STREAM_INSERT,
        key,
        2000,
        100,
        started.clone(),
        stop.clone(),
        seen.clone(),
    ));
    started.notified().await;

    // premake 13: January .. December 2027, twelve new partitions, next to the default.
    let policy = stream_policy(13, "Report", "5s");
    let file = cli::PolicyFile::new(&policy);
    let before_apply = seen.load(Ordering::SeqCst);
    let run = cli::wait(cli::spawn_apply(&file, &db.url, now)).await;
    let during_apply = seen.load(Ordering::SeqCst) - before_apply;
    stop.store(true, Ordering::SeqCst);
    let inserted = inserter.await.expect("insert task");

    run.ok("apply while inserting");
    assert!(
        inserted.failures.is_empty(),
        "{} inserts failed, e.g. {:#?}",
        inserted.failures.len(),
        &inserted.failures[..inserted.failures.len().min(5)]
    );
    assert!(
        during_apply > 0,
        "no insert ran while apply ran: the test did not overlap"
    );
    eprintln!(
        "PostgreSQL {}: {} inserts, {during_apply} while apply ran",
        server.major, inserted.attempts
    );
    let c = &db.client;
    assert_eq!(
        cli::count(c, "public.stream").await,
        inserted.attempts as i64,
        "rows lost"
    );
    assert_eq!(
        c.query_one("SELECT count(DISTINCT payload) FROM public.stream", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        inserted.attempts as i64
    );
    let old_rows = inserted.attempts / 3; // i % 3 == 2 for i in 0..attempts
    assert_eq!(
        cli::count(c, "public.stream_default").await,
        old_rows as i64,
        "2020 rows in the default"
    );
    let names = cli::partition_names(c, "public.stream").await;
    for m in 1..=12 {
        let n = format!("stream_p2027{m:02}01");
        assert!(names.contains(&n), "{n} missing: {names:?}");
    }
    assert_eq!(names.len(), 15, "{names:?}");
    // New rows for the new months land in their partitions, not the default.
    sql(
        c,
        "INSERT INTO public.stream (at, payload) VALUES ('2027-06-15 00:00:00+00', 'june')",
    )
    .await;
    let home: String = c
        .query_one(
            "SELECT tableoid::regclass::text FROM public.stream WHERE payload = 'june'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(home, "stream_p20270601");
    db.drop_db().await;
}

/// While an ATTACH waits for a lock (here: a session holding SHARE UPDATE EXCLUSIVE on the
/// parent alone, as an ANALYZE or CREATE INDEX CONCURRENTLY of the parent would), and after
/// the apply gave up on it, rows for months that have no partition yet must still be
/// accepted by the DEFAULT partition, as they were before the apply.
async fn blocked_attach_leaves_default_taking_rows(server: &Server) {
    let now = "2026-11-22T10:00:00Z";
    let db = TestDb::create(server).await;
    stream_schema(&db, now).await;
    let c = &db.client;
    // Before the apply, a row for February 2027 (no partition) goes to the default.
    sql(
        c,
        "INSERT INTO public.stream (at, payload) VALUES ('2027-03-03 00:00:00+00', 'before')",
    )
    .await;
    sql(c, "DELETE FROM public.stream WHERE payload = 'before'").await;

    // Hold SHARE UPDATE EXCLUSIVE on the parent only: inserts go on, ATTACH has to wait.
    let mut blocker = db.connect().await;
    let tx = blocker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE ONLY public.stream IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();

    // premake 4: January .. March 2027 are new. The apply gives up after 5 s of waiting out
    // the lock (instead of the default minute): what is checked is the same either way.
    let policy = stream_policy(4, "Report", "100ms");
    let file = cli::PolicyFile::new(&policy);
    let mut child = cli::spawn_with_env(
        &cli::apply_args(&file, &db.url, now),
        &[("PGPART_LOCK_PATIENCE", "5s")],
    );
    // While it runs: as soon as the default partition carries a pgpart guard, insert a row
    // for a month the apply has not created yet.
    let mut during: Option<Result<(), String>> = None;
    while child.try_wait().expect("poll apply").is_none() {
        let guarded: bool = c
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_constraint
                                 WHERE conrelid = 'public.stream_default'::regclass AND conname LIKE 'pgpart%')
                        AND to_regclass('public.stream_p20270201') IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if guarded {
            during = Some(
                c.batch_execute("INSERT INTO public.stream (at, payload) VALUES ('2027-02-10 00:00:00+00', 'during')")
                    .await
                    .map_err(|e| format!("{e:?}")),
            );
            break;
        }
        // A poll every few ms, not a spin that takes a core from the apply and the server.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let run = cli::wait(child).await;
    eprintln!(
        "PostgreSQL {}: apply with ATTACH blocked exited {}:\n{}",
        server.major,
        run.code,
        run.both()
    );
    assert!(!run.panicked(), "{}", run.both());

    // After the apply gave up, with the lock still held: a row for a month without a partition.
    let after = c
        .batch_execute(
            "INSERT INTO public.stream (at, payload) VALUES ('2027-03-03 00:00:00+00', 'after')",
        )
        .await
        .map_err(|e| format!("{e:?}"));
    tx.rollback().await.unwrap();
    let guards: Vec<String> = cli::snapshot(c, false)
        .await
        .into_iter()
        .filter(|l| l.starts_with("constraint") && l.contains("stream_default"))
        .collect();
    if let Some(during) = &during {
        assert!(
            during.is_ok(),
            "while apply waited to attach, a row for 2027-02 (no partition yet) was refused: {during:?}\nconstraints: {guards:#?}"
        );
    }
    assert!(
        after.is_ok(),
        "after an apply whose ATTACH was blocked, a row for 2027-03 (no partition) is refused: {after:?}\nconstraints: {guards:#?}"
    );

    // Once the lock is gone, Repair brings everything home, losing nothing.
    let total = cli::count(c, "public.stream").await;
    let repair = stream_policy(4, "Repair", "5s");
    cli::apply(&db.url, &repair, now)
        .await
        .ok("repair after the blocked apply");
    assert_eq!(cli::count(c, "public.stream").await, total, "rows lost");
    assert_eq!(
        cli::count(c, "public.stream_default").await,
        0,
        "default should be empty after repair"
    );
    let names = cli::partition_names(c, "public.stream").await;
    for n in ["stream_p20270101", "stream_p20270201", "stream_p20270301"] {
        assert!(names.contains(&n.to_string()), "{n} missing: {names:?}");
    }
    let doc = cli::plan_json(&db.url, &repair, now).await;
    assert_eq!(action_count(&doc), 0, "{doc:#}");
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// Repair while the application keeps writing rows for the days being repaired

/// Three days of rows in the DEFAULT partition (maintenance stopped at D = 2026-11-19);
/// Repair at D+3 runs while rows for D+2 and D+3 keep arriving. No insert fails, no row is
/// lost or changed, and the default ends empty.
async fn repair_while_inserts_flow_into_the_backlog_days(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.events (
             id bigint GENERATED ALWAYS AS IDENTITY,
             at timestamptz NOT NULL,
             payload text NOT NULL,
             payload_len integer GENERATED ALWAYS AS (length(payload)) STORED
         ) PARTITION BY RANGE (at);
         CREATE INDEX events_at_brin ON public.events USING brin (at);",
    )
    .await;
    let policy = |on_rows: &str| {
        policy_doc(
            "events",
            &format!(
                "table: public.events
                 range: {{interval: 1 day, premake: 3}}
                 defaultPartition: {{create: true, onRows: {on_rows}}}"
            ),
        )
    };
    cli::apply(&db.url, &policy("Report"), "2026-11-16T08:00:00Z")
        .await
        .ok("initial apply at D-3");
    sql(
        c,
        "INSERT INTO public.events (at, payload)
         SELECT timestamptz '2026-11-20 00:00:00+00' + g * interval '8.64 seconds', md5(g::text)
           FROM generate_series(0, 29999) g;",
    )
    .await;
    assert_eq!(cli::count(c, "public.events_default").await, 30_000);
    let max_id: i64 = c
        .query_one("SELECT max(id) FROM public.events", &[])
        .await
        .unwrap()
        .get(0);
    let digest_sql = format!(
        "SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM public.events t WHERE id <= {max_id}"
    );
    let digest: String = c.query_one(&digest_sql, &[]).await.unwrap().get(0);

    // Live rows for D+2 and D+3 (both in the default until repaired).
    let d2 = Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap();
    let key =
        move |i: u64| d2 + Duration::milliseconds(1_000 * i as i64 + (i as i64 % 2) * 86_400_000);
    let started = Arc::new(tokio::sync::Notify::new());
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(AtomicU64::new(0));
    let inserter = tokio::spawn(insert_loop(
        db.connect().await,
        "INSERT INTO public.events (at, payload) VALUES ($1, $2)",
        key,
        2000,
        50,
        started.clone(),
        stop.clone(),
        seen.clone(),
    ));
    started.notified().await;
    let file = cli::PolicyFile::new(&policy("Repair"));
    let now = "2026-11-22T12:00:00Z";
    let before = seen.load(Ordering::SeqCst);
    let run = cli::wait(cli::spawn_apply(&file, &db.url, now)).await;
    let during = seen.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    let inserted = inserter.await.expect("insert task");
    eprintln!(
        "PostgreSQL {}: repair exited {}, {} live inserts ({during} during the repair):\n{}",
        server.major,
        run.code,
        inserted.attempts,
        run.both()
    );
    assert!(
        inserted.failures.is_empty(),
        "{} inserts failed during the repair, e.g. {:#?}",
        inserted.failures.len(),
        &inserted.failures[..inserted.failures.len().min(3)]
    );
    run.ok("repair while inserts flow");
    assert!(during > 0, "no insert ran while the repair ran");
    assert_eq!(
        cli::count(c, "public.events").await,
        30_000 + inserted.attempts as i64,
        "rows lost"
    );
    let after: String = c.query_one(&digest_sql, &[]).await.unwrap().get(0);
    assert_eq!(after, digest, "the backlog rows changed");
    // Whatever arrived after the repair's last step may sit in the default; a second
    // Repair must then leave it empty.
    if cli::count(c, "public.events_default").await > 0 {
        cli::apply(&db.url, &policy("Repair"), now)
            .await
            .ok("second repair");
    }
    assert_eq!(cli::count(c, "public.events_default").await, 0);
    // The three backlog days are one partition now (the old default), holding the backlog
    // and every live row; the rows of D+1 are where they were.
    let repaired = "public.events_repaired_202611200000";
    assert_eq!(
        cli::count(c, repaired).await,
        30_000 + inserted.attempts as i64
    );
    let d1: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {repaired} WHERE at < '2026-11-21 00:00:00+00'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(d1, 10_000);
    db.drop_db().await;
}
