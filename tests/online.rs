//! pgpart under live traffic, on PostgreSQL 15 and 17 (`<case>::pg15`, `<case>::pg17`).
//!
//! While `pgpart apply` works on a table, readers, writers, updaters and deleters keep
//! going ([`support::traffic`]). What must hold, at every moment and at the end:
//!
//! 1. every row committed before or during the action is visible through the parent at
//!    every probe;
//! 2. every UPDATE and DELETE by key of a row that exists matches exactly one row;
//! 3. no insert fails: not for keys in existing partitions, not in the slots being
//!    repaired, not for keys only the DEFAULT partition takes;
//! 4. at the end each inserted row is there once, each deleted one is gone, each updated
//!    row's counter equals the number of updates that matched it, and the count and an md5
//!    over all rows (in id order) equal what the harness expects.
//!
//! The longest statement per role is printed, never asserted on.
//!
//! Cases:
//!
//! * `harness_sees_what_a_batch_move_hides`: the harness itself; rows moved out of the
//!   parent's sight and back (what a repair must not do) show as invisible probes, missed
//!   updates and missed deletes, and the bookkeeping still accounts for every row.
//! * `repair_under_traffic`: a three-day backlog in the DEFAULT partition repaired under
//!   full traffic; a second apply has no repair left and the default keeps only rows no
//!   partition may take (older than the retention cutoff: repair never makes a home for
//!   those).
//! * `repair_killed_under_traffic`: the same, the apply SIGKILLed at random moments (the
//!   seed is printed; `PGPART_TEST_SEED` repeats a run), then a final apply finishes.
//! * `create_while_default_is_read` / `create_while_parent_is_analyzed`: creating
//!   partitions next to a DEFAULT partition while another session holds ACCESS SHARE on
//!   the default, or SHARE UPDATE EXCLUSIVE on the parent (as ANALYZE does), for 5 s.
//! * `retire_<action>_<with|without>_default`: retention Detach, Drop and MoveToSchema
//!   under traffic on the rows newer than the cutoff.
//! * `finish_pending_detach_under_traffic`: a `DETACH … CONCURRENTLY` cancelled midway left
//!   a partition detach-pending; the apply finishes it (and the rest of retention).
//!
//! Repair may turn the backlog into one partition for several days (`<table>_repaired_…`)
//! or one per day: the checks are on coverage and on where rows live, not on names.
//! Every case hands pgpart a fixed `--now`; nothing depends on today's date.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use support::cli::{self, Run, plan_for, policy_doc};
use support::pg::{Server, TestDb, sql};
use support::traffic::{self, Key, Model, Rng, Sets, Traffic, spread_rows};
use tokio_postgres::Client;

on_every_major!(
    worker_threads = 4;
    harness_sees_what_a_batch_move_hides,
    repair_under_traffic,
    repair_killed_under_traffic,
    create_while_default_is_read,
    create_while_parent_is_analyzed,
    retire_detach_with_default,
    retire_detach_without_default,
    retire_drop_with_default,
    retire_drop_without_default,
    retire_move_with_default,
    retire_move_without_default,
    finish_pending_detach_under_traffic,
);

const TABLE: &str = "public.events";
const DEFAULT: &str = "public.events_default";
/// Ids of rows the traffic inserts start here; seeded rows are below.
const NEW_IDS: i64 = 10_000_000;

fn utc(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).unwrap()
}

fn day(d: DateTime<Utc>) -> DateTime<Utc> {
    d + chrono::Duration::days(1)
}

/// `YYYY-MM-DD 00:00:00+00`, as the catalog shows a UTC midnight bound.
fn bound(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%d %H:%M:%S+00").to_string()
}

async fn one_i64(client: &Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {}", traffic::err_text(&e)))
        .get(0)
}

/// Runs `apply` as a child process while the traffic runs; returns the run and how many
/// traffic statements ran while it did.
async fn apply_under(traffic: &Traffic, url: &str, policy: &str, now: &str) -> (Run, u64) {
    let file = cli::PolicyFile::new(policy);
    let before = traffic.ops();
    let run = cli::wait(cli::spawn_apply(&file, url, now)).await;
    (run, traffic.ops() - before)
}

/// A problem unless the run exited 0.
fn expect_ok(run: &Run, what: &str, problems: &mut Vec<String>) {
    if run.code != 0 {
        problems.push(format!("{what}: exit code {}\n{}", run.code, run.both()));
    }
}

/// Repair actions in a `plan --output json` document for [`TABLE`].
fn planned_repairs(doc: &serde_json::Value) -> Vec<String> {
    plan_for(doc, TABLE)["actions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|a| a["kind"] == "repair")
        .map(|a| a.to_string())
        .collect()
}

/// Problems with the range partitions of [`TABLE`]: they must run without gap or overlap
/// from `from` to `to`.
async fn coverage(client: &Client, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<String> {
    let bounds = cli::range_bounds(client, TABLE).await;
    let mut problems = Vec::new();
    for w in bounds.windows(2) {
        if w[0].1 != w[1].0 {
            problems.push(format!("gap or overlap between {:?} and {:?}", w[0], w[1]));
        }
    }
    if bounds.first().map(|b| b.0.as_str()) != Some(bound(from).as_str())
        || bounds.last().map(|b| b.1.as_str()) != Some(bound(to).as_str())
    {
        problems.push(format!(
            "range partitions should cover [{}, {}): {bounds:#?}",
            bound(from),
            bound(to)
        ));
    }
    problems
}

/// Fails the test with every problem found.
#[track_caller]
fn verdict(what: &str, problems: &[String]) {
    assert!(
        problems.is_empty(),
        "{what}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Every key of `sets` is disjoint from the others (a fixture error otherwise).
fn assert_disjoint(sets: &Sets) {
    let mut all: Vec<i64> = sets
        .stable
        .iter()
        .chain(&sets.update)
        .chain(&sets.delete)
        .map(|k| k.0)
        .collect();
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), n, "traffic sets overlap");
}

/// Stable/update/delete keys, `counts` of each from every span, the spans interleaved
/// (so updaters and deleters reach every span all the time).
fn sets_from(
    model: &Model,
    spans: &[(DateTime<Utc>, DateTime<Utc>)],
    counts: [usize; 3],
) -> (Vec<Key>, Vec<Key>, Vec<Key>) {
    let per_span: Vec<Vec<Vec<Key>>> = spans
        .iter()
        .map(|&(from, to)| model.disjoint(from, to, &counts))
        .collect();
    let interleave = |set: usize| -> Vec<Key> {
        (0..counts[set])
            .flat_map(|i| per_span.iter().map(move |sp| sp[set][i]))
            .collect()
    };
    (interleave(0), interleave(1), interleave(2))
}

// ---------------------------------------------------------------------------------------
// repair: a backlog of three days in the DEFAULT partition

/// Rows older than this are kept by the default: retention has passed their slots, so
/// repair makes no home for them (the cutoff at [`REPAIR_NOW`] is 2026-10-23 12:00).
const REPAIR_POLICY_RETENTION: &str = "retention: {keep: 30 days, action: Detach}";
const REPAIR_NOW: &str = "2026-11-22T12:00:00Z";

fn repair_policy(on_rows: &str, retention: &str) -> String {
    policy_doc(
        "events",
        &format!(
            "table: {TABLE}
             range: {{interval: 1 day, premake: 3}}
             defaultPartition: {{create: true, onRows: {on_rows}}}
             {retention}"
        ),
    )
}

struct Backlog {
    model: Model,
    sets: Sets,
    /// Keys the default keeps: before the retention cutoff.
    ancient: (DateTime<Utc>, DateTime<Utc>),
}

/// Daily partitions 2026-11-16 .. 11-19 and a default (made by pgpart at 11-16); 1,000 rows
/// in each of those days, 10,000 on each of 11-20, 21 and 22 (in the default: the
/// backlog), and 500 rows of June 2020 (in the default for good).
async fn backlog_setup(db: &TestDb) -> Backlog {
    let c = &db.client;
    sql(c, &traffic::table_sql(TABLE)).await;
    cli::apply(
        &db.url,
        &repair_policy("Report", ""),
        "2026-11-16T08:00:00Z",
    )
    .await
    .ok("initial apply at 2026-11-16");
    assert_eq!(
        cli::partition_names(c, TABLE).await,
        [
            "events_p20261116",
            "events_p20261117",
            "events_p20261118",
            "events_p20261119",
            "events_default"
        ]
    );
    let ancient = (utc(2020, 6, 1), utc(2020, 7, 1));
    let mut rows = Vec::new();
    let mut id = 1;
    for d in 16..=19 {
        rows.extend(spread_rows(
            id,
            utc(2026, 11, d),
            day(utc(2026, 11, d)),
            1_000,
        ));
        id += 1_000;
    }
    for d in 20..=22 {
        rows.extend(spread_rows(
            id,
            utc(2026, 11, d),
            day(utc(2026, 11, d)),
            10_000,
        ));
        id += 10_000;
    }
    rows.extend(spread_rows(id, ancient.0, ancient.1, 500));
    let model = Model::seed(c, TABLE, rows).await;
    assert_eq!(cli::count(c, DEFAULT).await, 30_500, "backlog fixture");

    let existing = (utc(2026, 11, 16), utc(2026, 11, 20));
    let backlog = (utc(2026, 11, 20), utc(2026, 11, 23));
    let (stable, update, delete) = sets_from(&model, &[existing, backlog, ancient], [100, 40, 200]);
    let sets = Sets {
        stable,
        update,
        delete,
        // Existing partitions (today-ish), the days being repaired, and the default's own.
        insert_spans: vec![(utc(2026, 11, 18), utc(2026, 11, 20)), backlog, ancient],
        first_insert_id: NEW_IDS,
    };
    assert_disjoint(&sets);
    Backlog {
        model,
        sets,
        ancient,
    }
}

/// After the repair is done (traffic stopped): no repair left in the plan, nothing in
/// the default but the ancient rows, every row where it belongs, partitions contiguous.
async fn repaired_state(db: &TestDb, bl: &Backlog, policy: &str, problems: &mut Vec<String>) {
    let c = &db.client;
    let repairs = planned_repairs(&cli::plan_json(&db.url, policy, REPAIR_NOW).await);
    if !repairs.is_empty() {
        problems.push(format!("plan after the repair still repairs: {repairs:#?}"));
    }
    let second = cli::apply(&db.url, policy, REPAIR_NOW).await;
    expect_ok(&second, "second apply", problems);
    if let Some(l) = second
        .action_lines()
        .iter()
        .find(|l| l.to_ascii_lowercase().contains("repair"))
    {
        problems.push(format!(
            "second apply repaired again: {l}\n{}",
            second.both()
        ));
    }
    let repairs = planned_repairs(&cli::plan_json(&db.url, policy, REPAIR_NOW).await);
    if !repairs.is_empty() {
        problems.push(format!("plan after the second apply repairs: {repairs:#?}"));
    }
    // The default holds exactly the rows no partition may take.
    let (a0, a1) = bl.ancient;
    let in_default = cli::count(c, DEFAULT).await;
    let ancient_in_default = one_i64(
        c,
        &format!(
            "SELECT count(*) FROM ONLY {DEFAULT} WHERE at >= '{}' AND at < '{}'",
            bound(a0),
            bound(a1)
        ),
    )
    .await;
    let ancient_expected = bl.model.count_between(a0, a1);
    if in_default != ancient_in_default || ancient_in_default != ancient_expected {
        let homes: Vec<String> = c
            .query(
                &format!(
                    "SELECT tableoid::regclass::text || ': ' || count(*) || ' rows, ' || min(at) || ' .. ' || max(at)
                       FROM {TABLE} GROUP BY tableoid ORDER BY 1"
                ),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        problems.push(format!(
            "the default holds {in_default} rows ({ancient_in_default} from before the retention cutoff), \
             expected only the {ancient_expected} from before the cutoff; rows by partition: {homes:#?}"
        ));
    }
    problems.extend(coverage(c, utc(2026, 11, 16), utc(2026, 11, 26)).await);
    // A new row for a repaired day goes to a range partition, not the default.
    sql(
        c,
        &format!(
            "INSERT INTO {TABLE} (id, at, payload) VALUES (-1, '2026-11-21 12:34:56+00', 'after')"
        ),
    )
    .await;
    let home = one_i64(
        c,
        &format!("SELECT count(*) FROM {TABLE} WHERE id = -1 AND tableoid = '{DEFAULT}'::regclass"),
    )
    .await;
    if home != 0 {
        problems.push("a new row for a repaired day went to the default".into());
    }
    sql(c, &format!("DELETE FROM {TABLE} WHERE id = -1")).await;
}

/// The harness itself: rows moved out of the parent's sight in batches (what a repair
/// must not do) and back must show as invisible probes, missed updates and missed
/// deletes, and the bookkeeping must still account for every row at the end.
async fn harness_sees_what_a_batch_move_hides(server: &Server) {
    let what = format!("harness self-check, PostgreSQL {}", server.major);
    let db = TestDb::create(server).await;
    let c = &db.client;
    let mut bl = backlog_setup(&db).await;
    let traffic = Traffic::start(&db.url, TABLE, bl.sets.clone()).await;
    traffic.started().await;
    sql(
        c,
        &format!("CREATE TABLE public.events_hidden (LIKE {TABLE})"),
    )
    .await;
    // All of the backlog in one move, right after the traffic started: moved in batches with
    // traffic between them, a loaded machine let the deleters get through their keys of the
    // backlog before it was hidden, and then no delete could miss (a flaky self-check).
    let backlog = "at >= '2026-11-20 00:00:00+00' AND at < '2026-11-23 00:00:00+00'";
    c.execute(
        &format!(
            "WITH m AS (DELETE FROM {DEFAULT} WHERE {backlog} RETURNING *)
             INSERT INTO public.events_hidden SELECT * FROM m"
        ),
        &[],
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(120), traffic.until_each_kind_missed())
        .await
        .unwrap_or_else(|_| panic!("{what}: the harness did not see every kind of miss in 120 s"));
    sql(
        c,
        &format!(
            "BEGIN; INSERT INTO {TABLE} SELECT * FROM public.events_hidden; DROP TABLE public.events_hidden; COMMIT"
        ),
    )
    .await;
    traffic.until_ops(200).await;
    let report = traffic.stop().await;
    eprintln!("{what}:\n{}", report.summary());
    let mut problems = Vec::new();
    for (kind, n) in [
        ("invisible probes", report.invisible.total),
        ("missed updates", report.missed_updates.total),
        ("missed deletes", report.missed_deletes.total),
    ] {
        if n == 0 {
            problems.push(format!("the harness saw no {kind} while rows were hidden"));
        }
    }
    if !report.errors.is_empty() {
        problems.extend(report.problems(&what));
    }
    bl.model.record(&report);
    problems.extend(bl.model.check(c, TABLE, "after the rows came back").await);
    verdict(&what, &problems);
    db.drop_db().await;
}

async fn repair_under_traffic(server: &Server) {
    let what = format!("repair under traffic, PostgreSQL {}", server.major);
    let db = TestDb::create(server).await;
    let mut bl = backlog_setup(&db).await;
    let policy = repair_policy("Repair", REPAIR_POLICY_RETENTION);
    let traffic = Traffic::start(&db.url, TABLE, bl.sets.clone()).await;
    traffic.started().await;
    let (run, during) = apply_under(&traffic, &db.url, &policy, REPAIR_NOW).await;
    let report = traffic.stop().await;
    eprintln!(
        "{what}: apply exited {}, {during} traffic statements while it ran\n{}\n{}",
        run.code,
        run.both(),
        report.summary()
    );

    let mut problems = report.problems(&what);
    expect_ok(&run, "repair apply", &mut problems);
    if during == 0 {
        problems.push("no traffic ran while the apply ran: the test did not overlap".into());
    }
    bl.model.record(&report);
    problems.extend(bl.model.check(&db.client, TABLE, "after the repair").await);
    repaired_state(&db, &bl, &policy, &mut problems).await;
    verdict(&what, &problems);
    db.drop_db().await;
}

async fn repair_killed_under_traffic(server: &Server) {
    let what = format!("repair killed under traffic, PostgreSQL {}", server.major);
    let seed = traffic::seed();
    eprintln!("{what}: seed {seed} (PGPART_TEST_SEED={seed} repeats it)");
    let mut rng = Rng::new(seed);
    let db = TestDb::create(server).await;
    let c = &db.client;
    let mut bl = backlog_setup(&db).await;
    let policy = repair_policy("Repair", REPAIR_POLICY_RETENTION);
    let file = cli::PolicyFile::new(&policy);
    let traffic =
        Traffic::start_with(&db.url, TABLE, bl.sets.clone(), Default::default(), seed).await;
    traffic.started().await;
    let mut problems = Vec::new();
    let mut kills = 0;
    for round in 1..=4 {
        let left = planned_repairs(&cli::plan_json(&db.url, &policy, REPAIR_NOW).await);
        if left.is_empty() {
            eprintln!("{what}: round {round}: no repair left");
            break;
        }
        // The moment: once a pgpart session is connected (random delay after it), or once
        // a pgpart session holds a lock on the table or one of its partitions (a short
        // random delay after it: inside whatever transaction it is in).
        let on_lock = rng.below(2) == 0;
        let delay = Duration::from_millis(if on_lock {
            rng.below(40)
        } else {
            rng.below(600)
        });
        let moment = if on_lock {
            "a pgpart session holds a lock on the table"
        } else {
            "a pgpart session is connected"
        };
        let trigger = if on_lock {
            format!(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                  WHERE a.datname = current_database() AND a.application_name = 'pgpart'
                    AND l.locktype = 'relation'
                    AND (l.relation = '{TABLE}'::regclass
                         OR l.relation IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = '{TABLE}'::regclass))"
            )
        } else {
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND application_name = 'pgpart'"
                .to_string()
        };
        let mut child = cli::spawn_apply(&file, &db.url, REPAIR_NOW);
        let started = Instant::now();
        let killed = loop {
            if child.try_wait().expect("poll apply").is_some() {
                break false;
            }
            if one_i64(c, &trigger).await > 0 {
                tokio::select! {
                    status = child.wait() => {
                        status.expect("wait for apply");
                        break false;
                    }
                    _ = tokio::time::sleep(delay) => {
                        child.start_kill().expect("SIGKILL apply");
                        break true;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let run = cli::wait(child).await;
        kills += u32::from(killed);
        eprintln!(
            "{what}: round {round}: {} after {:.0?} (kill planned {delay:.0?} after {moment}), traffic at {}, exit {}\n{}",
            if killed { "killed" } else { "finished" },
            started.elapsed(),
            traffic.stamp(),
            run.code,
            run.both()
        );
        if !killed {
            expect_ok(
                &run,
                &format!("round {round}: apply that was not killed"),
                &mut problems,
            );
        }
    }
    let (run, during) = apply_under(&traffic, &db.url, &policy, REPAIR_NOW).await;
    let report = traffic.stop().await;
    eprintln!(
        "{what}: {kills} kills; final apply exited {}, {during} traffic statements while it ran\n{}\n{}",
        run.code,
        run.both(),
        report.summary()
    );
    problems.splice(0..0, report.problems(&what));
    expect_ok(&run, "final apply", &mut problems);
    bl.model.record(&report);
    problems.extend(bl.model.check(c, TABLE, "after the final apply").await);
    repaired_state(&db, &bl, &policy, &mut problems).await;
    verdict(&format!("{what} (seed {seed})"), &problems);
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// creating partitions next to a DEFAULT partition while another session holds a lock

const HOLD: Duration = Duration::from_secs(5);

fn create_policy(premake: u32) -> String {
    policy_doc(
        "events",
        &format!(
            "table: {TABLE}
             range: {{interval: 1 day, premake: {premake}}}
             defaultPartition: {{create: true, onRows: Report}}"
        ),
    )
}

async fn create_while_default_is_read(server: &Server) {
    create_with_holder(
        server,
        &format!("LOCK TABLE {DEFAULT} IN ACCESS SHARE MODE"),
        "ACCESS SHARE on the default",
    )
    .await
}

async fn create_while_parent_is_analyzed(server: &Server) {
    create_with_holder(
        server,
        &format!("LOCK TABLE ONLY {TABLE} IN SHARE UPDATE EXCLUSIVE MODE"),
        "SHARE UPDATE EXCLUSIVE on the parent",
    )
    .await
}

/// Partitions 2026-11-17 .. 11-20 (today is 11-19, tomorrow 11-20 exists) and a default
/// holding rows of March 2031; apply at 11-19 with premake 6 creates 11-21 .. 11-25 while
/// another session holds `lock` for [`HOLD`].
async fn create_with_holder(server: &Server, lock: &str, held: &str) {
    let what = format!("create with {held} held, PostgreSQL {}", server.major);
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(c, &traffic::table_sql(TABLE)).await;
    cli::apply(&db.url, &create_policy(3), "2026-11-17T08:00:00Z")
        .await
        .ok("initial apply at 2026-11-17");
    let future = (utc(2031, 3, 1), utc(2031, 4, 1));
    let mut rows = Vec::new();
    for d in 17..=20 {
        rows.extend(spread_rows(
            1 + (d as i64 - 17) * 1_000,
            utc(2026, 11, d),
            day(utc(2026, 11, d)),
            1_000,
        ));
    }
    rows.extend(spread_rows(10_001, future.0, future.1, 2_000));
    let mut model = Model::seed(c, TABLE, rows).await;
    assert_eq!(
        cli::count(c, DEFAULT).await,
        2_000,
        "rows of 2031 in the default"
    );
    let existing = (utc(2026, 11, 17), utc(2026, 11, 21));
    let (stable, update, delete) = sets_from(&model, &[existing, future], [100, 40, 200]);
    let sets = Sets {
        stable,
        update,
        delete,
        // Today, tomorrow, and keys only the default takes.
        insert_spans: vec![(utc(2026, 11, 19), utc(2026, 11, 21)), future],
        first_insert_id: NEW_IDS,
    };
    assert_disjoint(&sets);

    let traffic = Traffic::start(&db.url, TABLE, sets).await;
    traffic.started().await;
    let mut holder = db.connect().await;
    let tx = holder.transaction().await.unwrap();
    tx.batch_execute(lock).await.unwrap();
    let hold_start = Instant::now();
    let file = cli::PolicyFile::new(&create_policy(6));
    let before = traffic.ops();
    let mut child = cli::spawn_apply(&file, &db.url, "2026-11-19T12:00:00Z");
    // The checkpoint: half-way through the hold, or when the apply is seen queued for a
    // lock, whichever is later (an apply that is already done by then stalls nobody).
    // From there to the release readers must complete probes: a stall for the rest of
    // the hold shows as no progress, whatever the machine's speed.
    let mut queued_at: Option<String> = None;
    let mut checkpoint: Option<(u64, String)> = None;
    let mut apply_done = false;
    while hold_start.elapsed() < HOLD {
        if child.try_wait().expect("poll apply").is_some() {
            apply_done = true;
            break;
        }
        if queued_at.is_none() {
            let waits = one_i64(
                c,
                "SELECT count(*) FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name = 'pgpart'
                    AND wait_event_type = 'Lock'",
            )
            .await;
            if waits > 0 {
                queued_at = Some(traffic.stamp());
                if hold_start.elapsed() >= HOLD / 2 {
                    checkpoint = Some((traffic.probes(), traffic.stamp()));
                }
            }
        }
        if checkpoint.is_none() && hold_start.elapsed() >= HOLD / 2 {
            checkpoint = Some((traffic.probes(), traffic.stamp()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let probes_at_release = traffic.probes();
    let released_at = traffic.stamp();
    let running_at_release = !apply_done && child.try_wait().expect("poll apply").is_none();
    tx.rollback().await.unwrap();
    drop(holder);
    let run = cli::wait(child).await;
    let apply_took = hold_start.elapsed();
    let during = traffic.ops() - before;
    let report = traffic.stop().await;
    eprintln!(
        "{what}: apply exited {} after {apply_took:.1?} (hold {HOLD:?}), {during} traffic statements while it ran; \
         apply seen queued for a lock at {queued_at:?}, still running at the release: {running_at_release}; \
         probes at the checkpoint {checkpoint:?}, at the release ({released_at}) {probes_at_release}\n{}\n{}",
        run.code,
        run.both(),
        report.summary()
    );

    let mut problems = report.problems(&what);
    expect_ok(&run, "apply after the hold", &mut problems);
    if let Some((probes, at)) = &checkpoint
        && running_at_release
        && probes_at_release <= *probes
    {
        problems.push(format!(
            "readers completed no probe from {at} to the release of the holder ({released_at}) while the apply ran \
             (apply seen queued for a lock at {queued_at:?}): they were stalled for the rest of the hold"
        ));
    }
    model.record(&report);
    problems.extend(model.check(c, TABLE, "after the apply").await);
    problems.extend(coverage(c, utc(2026, 11, 17), utc(2026, 11, 26)).await);
    let not_future = one_i64(
        c,
        &format!(
            "SELECT count(*) FROM ONLY {DEFAULT} WHERE at < '{}'",
            bound(future.0)
        ),
    )
    .await;
    if not_future != 0 {
        problems.push(format!(
            "{not_future} rows in the default that a partition should take"
        ));
    }
    let in_default = cli::count(c, DEFAULT).await;
    let expected = model.count_between(future.0, future.1);
    if in_default != expected {
        problems.push(format!(
            "the default holds {in_default} rows, expected the {expected} of 2031"
        ));
    }
    verdict(&what, &problems);
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// retention under traffic

async fn retire_detach_with_default(server: &Server) {
    retirement(server, "Detach", true).await
}
async fn retire_detach_without_default(server: &Server) {
    retirement(server, "Detach", false).await
}
async fn retire_drop_with_default(server: &Server) {
    retirement(server, "Drop", true).await
}
async fn retire_drop_without_default(server: &Server) {
    retirement(server, "Drop", false).await
}
async fn retire_move_with_default(server: &Server) {
    retirement(server, "MoveToSchema", true).await
}
async fn retire_move_without_default(server: &Server) {
    retirement(server, "MoveToSchema", false).await
}
async fn finish_pending_detach_under_traffic(server: &Server) {
    retirement_with(server, "Detach", false, true).await
}

/// Leave `partition` detach-pending: a `DETACH … CONCURRENTLY` that waits for an older
/// snapshot is cancelled after its first transaction committed.
async fn leave_detach_pending(db: &TestDb, partition: &str) {
    let reader = db.connect().await;
    reader
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM public.events")
        .await
        .unwrap();
    let detacher = db.connect().await;
    let pid: i32 = detacher
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sql = format!("ALTER TABLE public.events DETACH PARTITION public.{partition} CONCURRENTLY");
    let detach = tokio::spawn(async move { detacher.batch_execute(&sql).await });
    let pending = format!(
        "SELECT count(*) FROM pg_inherits WHERE inhrelid = 'public.{partition}'::regclass AND inhdetachpending"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while one_i64(&db.client, &pending).await == 0 {
        assert!(Instant::now() < deadline, "the detach never became pending");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    db.client
        .execute("SELECT pg_cancel_backend($1)", &[&pid])
        .await
        .unwrap();
    assert!(
        detach.await.unwrap().is_err(),
        "the detach should be cancelled"
    );
    reader.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        one_i64(&db.client, &pending).await,
        1,
        "{partition} pending"
    );
}

fn retention_policy(with_default: bool, retention: &str) -> String {
    let default = if with_default {
        "defaultPartition: {create: true}"
    } else {
        ""
    };
    policy_doc(
        "events",
        &format!(
            "table: {TABLE}
             range: {{interval: 1 day, premake: 3, startFrom: \"2026-11-01\"}}
             {default}
             {retention}"
        ),
    )
}

/// Daily partitions 2026-11-01 .. 11-13 with 500 rows each (and, with a default, 1,000
/// rows of March 2031 in it). At 11-12 08:00, keep 5 days: the cutoff is 11-07 08:00, so
/// 11-01 .. 11-06 are retired while traffic runs on the rows from 11-07 on.
async fn retirement(server: &Server, action: &str, with_default: bool) {
    retirement_with(server, action, with_default, false).await
}

async fn retirement_with(server: &Server, action: &str, with_default: bool, pending: bool) {
    let what = format!(
        "retention {action} {} a default{}, PostgreSQL {}",
        if with_default { "with" } else { "without" },
        if pending { ", one detach pending" } else { "" },
        server.major
    );
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(c, &traffic::table_sql(TABLE)).await;
    cli::apply(
        &db.url,
        &retention_policy(with_default, ""),
        "2026-11-10T08:00:00Z",
    )
    .await
    .ok("initial apply at 2026-11-10");
    let mut rows = Vec::new();
    for d in 1..=13 {
        rows.extend(spread_rows(
            1 + (d as i64 - 1) * 500,
            utc(2026, 11, d),
            day(utc(2026, 11, d)),
            500,
        ));
    }
    let future = (utc(2031, 3, 1), utc(2031, 4, 1));
    if with_default {
        rows.extend(spread_rows(100_001, future.0, future.1, 1_000));
    }
    let mut model = Model::seed(c, TABLE, rows).await;
    let cutoff_day = utc(2026, 11, 7);
    let mut spans = vec![(cutoff_day, utc(2026, 11, 14))];
    if with_default {
        spans.push(future);
    }
    let (stable, update, delete) = sets_from(&model, &spans, [100, 40, 200]);
    let mut insert_spans = vec![(utc(2026, 11, 8), utc(2026, 11, 14))];
    if with_default {
        insert_spans.push(future);
    }
    let sets = Sets {
        stable,
        update,
        delete,
        insert_spans,
        first_insert_id: NEW_IDS,
    };
    assert_disjoint(&sets);

    let schema = if action == "MoveToSchema" {
        ", schema: archive"
    } else {
        ""
    };
    let policy = retention_policy(
        with_default,
        &format!("retention: {{keep: 5 days, action: {action}{schema}, maxPerPass: 50}}"),
    );
    let now = "2026-11-12T08:00:00Z";
    if pending {
        leave_detach_pending(&db, "events_p20261101").await;
    }
    let traffic = Traffic::start(&db.url, TABLE, sets).await;
    traffic.started().await;
    let (run, during) = apply_under(&traffic, &db.url, &policy, now).await;
    let report = traffic.stop().await;
    eprintln!(
        "{what}: apply exited {}, {during} traffic statements while it ran\n{}\n{}",
        run.code,
        run.both(),
        report.summary()
    );

    let mut problems = report.problems(&what);
    expect_ok(&run, "retention apply", &mut problems);
    if one_i64(c, "SELECT count(*) FROM pg_inherits WHERE inhdetachpending").await > 0 {
        problems.push("a detach is still pending after the apply".into());
    }
    if during == 0 {
        problems.push("no traffic ran while the apply ran: the test did not overlap".into());
    }
    model.record(&report);
    let retired = model.split_off(|r| r.at < cutoff_day);
    problems.extend(model.check(c, TABLE, "the parent after retention").await);
    problems.extend(coverage(c, cutoff_day, utc(2026, 11, 16)).await);
    let retired_names: Vec<String> = (1..=6).map(|d| format!("events_p202611{d:02}")).collect();
    let home = match action {
        "Detach" => Some("public"),
        "MoveToSchema" => Some("archive"),
        _ => None,
    };
    let mut all_there = true;
    for name in &retired_names {
        for schema in ["public", "archive"] {
            let q = format!("{schema}.{name}");
            let exists = cli::exists(c, &q).await;
            all_there &= exists || home != Some(schema);
            if exists != (home == Some(schema)) {
                problems.push(format!(
                    "{q} {}",
                    if exists { "exists" } else { "is missing" }
                ));
            }
        }
    }
    if let Some(schema) = home {
        let union = retired_names
            .iter()
            .map(|n| format!("SELECT id, at, n, payload FROM {schema}.{n}"))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        if all_there {
            problems.extend(
                retired
                    .check(c, &format!("({union})"), "the retired partitions")
                    .await,
            );
        }
    }
    verdict(&what, &problems);
    db.drop_db().await;
}
