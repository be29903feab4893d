//! Database faults under the CLI: the server restarted in the middle of a pass, a lock
//! held on the parent for longer than lockTimeout, and `pgpart apply` killed with SIGKILL
//! in the middle of a default-partition repair. No fixed sleeps: every wait polls a
//! condition up to a deadline.

mod support;

use std::time::{Duration, Instant};

use support::cli::{self, PolicyFile, policy_doc};
use support::clock;
use support::faults::OwnPg;
use support::pg::{self, Server, TestDb};
use tokio_postgres::Client;

on_every_major!(
    server_restart_mid_pass_then_rerun_completes_without_overlap,
    lock_held_on_parent_times_out_without_blocking_inserts,
    sigkill_during_repair_loses_no_row_and_next_run_finishes,
    repair_retried_after_lock_timeout_at_attach_completes,
    sigkill_during_detach_concurrently_is_finalized_by_the_next_run,
    a_locked_table_stalls_no_other_and_reports_its_lock,
    detach_concurrently_timed_out_by_a_reader_is_finalized_in_the_same_pass,
);

/// Poll `check` every 20 ms until it returns true, up to `timeout`; panics with `what`.
async fn until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects, retrying while the server restarts.
async fn connect_retry(url: &str) -> Client {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match tokio_postgres::connect(url, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                return c;
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {url}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Range partitions of `parent` tile [first.from, last.to) without gap or overlap, and
/// every table pgpart marked as its own is attached to it.
async fn assert_tiled(client: &Client, parent: &str, expect: usize) {
    let bounds = cli::range_bounds(client, parent).await;
    assert_eq!(bounds.len(), expect, "partitions of {parent}: {bounds:#?}");
    for w in bounds.windows(2) {
        assert_eq!(
            w[0].1, w[1].0,
            "gap or overlap between {:?} and {:?}",
            w[0], w[1]
        );
    }
    let strays: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c
              WHERE c.relkind = 'r' AND NOT c.relispartition
                AND obj_description(c.oid, 'pg_class') = 'pgpart: managed partition'",
            &[],
        )
        .await
        .expect("list stray tables")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        strays.is_empty(),
        "pgpart tables left unattached: {strays:?}"
    );
}

// 1. PostgreSQL restarted in the middle of a pass.
async fn server_restart_mid_pass_then_rerun_completes_without_overlap(pg_server: &Server) {
    let now = clock::now();
    let now_arg = clock::rfc3339(now);
    let today = now.date_naive();
    let start = today - chrono::Days::new(200);
    let end = today + chrono::Days::new(6);
    let server = OwnPg::start(pg_server.major, &[]);
    let admin = pg::connect(&server.url).await;
    admin
        .batch_execute(
            "CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);
             CREATE INDEX ON public.events (at);",
        )
        .await
        .unwrap();
    // The CHECKPOINT makes the table durable: the server runs with synchronous_commit=off,
    // and the immediate restart below loses whatever commits the WAL writer had not flushed
    // (once, the table itself). It runs on its own, after the commit: inside the same
    // batch it ran in the batch's implicit transaction, before the commit it was to flush.
    admin.batch_execute("CHECKPOINT").await.unwrap();
    // 200 days back, today and 5 ahead: 206 partitions.
    let policy = policy_doc(
        "events",
        &format!(
            "table: public.events
             range:
               interval: 1 day
               premake: 5
               startFrom: \"{start}\""
        ),
    );
    let file = PolicyFile::new(&policy);
    let child = cli::spawn_apply(&file, &server.url, &now_arg);
    let watcher = pg::connect(&server.url).await;
    until(
        "apply attached 20 partitions",
        Duration::from_secs(60),
        || async {
            // Errors count as "not yet": this polls while pgpart changes the catalog.
            let n = watcher
                .query_one(
                    "SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.events'::regclass",
                    &[],
                )
                .await;
            matches!(n, Ok(r) if r.get::<_, i64>(0) >= 20)
        },
    )
    .await;
    server.restart("immediate");
    let first = cli::wait(child).await;
    assert!(!first.panicked(), "apply panicked: {}", first.both());
    let client = connect_retry(&server.url).await;
    until(
        "the restarted server answers",
        Duration::from_secs(60),
        || async { client.simple_query("SELECT 1").await.is_ok() },
    )
    .await;
    let parts_after_crash = cli::partitions(&client, "public.events").await.len();
    assert!(
        first.code != 0 || parts_after_crash == 206,
        "apply exited 0 after losing its server, with {parts_after_crash} partitions:\n{}",
        first.both()
    );
    if first.code != 0 {
        assert_eq!(first.code, 1, "{}", first.both());
    }

    let second = cli::apply(&server.url, &policy, &now_arg).await;
    second.ok("apply after the restart");
    assert_tiled(&client, "public.events", 206).await;
    let bounds = cli::range_bounds(&client, "public.events").await;
    assert_eq!(bounds[0].0, clock::bound_text(start), "{:?}", bounds[0]);
    assert_eq!(bounds[205].1, clock::bound_text(end), "{:?}", bounds[205]);
    // Rows go where they belong.
    client
        .batch_execute(&format!(
            "INSERT INTO public.events (at) SELECT g FROM generate_series('{}'::timestamptz, '{}'::timestamptz - interval '1 hour', '1 hour') g",
            clock::bound_text(start),
            clock::bound_text(end)
        ))
        .await
        .expect("every hour of the covered range has a partition");
    // And a third run has nothing to do.
    let third = cli::apply(&server.url, &policy, &now_arg).await;
    third.ok("third apply");
    assert!(
        third.action_lines().is_empty(),
        "third run acted: {}",
        third.both()
    );
    drop(client);
    server.stop();
}

// 3. A long transaction holds a lock on the parent that ATTACH needs.
async fn lock_held_on_parent_times_out_without_blocking_inserts(pg_server: &Server) {
    let now = clock::now();
    let now_arg = clock::rfc3339(now);
    let db = TestDb::create(pg_server).await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);",
        )
        .await
        .unwrap();
    let small = policy_doc(
        "events",
        "table: public.events
         range:
           interval: 1 month
           premake: 1",
    );
    cli::apply(&db.url, &small, &now_arg)
        .await
        .ok("first apply");
    assert_eq!(cli::partitions(&db.client, "public.events").await.len(), 2);

    let holder = db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.events IN SHARE UPDATE EXCLUSIVE MODE")
        .await
        .unwrap();

    let wider = policy_doc(
        "events",
        "table: public.events
         range:
           interval: 1 month
           premake: 4
         lockTimeout: 200ms",
    );
    let file = PolicyFile::new(&wider);
    let apply = |patience: &'static str| {
        cli::spawn_with_env(
            &cli::apply_args(&file, &db.url, &now_arg),
            &[("PGPART_LOCK_PATIENCE", patience)],
        )
    };
    // While pgpart waits, inserts into existing partitions from other sessions go through,
    // and pgpart queues a lock request behind the holder once at most, for lockTimeout:
    // after that first timeout it waits without asking (a queued request would hold up
    // every session that comes after it).
    let writer = db.connect().await;
    writer
        .batch_execute("SET lock_timeout = '1s'")
        .await
        .unwrap();
    let insert = format!("INSERT INTO public.events (at, payload) VALUES ('{now_arg}', 'during')");
    let mut inserts = 0;
    let (mut first_wait, mut first_wait_over, mut queued_again) = (false, false, 0);
    // The holder has held on for a while (over 10 × lockTimeout and 1 s) when pgpart comes.
    until(
        "the holder's transaction is old",
        Duration::from_secs(10),
        || async {
            writer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'
                        AND datname = current_database() AND clock_timestamp() - xact_start > interval '2 s'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                > 0
        },
    )
    .await;
    let mut give_up = apply("3s");
    let gave_up = loop {
        writer
            .batch_execute(&insert)
            .await
            .expect("an insert while pgpart waits for its lock");
        inserts += 1;
        let waiting: Option<String> = writer
            .query_one(
                "SELECT string_agg(format('%s %s %s', l.locktype, l.mode, l.relation::regclass), ', ')
                   FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                  WHERE NOT l.granted AND a.application_name = 'pgpart'
                    AND a.datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        match waiting {
            Some(w) if first_wait_over => {
                queued_again += 1;
                if queued_again == 1 {
                    eprintln!("pgpart queued again for {w}");
                }
            }
            Some(_) => first_wait = true,
            None => first_wait_over |= first_wait,
        }
        if let Some(status) = give_up.try_wait().unwrap() {
            break status;
        }
    };
    let out = give_up.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        gave_up.code(),
        Some(1),
        "apply against a held lock:\n{text}"
    );
    assert!(
        text.contains("lock timeout") && text.contains("ShareUpdateExclusiveLock on events"),
        "the message should name the holder's lock and the table:\n{text}"
    );
    assert_eq!(
        queued_again, 0,
        "pgpart queued behind the holder after its first timeout:\n{text}"
    );
    assert!(inserts > 0);
    eprintln!("{inserts} inserts while apply waited; its first request queued: {first_wait}");
    assert_eq!(cli::partitions(&db.client, "public.events").await.len(), 2);
    let during: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM public.events WHERE payload = 'during'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(during, inserts);

    // With the default patience, an apply started while the lock is held waits it out and
    // finishes once it is gone.
    let waits = apply("60s");
    until(
        "the second apply is connected",
        Duration::from_secs(30),
        || async {
            writer
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgpart'
                        AND datname = current_database()",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                > 0
        },
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    let out = waits.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "apply after the lock went: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_tiled(&db.client, "public.events", 5).await;
    drop((holder, writer));
    db.drop_db().await;
}

/// count and md5 of `(id, at, payload)` over `from` (a relation or a UNION subquery).
async fn digest(client: &Client, from: &str) -> (i64, String) {
    let row = client
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(format('%s|%s|%s', id, at, payload), ',' ORDER BY id)), '')
                   FROM {from} t"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("digest of {from}: {e}"));
    (row.get(0), row.get(1))
}

// 4. SIGKILL during a default-partition repair: the repair is one transaction, so a kill
// at any point leaves the table as it was or repaired, with every row visible throughout.
async fn sigkill_during_repair_loses_no_row_and_next_run_finishes(pg_server: &Server) {
    let now_arg = clock::now_arg();
    let month = clock::month_start(clock::parse(&now_arg));
    let child_name = format!("public.{}", clock::monthly_name("events", month));
    let db = TestDb::create(pg_server).await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.events (id bigint NOT NULL, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);
             CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
             INSERT INTO public.events
               SELECT g, '{month}'::timestamptz + (g % 600000) * interval '4 seconds', repeat(md5(g::text), 4)
                 FROM generate_series(1, 600000) g;
             ANALYZE public.events;",
        ))
        .await
        .unwrap();
    let all = "(SELECT id, at, payload FROM public.events)";
    let before = digest(&db.client, all).await;
    assert_eq!(before.0, 600_000);

    // A reader counts the rows through the parent all along: never fewer, never more.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let client = db.connect().await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let n: i64 = client
                    .query_one("SELECT count(*) FROM public.events", &[])
                    .await
                    .expect("a read during the repair")
                    .get(0);
                seen.push(n);
            }
            seen
        })
    };

    let policy = policy_doc(
        "events",
        "table: public.events
         range:
           interval: 1 month
           premake: 1
         defaultPartition:
           create: true
           onRows: Repair",
    );
    let file = PolicyFile::new(&policy);
    let watcher = db.connect().await;
    // Kill it while it holds the parent's ACCESS EXCLUSIVE lock (its one transaction), a
    // few times; whichever way each kill falls, the rows are all there.
    let mut killed_in_transaction = 0;
    for attempt in 0..3 {
        let mut child = cli::spawn_apply(&file, &db.url, &now_arg);
        let mut in_tx = false;
        while child.try_wait().unwrap().is_none() {
            in_tx = watcher
                .query_one(
                    "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                      WHERE a.application_name = 'pgpart' AND a.datname = current_database() AND l.granted AND l.mode = 'AccessExclusiveLock'
                        AND l.relation = 'public.events'::regclass",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if in_tx {
                break;
            }
        }
        child.start_kill().ok();
        let run = cli::wait(child).await;
        killed_in_transaction += (in_tx && run.code == -1) as usize;
        eprintln!(
            "attempt {attempt}: in its transaction: {in_tx}, exit {}",
            run.code
        );
        assert_eq!(
            digest(&db.client, all).await,
            before,
            "rows lost, duplicated or hidden after kill {attempt}"
        );
        // Either as it was, or repaired: nothing in between.
        let repaired = cli::exists(&db.client, &child_name).await;
        let in_default = cli::count(&db.client, "public.events_default").await;
        assert!(
            (repaired && in_default == 0) || (!repaired && in_default == 600_000),
            "kill {attempt} left something half done: {child_name} exists: {repaired}, {in_default} rows in the default"
        );
        if repaired {
            break;
        }
    }
    eprintln!("{killed_in_transaction} kills inside the repair's transaction");

    cli::apply(&db.url, &policy, &now_arg)
        .await
        .ok("apply after the kills");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert!(!seen.is_empty());
    assert!(
        seen.iter().all(|n| *n == 600_000),
        "a reader saw a count other than 600000: {:?}",
        seen.iter()
            .filter(|n| **n != 600_000)
            .take(5)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        digest(&db.client, all).await,
        before,
        "rows via the parent after the repair"
    );
    assert_eq!(cli::count(&db.client, "public.events_default").await, 0);
    assert_eq!(
        cli::count(&db.client, &format!("ONLY {child_name}")).await,
        600_000
    );
    assert_tiled(&db.client, "public.events", 2).await; // the default has no FROM/TO
    drop(watcher);
    db.drop_db().await;
}

// 4b. A repair whose lock request times out (a writer's transaction is open on the parent)
// is retried once the writer is done, without queueing behind it in between.
async fn repair_retried_after_lock_timeout_at_attach_completes(pg_server: &Server) {
    let now_arg = clock::now_arg();
    let month = clock::month_start(clock::parse(&now_arg));
    let child_name = format!("public.{}", clock::monthly_name("events", month));
    let db = TestDb::create(pg_server).await;
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.events (id bigint NOT NULL, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);
             CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
             INSERT INTO public.events
               SELECT g, '{month}'::timestamptz + g * interval '1 minute', g::text
                 FROM generate_series(1, 30000) g;",
        ))
        .await
        .unwrap();
    let all = "(SELECT id, at, payload FROM public.events)";
    let before = digest(&db.client, all).await;
    // An open writer transaction on the parent: the repair's ACCESS EXCLUSIVE request
    // queues for lockTimeout, times out, and is not asked again while the writer holds on.
    let holder = db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE ONLY public.events IN ROW EXCLUSIVE MODE")
        .await
        .unwrap();
    let policy = policy_doc(
        "events",
        "table: public.events
         range:
           interval: 1 month
           premake: 1
         defaultPartition:
           create: true
           onRows: Repair
         lockTimeout: 1s",
    );
    let file = PolicyFile::new(&policy);
    let child = cli::spawn_apply(&file, &db.url, &now_arg);
    let watcher = db.connect().await;
    let waiting = || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'public.events'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0
    };
    until(
        "the repair waits for the parent",
        Duration::from_secs(60),
        &waiting,
    )
    .await;
    until(
        "the first attempt times out",
        Duration::from_secs(10),
        || async { !waiting().await },
    )
    .await;
    holder.batch_execute("COMMIT").await.unwrap();
    let run = cli::wait(child).await;
    run.ok("repair retried after a lock timeout");
    assert_eq!(digest(&db.client, all).await, before);
    assert_eq!(cli::count(&db.client, "public.events_default").await, 0);
    assert_eq!(
        cli::count(&db.client, &format!("ONLY {child_name}")).await,
        30000
    );
    drop((holder, watcher));
    db.drop_db().await;
}

// SIGKILL while DETACH … CONCURRENTLY waits for an old snapshot: the partition is left
// "detach pending"; the next run finalizes it and goes on with retention.
/// Ten monthly partitions back and one ahead of now, with 5000 hourly rows from the middle
/// of the first month, and the policy that retires (detaches) the seven oldest of them.
/// Returns the database, the first month, the row count and the policy.
async fn ten_months_to_retire(
    pg_server: &Server,
    now_arg: &str,
    lock_timeout: &str,
) -> (TestDb, chrono::NaiveDate, i64, String) {
    let month = clock::month_start(clock::parse(now_arg));
    let start = clock::add_months(month, -10);
    let db = TestDb::create(pg_server).await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at);",
        )
        .await
        .unwrap();
    let make = policy_doc(
        "events",
        &format!(
            "table: public.events
             range:
               interval: 1 month
               premake: 1
               startFrom: \"{start}\""
        ),
    );
    cli::apply(&db.url, &make, now_arg)
        .await
        .ok("make 10 months back .. 1 ahead");
    assert_eq!(cli::partitions(&db.client, "public.events").await.len(), 12);
    // 5000 hours (under 7 months) from the middle of the first month.
    db.client
        .batch_execute(&format!("INSERT INTO public.events SELECT g, '{start}'::timestamptz + interval '14 days' + g * interval '1 hour' FROM generate_series(1, 5000) g"))
        .await
        .unwrap();
    let rows_before = cli::count(&db.client, "public.events").await;
    let retire = policy_doc(
        "events",
        &format!(
            "table: public.events
             range:
               interval: 1 month
               premake: 1
             retention:
               keep: 3 months
               action: Detach
             lockTimeout: {lock_timeout}"
        ),
    );
    (db, start, rows_before, retire)
}

/// now − 3 months falls in the month 3 before this one: the 7 months from 10 to 4 months
/// ago are retired (detached, kept as tables), the 5 from 3 months ago to next month kept,
/// and no row is lost.
async fn assert_seven_detached(
    db: &TestDb,
    now_arg: &str,
    start: chrono::NaiveDate,
    rows_before: i64,
    run: &cli::Run,
) {
    let pending: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM pg_inherits WHERE inhdetachpending",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(pending, 0, "{}", run.both());
    let names = cli::partition_names(&db.client, "public.events").await;
    assert_eq!(
        names,
        clock::monthly_between(
            "events",
            clock::parse(now_arg) - chrono::Months::new(3),
            clock::parse(now_arg),
            1
        ),
        "{}",
        run.both()
    );
    let mut detached_rows = 0;
    for k in 0..7 {
        let name = format!(
            "public.{}",
            clock::monthly_name("events", clock::add_months(start, k))
        );
        assert!(cli::exists(&db.client, &name).await, "Detach keeps {name}");
        detached_rows += cli::count(&db.client, &name).await;
    }
    assert_eq!(
        detached_rows + cli::count(&db.client, "public.events").await,
        rows_before
    );
}

/// Starts `apply` of `retire` (the caller holds a transaction its detach waits for) and
/// returns once a partition is pending detach: the policy file (keep it while the apply
/// runs), the running apply, and a watcher session.
async fn apply_until_detach_pending(
    db: &TestDb,
    retire: &str,
    now_arg: &str,
) -> (PolicyFile, tokio::process::Child, Client) {
    let file = PolicyFile::new(retire);
    let child = cli::spawn_apply(&file, &db.url, now_arg);
    let watcher = db.connect().await;
    until("a detach is pending", Duration::from_secs(60), || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_inherits WHERE inhdetachpending",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0
    })
    .await;
    (file, child, watcher)
}

async fn sigkill_during_detach_concurrently_is_finalized_by_the_next_run(pg_server: &Server) {
    let now_arg = clock::now_arg();
    let (db, start, rows_before, retire) = ten_months_to_retire(pg_server, &now_arg, "60s").await;
    // An old snapshot: DETACH CONCURRENTLY's second transaction waits for it.
    let holder = db.connect().await;
    holder
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM public.events")
        .await
        .unwrap();
    let (_file, mut child, watcher) = apply_until_detach_pending(&db, &retire, &now_arg).await;
    child.start_kill().unwrap();
    let killed = cli::wait(child).await;
    assert_eq!(killed.code, -1, "{}", killed.both());
    holder.batch_execute("COMMIT").await.unwrap();

    let run = cli::apply(&db.url, &retire, &now_arg).await;
    run.ok("apply after the kill");
    assert_seven_detached(&db, &now_arg, start, rows_before, &run).await;
    drop((holder, watcher));
    db.drop_db().await;
}

/// A reader outlasting lockTimeout while DETACH CONCURRENTLY's second transaction waits
/// for it: the wait times out with the partition pending detach, and the same pass goes on
/// with FINALIZE (any other DETACH on the table is refused) once the reader is gone.
async fn detach_concurrently_timed_out_by_a_reader_is_finalized_in_the_same_pass(
    pg_server: &Server,
) {
    let now_arg = clock::now_arg();
    let (db, start, rows_before, retire) = ten_months_to_retire(pg_server, &now_arg, "50ms").await;
    let reader = db.connect().await;
    reader
        .batch_execute("BEGIN; SELECT count(*) FROM public.events")
        .await
        .unwrap();
    let (_file, child, watcher) = apply_until_detach_pending(&db, &retire, &now_arg).await;
    // The reader stays until pgpart's wait for it has timed out and pgpart has gone on:
    // to FINALIZE, or (what this test guards against) out, failing every retirement.
    until("pgpart finalizes, or has gone", Duration::from_secs(60), || async {
        watcher
            .query_one(
                "SELECT count(*) FILTER (WHERE query ILIKE '%DETACH PARTITION%FINALIZE%') > 0 \
                        OR count(*) = 0 \
                   FROM pg_stat_activity WHERE application_name = 'pgpart' AND datname = current_database()",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await;
    reader.batch_execute("COMMIT").await.unwrap();
    let run = cli::wait(child).await;
    run.ok("apply with a reader outlasting lockTimeout");
    assert_seven_detached(&db, &now_arg, start, rows_before, &run).await;
    drop((reader, watcher));
    db.drop_db().await;
}

// 6. A table whose DEFAULT partition another session holds locked: a run for another table
// goes on (only the tables the policies name are observed), and a run for this one says
// why instead of waiting for ever.
async fn a_locked_table_stalls_no_other_and_reports_its_lock(pg_server: &Server) {
    let db = TestDb::create(pg_server).await;
    pg::sql(
        &db.client,
        "CREATE TABLE public.a (at timestamptz NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.a_default PARTITION OF public.a DEFAULT;
         CREATE TABLE public.b (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let holder = db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.a_default IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let now = clock::now_arg();
    let monthly = |t: &str| {
        policy_doc(
            t,
            &format!("table: public.{t}\nrange: {{interval: 1 month, premake: 1}}"),
        )
    };
    cli::apply(&db.url, &monthly("b"), &now)
        .await
        .ok("apply for b while a is locked");
    let run = cli::plan(&db.url, &monthly("a"), &now).await;
    run.expect_code(1, "plan for the locked table");
    assert!(
        run.both().to_lowercase().contains("lock timeout"),
        "{}",
        run.both()
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    cli::plan(&db.url, &monthly("a"), &now)
        .await
        .ok("plan once the lock is gone");
    drop(holder);
    db.drop_db().await;
}
