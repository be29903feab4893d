//! End-to-end scenarios of the engine through the CLI (`pgpart plan|apply`) against real
//! PostgreSQL 15 and 17: what the catalog holds afterwards is read back and checked
//! (bounds with `pg_get_expr` under TimeZone UTC, ownership comments, indexes, rows).
//!
//! Every scenario runs on both majors as `<scenario>::pg15` and `<scenario>::pg17`, each in
//! its own database, so they run in parallel.
//!
//! Each case hands pgpart (`--now`) an instant chosen for its calendar situation (a DST
//! change, a year end, a Wednesday, a backlog of days) and writes its rows for that instant:
//! fixed on purpose, and independent of the date the suite runs on. Tests whose "now"
//! stands for today take it from `support::clock` instead.

mod support;

use chrono::{Duration, Months, NaiveDate, NaiveDateTime};
use support::cli::{self, Run, action_count, plan_for, policy_doc, policy_docs};
use support::pg::{Server, TestDb, sql};
use tokio_postgres::Client;

on_every_major!(
    monthly_premake_six_with_brin,
    daily_backlog_in_default_report_then_repair,
    daily_backlog_in_default_repair,
    yearly_premake_two,
    yearly_retention_drop_progressive_and_foreign,
    six_monthly_tables_retention_detach,
    retention_move_to_schema,
    django_weekly_template,
    django_weekly_template_across_year_end,
    django_monthly_template,
    integer_key_premake_from_max,
    integer_key_overflow_does_not_crash,
    list_and_hash_sets,
    time_zone_daily_spring_forward,
    time_zone_daily_fall_back,
    time_zone_naive_timestamp_key,
    time_zone_monthly_berlin,
    time_zone_fixed_offset,
    hourly_premake_24,
    hourly_across_dst_spring_forward,
    hourly_across_dst_fall_back,
    repair_with_an_epoch_row_in_default,
    integer_key_retention_drop,
    a_comment_of_ones_own_does_not_disown_a_partition,
    quoted_identifiers_repair_and_retention,
    off_grid_foreign_partition_is_left_alone_and_bridged,
    stray_rows_in_default_do_not_block_premake,
    what_an_earlier_repair_left_is_shown_and_undone,
    a_referenced_table_is_not_repaired,
);

// ---------------------------------------------------------------------------------------
// helpers

async fn one_i64(client: &Client, query: &str) -> i64 {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e:?}"))
        .get(0)
}

async fn one_text(client: &Client, query: &str) -> Option<String> {
    client
        .query_one(query, &[])
        .await
        .unwrap_or_else(|e| panic!("{query}: {e:?}"))
        .get(0)
}

/// `md5` of every row of `rel` as text, in id order: equal means byte-identical rows.
async fn rows_digest(client: &Client, rel: &str) -> String {
    one_text(
        client,
        &format!("SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM {rel} t"),
    )
    .await
    .unwrap_or_default()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `n + 1` month starts from (y, m) as UTC timestamptz bound text, e.g. `2026-11-01 00:00:00+00`.
fn month_bounds_utc(y: i32, m: u32, n: u32) -> Vec<(String, String)> {
    let start = NaiveDate::from_ymd_opt(y, m, 1).unwrap();
    (0..n)
        .map(|i| {
            let a = start.checked_add_months(Months::new(i)).unwrap();
            let b = start.checked_add_months(Months::new(i + 1)).unwrap();
            (
                a.format("%Y-%m-%d 00:00:00+00").to_string(),
                b.format("%Y-%m-%d 00:00:00+00").to_string(),
            )
        })
        .collect()
}

fn ts(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s.trim_end_matches("+00"), "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// Each range ends where the next begins.
#[track_caller]
fn assert_contiguous(bounds: &[(String, String)], what: &str) {
    for w in bounds.windows(2) {
        assert_eq!(
            w[0].1, w[1].0,
            "{what}: gap or overlap between {:?} and {:?} in {bounds:#?}",
            w[0], w[1]
        );
    }
}

/// Asserts that an apply made changes (exit 0) and returns its output.
#[track_caller]
fn applied(run: &Run, what: &str) {
    run.ok(what);
    assert!(
        !run.action_lines().is_empty(),
        "{what}: apply printed no action:\n{}",
        run.both()
    );
}

/// A second apply with the same input: exit 0, no action printed, catalog identical
/// (OIDs included), and plan shows zero actions.
async fn assert_idempotent(db: &TestDb, policy: &str, now: &str) {
    let before = cli::snapshot(&db.client, true).await;
    let run = cli::apply(&db.url, policy, now).await;
    run.ok("second apply");
    assert!(
        run.action_lines().is_empty(),
        "second apply should change nothing, printed:\n{}",
        run.both()
    );
    let after = cli::snapshot(&db.client, true).await;
    cli::assert_same_snapshot(&before, &after, "second apply");
    let doc = cli::plan_json(&db.url, policy, now).await;
    assert_eq!(
        action_count(&doc),
        0,
        "plan after apply should have no actions: {doc:#}"
    );
}

/// Which partition a row with key `key` (SQL literal) of `parent` lands in.
async fn home_of(client: &Client, parent: &str, key_col: &str, key: &str) -> String {
    one_text(
        client,
        &format!("SELECT tableoid::regclass::text FROM {parent} WHERE {key_col} = {key} LIMIT 1"),
    )
    .await
    .unwrap_or_else(|| panic!("no row {key_col} = {key} in {parent}"))
}

/// Partitions of `parent` that still carry pgpart's helper CHECK.
async fn leftover_bound_checks(client: &Client, parent: &str) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_constraint co JOIN pg_inherits i ON i.inhrelid = co.conrelid
              WHERE i.inhparent = $1::text::regclass AND co.conname = 'pgpart_bound'",
            &[&parent],
        )
        .await
        .unwrap()
        .get(0)
}

// ---------------------------------------------------------------------------------------
// 1. monthly license_heartbeats, premake 6, BRIN on the parent

async fn monthly_premake_six_with_brin(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.license_heartbeats (
             id bigint GENERATED ALWAYS AS IDENTITY,
             license_id bigint NOT NULL,
             seen_at timestamptz NOT NULL,
             payload jsonb
         ) PARTITION BY RANGE (seen_at);
         CREATE INDEX license_heartbeats_seen_at_brin ON public.license_heartbeats USING brin (seen_at);",
    )
    .await;
    let policy = policy_doc(
        "hb",
        "table: public.license_heartbeats
         range: {interval: 1 month, premake: 6, timeZone: UTC}
         lockTimeout: 5s",
    );
    let now = "2026-11-22T10:00:00Z";
    let names: Vec<String> = [
        "20261101", "20261201", "20270101", "20270201", "20270301", "20270401", "20270501",
    ]
    .iter()
    .map(|d| format!("license_heartbeats_p{d}"))
    .collect();

    // plan first: the creations with their SQL, and nothing changed.
    let before = cli::snapshot(c, true).await;
    let doc = cli::plan_json(&db.url, &policy, now).await;
    cli::assert_same_snapshot(&before, &cli::snapshot(c, true).await, "plan");
    let p = plan_for(&doc, "public.license_heartbeats");
    let actions = p["actions"].as_array().unwrap();
    let planned: Vec<&str> = actions
        .iter()
        .map(|a| a["partition"].as_str().unwrap())
        .collect();
    assert_eq!(
        planned,
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        "{doc:#}"
    );
    for a in actions {
        assert_eq!(a["kind"], "create", "{a:#}");
        let sql = a["sql"].as_array().unwrap();
        assert!(
            sql.iter()
                .any(|s| s.as_str().unwrap().contains("ATTACH PARTITION")),
            "create should attach: {a:#}"
        );
    }

    let run = cli::apply(&db.url, &policy, now).await;
    applied(&run, "first apply");
    for n in &names {
        assert!(
            run.stdout.contains(n.as_str()),
            "apply should print {n}:\n{}",
            run.both()
        );
    }

    let parts = cli::partitions(c, "public.license_heartbeats").await;
    assert_eq!(
        parts.iter().map(|p| p.name.clone()).collect::<Vec<_>>(),
        names
    );
    let bounds: Vec<(String, String)> = parts
        .iter()
        .map(|p| (p.from.clone().unwrap(), p.to.clone().unwrap()))
        .collect();
    assert_eq!(bounds, month_bounds_utc(2026, 11, 7));
    for p in &parts {
        assert!(p.managed, "{} should carry the pgpart comment", p.name);
        assert_eq!(p.schema, "public");
        let child = format!("public.{}", p.name);
        let brin = cli::indexes_using(c, &child, "brin").await;
        assert_eq!(
            brin.len(),
            1,
            "{child} should have the parent's BRIN index: {brin:?}"
        );
        let attached = one_i64(
            c,
            &format!(
                "SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid
                  WHERE x.indrelid = '{child}'::regclass
                    AND i.inhparent = 'public.license_heartbeats_seen_at_brin'::regclass"
            ),
        )
        .await;
        assert_eq!(
            attached, 1,
            "{child}'s BRIN index should be a partition of the parent's"
        );
    }
    assert_eq!(
        leftover_bound_checks(c, "public.license_heartbeats").await,
        0
    );

    // Coverage is real: this month through the sixth ahead take rows, the month after doesn't.
    sql(
        c,
        "INSERT INTO public.license_heartbeats (license_id, seen_at) VALUES
             (1, '2026-11-01 00:00:00+00'), (1, '2026-11-22 10:00:00+00'), (2, '2027-05-31 23:59:59.999999+00')",
    )
    .await;
    let err = c
        .batch_execute("INSERT INTO public.license_heartbeats (license_id, seen_at) VALUES (3, '2027-06-01 00:00:00+00')")
        .await;
    assert!(
        err.is_err(),
        "2027-06 is beyond premake 6 and should have no partition"
    );

    assert_idempotent(&db, &policy, now).await;
    let doc = cli::plan_json(&db.url, &policy, now).await;
    let s = &plan_for(&doc, "public.license_heartbeats")["summary"];
    assert_eq!(s["partitions"], 7, "{doc:#}");
    assert_eq!(s["oldest"], "license_heartbeats_p20261101", "{doc:#}");
    assert_eq!(s["newest"], "license_heartbeats_p20270501", "{doc:#}");
    assert_eq!(s["coveredUntil"], "2027-06-01T00:00:00Z", "{doc:#}");
    assert_eq!(s["defaultPartitionRows"], 0, "{doc:#}");
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 2. daily table whose maintenance stopped for three days: rows in the DEFAULT partition

const BACKLOG_TABLE: &str = "CREATE TABLE public.events (
         id bigint GENERATED ALWAYS AS IDENTITY,
         at timestamptz NOT NULL,
         kind text NOT NULL,
         payload text,
         payload_len integer GENERATED ALWAYS AS (coalesce(length(payload), -1)) STORED,
         PRIMARY KEY (id, at)
     ) PARTITION BY RANGE (at);
     CREATE INDEX events_at_brin ON public.events USING brin (at);";

fn backlog_policy(on_rows: &str) -> String {
    policy_doc(
        "events",
        &format!(
            "table: public.events
             range: {{interval: 1 day, premake: 3}}
             defaultPartition: {{create: true, onRows: {on_rows}}}"
        ),
    )
}

/// Rows per backlog day D+1..D+3 (2026-11-20, 21, 22), boundary rows included.
const BACKLOG: [(&str, i64); 3] = [
    ("2026-11-20", 10_000),
    ("2026-11-21", 25_000),
    ("2026-11-22", 10_001),
];
const BACKLOG_ROWS: i64 = 45_001;

/// Partitions up to D = 2026-11-19 and a default partition (made by pgpart at D-3), 1,000
/// rows in each of D-3..D, then three days of rows that fell into the default.
/// Returns (digest of all rows, row count).
async fn backlog_setup(db: &TestDb) -> (String, i64) {
    let c = &db.client;
    sql(c, BACKLOG_TABLE).await;
    let run = cli::apply(&db.url, &backlog_policy("Report"), "2026-11-16T08:00:00Z").await;
    applied(&run, "initial apply at D-3");
    assert_eq!(
        cli::partition_names(c, "public.events").await,
        [
            "events_p20261116",
            "events_p20261117",
            "events_p20261118",
            "events_p20261119",
            "events_default"
        ],
    );
    sql(
        c,
        "INSERT INTO public.events (at, kind, payload)
         SELECT timestamptz '2026-11-16 00:00:00+00' + g * interval '345.6 seconds', 'old', 'row ' || g
           FROM generate_series(0, 999) g;",
    )
    .await;
    for (i, (day, n)) in BACKLOG.iter().enumerate() {
        // The last day's count includes the edge row inserted below.
        let n = if i == BACKLOG.len() - 1 { n - 1 } else { *n };
        // Spread over the day from its first microsecond; text with tabs, quotes, backslashes,
        // non-ASCII and some NULLs.
        sql(
            c,
            &format!(
                "INSERT INTO public.events (at, kind, payload)
                 SELECT timestamptz '{day} 00:00:00+00' + g * (interval '1 day' / {n}), 'k' || (g % 7),
                        CASE WHEN g % 97 = 0 THEN NULL
                             ELSE repeat(md5(g::text), 1 + g % 3) || E'\\t''\"\\\\ü€{i}' END
                   FROM generate_series(0, {n} - 1) g;"
            ),
        )
        .await;
    }
    // D+3's last microsecond (still D+3): the day's row count includes it.
    let last_day = BACKLOG[2].0;
    sql(
        c,
        &format!("INSERT INTO public.events (at, kind, payload) VALUES ('{last_day} 23:59:59.999999+00', 'edge', 'last')"),
    )
    .await;
    for (day, n) in BACKLOG {
        let in_day = one_i64(
            c,
            &format!("SELECT count(*) FROM public.events WHERE at >= '{day} 00:00:00+00' AND at < timestamptz '{day} 00:00:00+00' + interval '1 day'"),
        )
        .await;
        assert_eq!(in_day, n, "backlog fixture: rows on {day}");
    }
    assert_eq!(cli::count(c, "public.events_default").await, BACKLOG_ROWS);
    (
        rows_digest(c, "public.events").await,
        cli::count(c, "public.events").await,
    )
}

/// The partition a repair makes of the three backlog days: the default itself, renamed.
const REPAIRED: &str = "events_repaired_202611200000";

/// After a successful repair: every row kept byte-identical, the default empty, the backlog
/// days in one new partition (the old default) with the indexes, no helper CHECK left.
async fn assert_backlog_repaired(db: &TestDb, digest: &str, total: i64) {
    let c = &db.client;
    assert_eq!(
        cli::count(c, "public.events").await,
        total,
        "row count changed"
    );
    assert_eq!(
        rows_digest(c, "public.events").await,
        digest,
        "rows changed (md5 of all rows in id order)"
    );
    assert_eq!(
        cli::count(c, "public.events_default").await,
        0,
        "the default partition should be empty"
    );
    let parts = cli::partitions(c, "public.events").await;
    let p = parts
        .iter()
        .find(|p| p.name == REPAIRED)
        .unwrap_or_else(|| panic!("{REPAIRED} missing: {parts:#?}"));
    assert!(p.managed, "{REPAIRED} should be marked as pgpart's");
    assert_eq!(
        (p.from.as_deref(), p.to.as_deref()),
        (
            Some("2026-11-20 00:00:00+00"),
            Some("2026-11-23 00:00:00+00")
        ),
    );
    assert_eq!(
        cli::count(c, &format!("public.{REPAIRED}")).await,
        BACKLOG_ROWS
    );
    for (day, n) in BACKLOG {
        let in_day = one_i64(
            c,
            &format!("SELECT count(*) FROM public.{REPAIRED} WHERE at >= '{day} 00:00:00+00' AND at < timestamptz '{day} 00:00:00+00' + interval '1 day'"),
        )
        .await;
        assert_eq!(in_day, n, "rows of {day} in {REPAIRED}");
    }
    for rel in [REPAIRED, "events_default"] {
        for (am, what) in [("brin", "BRIN"), ("btree", "primary key")] {
            assert_eq!(
                cli::indexes_using(c, &format!("public.{rel}"), am)
                    .await
                    .len(),
                1,
                "{rel} {what}"
            );
        }
    }
    let bounds = cli::range_bounds(c, "public.events").await;
    assert_contiguous(&bounds, "partitions after repair");
    assert_eq!(bounds.first().unwrap().0, "2026-11-16 00:00:00+00");
    assert_eq!(
        bounds.last().unwrap().1,
        "2026-11-26 00:00:00+00",
        "through D+3 plus premake 3"
    );
    assert_eq!(
        leftover_bound_checks(c, "public.events").await,
        0,
        "pgpart_bound CHECKs left behind"
    );
    assert_eq!(
        one_i64(
            c,
            "SELECT count(*) FROM public.events WHERE payload_len <> coalesce(length(payload), -1)"
        )
        .await,
        0,
        "generated column out of step"
    );
    // The identity still works and new rows for a repaired day go to its partition.
    sql(c, "INSERT INTO public.events (at, kind, payload) VALUES ('2026-11-21 12:34:56+00', 'after', 'repair')").await;
    assert_eq!(
        home_of(c, "public.events", "kind", "'after'").await,
        REPAIRED,
        "a new row for a repaired day should land in its partition"
    );
}

async fn daily_backlog_in_default_report_then_repair(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    let (digest, total) = backlog_setup(&db).await;
    let now = "2026-11-22T12:00:00Z"; // D+3

    // Report: the finding, with the count; the default and its rows are left alone.
    let report = backlog_policy("Report");
    let doc = cli::plan_json(&db.url, &report, now).await;
    let p = plan_for(&doc, "public.events");
    assert_eq!(
        p["summary"]["defaultPartitionRows"], BACKLOG_ROWS,
        "{doc:#}"
    );
    let findings = p["findings"].as_array().unwrap();
    let rows_finding = findings
        .iter()
        .find(|f| f["reason"] == "RowsInDefault")
        .unwrap_or_else(|| panic!("no RowsInDefault finding: {doc:#}"));
    assert!(
        rows_finding["message"]
            .as_str()
            .unwrap()
            .contains(&BACKLOG_ROWS.to_string()),
        "RowsInDefault should give the count: {rows_finding:#}"
    );
    for a in p["actions"].as_array().unwrap() {
        let part = a["partition"].as_str().unwrap();
        assert!(
            !["events_p20261120", "events_p20261121", "events_p20261122"].contains(&part),
            "Report must not plan anything for the slots holding default rows: {a:#}"
        );
    }

    let run = cli::apply(&db.url, &report, now).await;
    assert!(!run.panicked(), "{}", run.both());
    // What happens: the blocked slots are findings, the free slots ahead are created.
    eprintln!(
        "PostgreSQL {}: apply with onRows: Report exited {}:\n{}",
        server.major,
        run.code,
        run.both()
    );
    assert!(
        run.code == 0 || run.code == 1,
        "exit code {}:\n{}",
        run.code,
        run.both()
    );
    assert!(
        run.stdout.contains("RowsInDefault"),
        "apply should print the finding:\n{}",
        run.both()
    );
    assert_eq!(
        cli::count(c, "public.events").await,
        total,
        "Report lost rows"
    );
    assert_eq!(
        rows_digest(c, "public.events").await,
        digest,
        "Report changed rows"
    );
    assert_eq!(
        cli::count(c, "public.events_default").await,
        BACKLOG_ROWS,
        "Report must leave the default alone"
    );
    let names = cli::partition_names(c, "public.events").await;
    for day in ["20261123", "20261124", "20261125"] {
        assert!(
            names.contains(&format!("events_p{day}")),
            "free slot {day} should be created: {names:?}"
        );
    }
    for day in ["20261120", "20261121", "20261122"] {
        assert!(
            !names.contains(&format!("events_p{day}")),
            "blocked slot {day} exists: {names:?}"
        );
    }

    // Then Repair at D+3.
    let repair = backlog_policy("Repair");
    let run = cli::apply(&db.url, &repair, now).await;
    applied(&run, "apply with onRows: Repair");
    assert_backlog_repaired(&db, &digest, total).await;
    let doc = cli::plan_json(&db.url, &repair, now).await;
    let p = plan_for(&doc, "public.events");
    assert_eq!(p["summary"]["defaultPartitionRows"], 0, "{doc:#}");
    assert!(
        !p["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["reason"] == "RowsInDefault"),
        "{doc:#}"
    );
    assert_idempotent(&db, &repair, now).await;
    db.drop_db().await;
}

async fn daily_backlog_in_default_repair(server: &Server) {
    let db = TestDb::create(server).await;
    let (digest, total) = backlog_setup(&db).await;
    let now = "2026-11-22T12:00:00Z"; // D+3
    let repair = backlog_policy("Repair");
    let doc = cli::plan_json(&db.url, &repair, now).await;
    let kinds: Vec<(String, String)> = plan_for(&doc, "public.events")["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["partition"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds.first(),
        Some(&("repair".to_string(), REPAIRED.to_string())),
        "plan should repair the three days as one, first: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| k.0 == "repair").count(),
        1,
        "{kinds:?}"
    );
    let run = cli::apply(&db.url, &repair, now).await;
    applied(&run, "apply with onRows: Repair");
    assert!(
        run.stdout.contains(&format!(
            "make default partition events_default the partition {REPAIRED}"
        )),
        "apply should say what the repair did:\n{}",
        run.both()
    );
    assert_backlog_repaired(&db, &digest, total).await;
    assert_idempotent(&db, &repair, now).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 3. yearly: premake, retention Drop, maxPerPass, partitions not made by pgpart

const LEDGER: &str =
    "CREATE TABLE public.ledger (id bigint NOT NULL, booked_on date NOT NULL, amount numeric)
     PARTITION BY RANGE (booked_on);";

fn year_bounds(from: i32, to_incl: i32) -> Vec<(String, String)> {
    (from..=to_incl)
        .map(|y| (format!("{y}-01-01"), format!("{}-01-01", y + 1)))
        .collect()
}

async fn yearly_premake_two(server: &Server) {
    let db = TestDb::create(server).await;
    sql(&db.client, LEDGER).await;
    let policy = policy_doc(
        "ledger",
        "table: public.ledger\nrange: {interval: 1 year, premake: 2}",
    );
    let now = "2026-11-22T10:00:00Z";
    applied(&cli::apply(&db.url, &policy, now).await, "apply");
    assert_eq!(
        cli::partition_names(&db.client, "public.ledger").await,
        ["ledger_p20260101", "ledger_p20270101", "ledger_p20280101"]
    );
    assert_eq!(
        cli::range_bounds(&db.client, "public.ledger").await,
        year_bounds(2026, 2028)
    );
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

async fn yearly_retention_drop_progressive_and_foreign(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(c, LEDGER).await;
    let now = "2026-11-22T10:00:00Z";
    let grow = policy_doc(
        "ledger",
        "table: public.ledger\nrange: {interval: 1 year, premake: 2, startFrom: \"2018-01-01\"}",
    );
    applied(
        &cli::apply(&db.url, &grow, now).await,
        "apply without retention",
    );
    assert_eq!(
        cli::range_bounds(c, "public.ledger").await,
        year_bounds(2018, 2028)
    );
    sql(
        c,
        "INSERT INTO public.ledger SELECT y, make_date(y, 6, 1), y FROM generate_series(2018, 2028) y;
         CREATE TABLE public.ledger_manual_2015 PARTITION OF public.ledger
             FOR VALUES FROM ('2015-01-01') TO ('2016-01-01');
         INSERT INTO public.ledger VALUES (2015, '2015-03-03', 1);",
    )
    .await;

    let retire = |adopt: bool| {
        policy_doc(
            "ledger",
            &format!(
                "table: public.ledger
                 range: {{interval: 1 year, premake: 2, startFrom: \"2018-01-01\"}}
                 retention: {{keep: 3 years, action: Drop, maxPerPass: 2}}
                 adoptExisting: {adopt}"
            ),
        )
    };
    // now - 3 years = 2023-11-22: 2018..2022 end before it; 2023 ends 2024-01-01, after it.
    let passes: [&[i32]; 4] = [&[2018, 2019], &[2020, 2021], &[2022], &[]];
    let mut gone: Vec<i32> = Vec::new();
    for (i, years) in passes.iter().enumerate() {
        let policy = retire(false);
        let doc = cli::plan_json(&db.url, &policy, now).await;
        let p = plan_for(&doc, "public.ledger");
        let planned: Vec<(String, String)> = p["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["kind"].as_str().unwrap().into(),
                    a["partition"].as_str().unwrap().into(),
                )
            })
            .collect();
        let expected: Vec<(String, String)> = years
            .iter()
            .map(|y| ("drop".to_string(), format!("ledger_p{y}0101")))
            .collect();
        assert_eq!(planned, expected, "pass {}: {doc:#}", i + 1);
        assert!(
            p["findings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["reason"] == "ForeignPartitions"),
            "pass {}: the 2015 partition pgpart did not make should be reported: {doc:#}",
            i + 1
        );
        let run = cli::apply(&db.url, &policy, now).await;
        run.ok(&format!("retention pass {}", i + 1));
        gone.extend(years.iter());
        for y in 2018..=2028 {
            let t = format!("public.ledger_p{y}0101");
            assert_eq!(
                cli::exists(c, &t).await,
                !gone.contains(&y),
                "after pass {}: {t}",
                i + 1
            );
        }
        assert!(
            cli::exists(c, "public.ledger_manual_2015").await,
            "pass {}: foreign partition dropped",
            i + 1
        );
    }
    let mut expected = vec![("2015-01-01".to_string(), "2016-01-01".to_string())];
    expected.extend(year_bounds(2023, 2028));
    assert_eq!(cli::range_bounds(c, "public.ledger").await, expected);
    assert_eq!(
        cli::count(c, "public.ledger").await,
        1 + 6,
        "the 2015 row and 2023..2028 rows remain"
    );

    // adoptExisting: the hand-made 2015 partition matches the grid and is retired too.
    let adopt = retire(true);
    let run = cli::apply(&db.url, &adopt, now).await;
    applied(&run, "retention with adoptExisting");
    assert!(
        !cli::exists(c, "public.ledger_manual_2015").await,
        "adopted old partition should be dropped"
    );
    assert_eq!(
        cli::range_bounds(c, "public.ledger").await,
        year_bounds(2023, 2028)
    );
    assert_idempotent(&db, &adopt, now).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 4. six monthly tables with BRIN, retention Detach

async fn six_monthly_tables_retention_detach(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    let tables: Vec<String> = (1..=6).map(|i| format!("metrics_{i}")).collect();
    for t in &tables {
        sql(
            c,
            &format!(
                "CREATE TABLE public.{t} (id bigint NOT NULL, at timestamptz NOT NULL, v double precision)
                     PARTITION BY RANGE (at);
                 CREATE INDEX {t}_at_brin ON public.{t} USING brin (at);"
            ),
        )
        .await;
    }
    let docs = |retention: &str| {
        policy_docs(
            &tables
                .iter()
                .map(|t| {
                    policy_doc(
                        t,
                        &format!(
                            "table: public.{t}
                             range: {{interval: 1 month, premake: 2, startFrom: \"2024-01-01\"}}
                             {retention}"
                        ),
                    )
                })
                .collect::<Vec<_>>(),
        )
    };
    let grow = docs("");
    applied(
        &cli::apply(&db.url, &grow, "2024-06-15T00:00:00Z").await,
        "apply at 2024-06-15",
    );
    for t in &tables {
        assert_eq!(
            cli::range_bounds(c, &format!("public.{t}")).await,
            month_bounds_utc(2024, 1, 8),
            "{t}"
        );
        sql(
            c,
            &format!(
                "INSERT INTO public.{t}
                 SELECT g, timestamptz '2024-01-01 00:00:00+00' + (g % 8) * interval '1 month' + interval '1 hour', g
                   FROM generate_series(1, 800) g;"
            ),
        )
        .await;
    }

    // At 2026-08-15, keep 24 months → cutoff 2024-08-15: Jan..Jul 2024 end before it.
    let retire = docs("retention: {keep: 24 months, action: Detach, maxPerPass: 50}");
    let now = "2026-08-15T00:00:00Z";
    applied(
        &cli::apply(&db.url, &retire, now).await,
        "apply with retention",
    );
    for t in &tables {
        let parent = format!("public.{t}");
        let bounds = cli::range_bounds(c, &parent).await;
        assert_eq!(
            bounds,
            month_bounds_utc(2024, 8, 27),
            "{t}: 2024-08 .. 2026-10 (premake 2)"
        );
        for m in 1..=7 {
            let name = format!("{t}_p2024{m:02}01");
            let q = format!("public.{name}");
            assert!(
                cli::exists(c, &q).await,
                "{q} should still exist as a table"
            );
            let is_partition: bool = c
                .query_one(
                    "SELECT relispartition FROM pg_class WHERE oid = $1::text::regclass",
                    &[&q],
                )
                .await
                .unwrap()
                .get(0);
            assert!(!is_partition, "{q} should be detached");
            assert_eq!(
                one_i64(
                    c,
                    &format!("SELECT count(*) FROM pg_inherits WHERE inhrelid = '{q}'::regclass")
                )
                .await,
                0,
                "{q} still in pg_inherits (pending detach?)"
            );
            assert_eq!(cli::count(c, &q).await, 100, "{q} rows");
            assert_eq!(
                cli::indexes_using(c, &q, "brin").await.len(),
                1,
                "{q} keeps its BRIN index"
            );
        }
        assert_eq!(
            cli::count(c, &parent).await,
            100,
            "{t}: only August 2024 is left attached with rows"
        );
        assert_eq!(
            cli::indexes_using(c, &format!("public.{t}_p20260101"), "brin")
                .await
                .len(),
            1
        );
    }
    assert_idempotent(&db, &retire, now).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 5. MoveToSchema

async fn retention_move_to_schema(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(c, "CREATE TABLE public.audit_log (at timestamptz NOT NULL, msg text) PARTITION BY RANGE (at);").await;
    let spec = |retention: &str| {
        policy_doc(
            "audit",
            &format!(
                "table: public.audit_log
                 range: {{interval: 1 month, premake: 1, startFrom: \"2025-01-01\"}}
                 defaultPartition: {{create: true}}
                 {retention}"
            ),
        )
    };
    applied(
        &cli::apply(&db.url, &spec(""), "2025-03-10T00:00:00Z").await,
        "apply at 2025-03-10",
    );
    assert_eq!(
        cli::range_bounds(c, "public.audit_log").await,
        month_bounds_utc(2025, 1, 4)
    );
    sql(
        c,
        "INSERT INTO public.audit_log
         SELECT timestamptz '2025-01-01 00:00:00+00' + (g % 4) * interval '1 month' + interval '5 minutes', 'm' || g
           FROM generate_series(1, 40) g;",
    )
    .await;
    let retire = spec("retention: {keep: 12 months, action: MoveToSchema, schema: archive}");
    let now = "2026-03-10T00:00:00Z";
    applied(
        &cli::apply(&db.url, &retire, now).await,
        "apply with MoveToSchema",
    );
    for name in ["audit_log_p20250101", "audit_log_p20250201"] {
        assert!(
            !cli::exists(c, &format!("public.{name}")).await,
            "public.{name} should have moved"
        );
        let q = format!("archive.{name}");
        assert!(cli::exists(c, &q).await, "{q} should exist");
        assert_eq!(cli::count(c, &q).await, 10, "{q} rows");
        let is_partition: bool = c
            .query_one(
                "SELECT relispartition FROM pg_class WHERE oid = $1::text::regclass",
                &[&q],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!is_partition, "{q} should not be a partition");
    }
    let parts = cli::partitions(c, "public.audit_log").await;
    assert!(parts.iter().all(|p| p.schema == "public"), "{parts:#?}");
    let bounds = cli::range_bounds(c, "public.audit_log").await;
    assert_eq!(
        bounds.first().unwrap().0,
        "2025-03-01 00:00:00+00",
        "March 2025 ends after the cutoff and stays"
    );
    assert_eq!(bounds.last().unwrap().1, "2026-05-01 00:00:00+00");
    assert_contiguous(&bounds, "audit_log");
    assert_eq!(
        cli::count(c, "public.audit_log").await,
        20,
        "March and April 2025 rows stay"
    );
    assert_idempotent(&db, &retire, now).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 6. django-style templates

async fn django_weekly_template(server: &Server) {
    let db = TestDb::create(server).await;
    sql(
        &db.client,
        "CREATE TABLE public.visits (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let policy = policy_doc(
        "visits",
        "table: public.visits
         range: {interval: 1 week, premake: 2}
         naming: {template: \"{table}_{YYYY}_week_{WW}\"}",
    );
    let now = "2025-02-19T12:00:00Z"; // a Wednesday
    applied(&cli::apply(&db.url, &policy, now).await, "apply");
    let parts = cli::partitions(&db.client, "public.visits").await;
    assert_eq!(
        parts.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        [
            "visits_2025_week_07",
            "visits_2025_week_08",
            "visits_2025_week_09"
        ]
    );
    assert_eq!(
        cli::range_bounds(&db.client, "public.visits").await,
        pairs(&[
            ("2025-02-17 00:00:00+00", "2025-02-24 00:00:00+00"),
            ("2025-02-24 00:00:00+00", "2025-03-03 00:00:00+00"),
            ("2025-03-03 00:00:00+00", "2025-03-10 00:00:00+00"),
        ])
    );
    for p in &parts {
        assert_eq!(
            ts(p.from.as_deref().unwrap()).format("%A").to_string(),
            "Monday",
            "{p:?}"
        );
    }
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

async fn django_weekly_template_across_year_end(server: &Server) {
    let db = TestDb::create(server).await;
    sql(
        &db.client,
        "CREATE TABLE public.visits (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let policy = policy_doc(
        "visits",
        "table: public.visits
         range: {interval: 1 week, premake: 2}
         naming: {template: \"{table}_{YYYY}_week_{WW}\"}",
    );
    let now = "2025-01-01T12:00:00Z"; // a Wednesday; its week began Monday 2024-12-30
    applied(&cli::apply(&db.url, &policy, now).await, "apply");
    // strftime %W, as django's "%Y_week_%W": Monday 2024-12-30 is week 53 of 2024.
    assert_eq!(
        cli::partition_names(&db.client, "public.visits").await,
        [
            "visits_2024_week_53",
            "visits_2025_week_01",
            "visits_2025_week_02"
        ]
    );
    assert_eq!(
        cli::range_bounds(&db.client, "public.visits").await,
        pairs(&[
            ("2024-12-30 00:00:00+00", "2025-01-06 00:00:00+00"),
            ("2025-01-06 00:00:00+00", "2025-01-13 00:00:00+00"),
            ("2025-01-13 00:00:00+00", "2025-01-20 00:00:00+00"),
        ])
    );
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

async fn django_monthly_template(server: &Server) {
    let db = TestDb::create(server).await;
    sql(
        &db.client,
        "CREATE TABLE public.orders (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let policy = policy_doc(
        "orders",
        "table: public.orders
         range: {interval: 1 month, premake: 1, startFrom: \"2025-01-01\"}
         naming: {template: \"{table}_{YYYY}_{MON}\"}",
    );
    let now = "2025-03-10T00:00:00Z";
    applied(&cli::apply(&db.url, &policy, now).await, "apply");
    assert_eq!(
        cli::partition_names(&db.client, "public.orders").await,
        [
            "orders_2025_jan",
            "orders_2025_feb",
            "orders_2025_mar",
            "orders_2025_apr"
        ]
    );
    assert_eq!(
        cli::range_bounds(&db.client, "public.orders").await,
        month_bounds_utc(2025, 1, 4)
    );
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 7. integer keys

async fn integer_key_premake_from_max(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.items (id bigint NOT NULL, payload text) PARTITION BY RANGE (id);",
    )
    .await;
    let policy = policy_doc(
        "items",
        "table: public.items\nrange: {interval: \"1000000\", premake: 3}",
    );
    let now = "2026-11-22T10:00:00Z";
    applied(
        &cli::apply(&db.url, &policy, now).await,
        "apply on the empty table",
    );
    let m = 1_000_000i64;
    let int_bounds = |n: i64| {
        (0..n)
            .map(|i| ((i * m).to_string(), ((i + 1) * m).to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cli::range_bounds(c, "public.items").await,
        int_bounds(4),
        "empty table: max treated as 0"
    );
    sql(
        c,
        "INSERT INTO public.items SELECT g, 'p' || g FROM generate_series(1, 2500000, 997) g;
         INSERT INTO public.items VALUES (2500000, 'max');",
    )
    .await;
    let run = cli::apply(&db.url, &policy, now).await;
    applied(&run, "apply with max(id) = 2,500,000");
    let names = cli::partition_names(c, "public.items").await;
    assert_eq!(
        names,
        [
            "items_p0",
            "items_p1000000",
            "items_p2000000",
            "items_p3000000",
            "items_p4000000",
            "items_p5000000"
        ]
    );
    assert_eq!(
        cli::range_bounds(c, "public.items").await,
        int_bounds(6),
        "covering through 6,000,000"
    );
    let doc = cli::plan_json(&db.url, &policy, now).await;
    assert_eq!(
        plan_for(&doc, "public.items")["summary"]["coveredUntil"],
        "6000000",
        "{doc:#}"
    );
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

async fn integer_key_overflow_does_not_crash(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.tiny (k smallint NOT NULL) PARTITION BY RANGE (k);
         CREATE TABLE public.tiny_big_step (k smallint NOT NULL) PARTITION BY RANGE (k);
         CREATE TABLE public.huge (k bigint NOT NULL) PARTITION BY RANGE (k);
         CREATE TABLE public.huge_default PARTITION OF public.huge DEFAULT;
         INSERT INTO public.huge VALUES (9223372036854775000), (9223372036854775807);",
    )
    .await;
    let policy = policy_docs(&[
        policy_doc(
            "tiny",
            "table: public.tiny\nrange: {interval: \"10000\", premake: 5}",
        ),
        policy_doc(
            "tiny-big-step",
            "table: public.tiny_big_step\nrange: {interval: \"100000\", premake: 3}",
        ),
        policy_doc(
            "huge",
            "table: public.huge\nrange: {interval: \"1000000000000000000\", premake: 3}",
        ),
    ]);
    let now = "2026-11-22T10:00:00Z";
    let plan = cli::plan(&db.url, &policy, now).await;
    assert!(!plan.panicked(), "plan panicked:\n{}", plan.both());
    let run = cli::apply(&db.url, &policy, now).await;
    assert!(!run.panicked(), "apply panicked:\n{}", run.both());
    eprintln!(
        "PostgreSQL {}: overflow apply exited {}:\n{}",
        server.major,
        run.code,
        run.both()
    );
    assert!(
        run.code == 0 || run.code == 1,
        "exit code {}:\n{}",
        run.code,
        run.both()
    );
    // smallint: only whole slots inside the type's range; premake is cut at 32767.
    let tiny = cli::range_bounds(c, "public.tiny").await;
    assert_eq!(
        tiny,
        pairs(&[("0", "10000"), ("10000", "20000"), ("20000", "30000")]),
        "smallint slots"
    );
    for (_, to) in &tiny {
        assert!(to.parse::<i64>().unwrap() <= 32768);
    }
    assert!(
        cli::range_bounds(c, "public.tiny_big_step")
            .await
            .is_empty()
    );
    assert_eq!(
        cli::count(c, "public.huge").await,
        2,
        "rows of the bigint table"
    );
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 8. list and hash

async fn list_and_hash_sets(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.customers (id bigint NOT NULL, region text NOT NULL) PARTITION BY LIST (region);
         CREATE TABLE public.sessions (id uuid NOT NULL, started_at timestamptz) PARTITION BY HASH (id);",
    )
    .await;
    let policy = policy_docs(&[
        policy_doc(
            "customers",
            "table: public.customers
             list:
               partitions:
                 - {name: eu, values: [de, fr]}
                 - {name: us, values: [us]}
                 - {name: apac, values: [jp, au]}
             defaultPartition: {create: true}",
        ),
        policy_doc("sessions", "table: public.sessions\nhash: {modulus: 4}"),
    ]);
    let now = "2026-11-22T10:00:00Z";
    applied(&cli::apply(&db.url, &policy, now).await, "apply");
    let list: Vec<(String, String, bool)> = cli::partitions(c, "public.customers")
        .await
        .into_iter()
        .map(|p| (p.name, p.bound, p.managed))
        .collect();
    let mut list_sorted = list.clone();
    list_sorted.sort();
    assert_eq!(
        list_sorted
            .iter()
            .map(|(n, b, _)| (n.as_str(), b.as_str()))
            .collect::<Vec<_>>(),
        [
            ("customers_apac", "FOR VALUES IN ('jp', 'au')"),
            ("customers_default", "DEFAULT"),
            ("customers_eu", "FOR VALUES IN ('de', 'fr')"),
            ("customers_us", "FOR VALUES IN ('us')"),
        ]
    );
    for (n, _, managed) in &list {
        if n != "customers_default" {
            assert!(managed, "{n} should be marked as pgpart's");
        }
    }
    let hash: Vec<(String, String)> = cli::partitions(c, "public.sessions")
        .await
        .into_iter()
        .map(|p| (p.name, p.bound))
        .collect();
    let expected: Vec<(String, String)> = (0..4)
        .map(|r| {
            (
                format!("sessions_p{r}"),
                format!("FOR VALUES WITH (modulus 4, remainder {r})"),
            )
        })
        .collect();
    assert_eq!(hash, expected);
    sql(
        c,
        "INSERT INTO public.customers SELECT g, (ARRAY['de','fr','us','jp','au','br'])[1 + g % 6] FROM generate_series(1, 600) g;
         INSERT INTO public.sessions SELECT gen_random_uuid(), now() FROM generate_series(1, 1000);",
    )
    .await;
    assert_eq!(cli::count(c, "public.customers_eu").await, 200);
    assert_eq!(
        cli::count(c, "public.customers_default").await,
        100,
        "br goes to the default"
    );
    let empty_hash = one_i64(
        c,
        "SELECT count(*) FROM (SELECT tableoid FROM public.sessions GROUP BY tableoid) s",
    )
    .await;
    assert_eq!(
        empty_hash, 4,
        "1000 random uuids should reach all four hash partitions"
    );
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

// ---------------------------------------------------------------------------------------
// 9. time zones

async fn tz_case(
    server: &Server,
    key_type: &str,
    spec_range: &str,
    now: &str,
    expected: &[(&str, &str)],
    names: &[&str],
) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        &format!("CREATE TABLE public.tz (at {key_type} NOT NULL) PARTITION BY RANGE (at);"),
    )
    .await;
    let policy = policy_doc("tz", &format!("table: public.tz\nrange: {spec_range}"));
    applied(&cli::apply(&db.url, &policy, now).await, "apply");
    let bounds = cli::range_bounds(c, "public.tz").await;
    assert_eq!(bounds, pairs(expected), "bounds under TimeZone UTC");
    assert_contiguous(&bounds, "tz");
    if !names.is_empty() {
        assert_eq!(cli::partition_names(c, "public.tz").await, names);
    }
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

async fn time_zone_daily_spring_forward(server: &Server) {
    // 2026-03-27T23:30Z is 2026-03-28 00:30 in Berlin; 2026-03-29 has 23 hours there.
    tz_case(
        server,
        "timestamptz",
        "{interval: 1 day, premake: 3, timeZone: Europe/Berlin}",
        "2026-03-27T23:30:00Z",
        &[
            ("2026-03-27 23:00:00+00", "2026-03-28 23:00:00+00"),
            ("2026-03-28 23:00:00+00", "2026-03-29 22:00:00+00"),
            ("2026-03-29 22:00:00+00", "2026-03-30 22:00:00+00"),
            ("2026-03-30 22:00:00+00", "2026-03-31 22:00:00+00"),
        ],
        &[
            "tz_p20260328",
            "tz_p20260329",
            "tz_p20260330",
            "tz_p20260331",
        ],
    )
    .await;
    // And a row at local 00:30 on the 29th lands in the 29th (checked on a fresh table).
    let db = TestDb::create(server).await;
    sql(
        &db.client,
        "CREATE TABLE public.tz (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let policy = policy_doc(
        "tz",
        "table: public.tz\nrange: {interval: 1 day, premake: 3, timeZone: Europe/Berlin}",
    );
    applied(
        &cli::apply(&db.url, &policy, "2026-03-27T23:30:00Z").await,
        "apply",
    );
    sql(
        &db.client,
        "INSERT INTO public.tz VALUES ('2026-03-29 00:30:00+01'), ('2026-03-29 23:30:00+02')",
    )
    .await;
    assert_eq!(
        home_of(&db.client, "public.tz", "at", "'2026-03-29 00:30:00+01'").await,
        "tz_p20260329"
    );
    assert_eq!(
        home_of(&db.client, "public.tz", "at", "'2026-03-29 23:30:00+02'").await,
        "tz_p20260329"
    );
    db.drop_db().await;
}

async fn time_zone_daily_fall_back(server: &Server) {
    // 2026-10-25 has 25 hours in Berlin.
    tz_case(
        server,
        "timestamptz",
        "{interval: 1 day, premake: 2, timeZone: Europe/Berlin}",
        "2026-10-24T12:00:00Z",
        &[
            ("2026-10-23 22:00:00+00", "2026-10-24 22:00:00+00"),
            ("2026-10-24 22:00:00+00", "2026-10-25 23:00:00+00"),
            ("2026-10-25 23:00:00+00", "2026-10-26 23:00:00+00"),
        ],
        &["tz_p20261024", "tz_p20261025", "tz_p20261026"],
    )
    .await;
}

async fn time_zone_naive_timestamp_key(server: &Server) {
    // timestamp without time zone: bounds are naive local midnights; "now" is read in the zone.
    tz_case(
        server,
        "timestamp without time zone",
        "{interval: 1 day, premake: 3, timeZone: Europe/Berlin}",
        "2026-03-27T23:30:00Z",
        &[
            ("2026-03-28 00:00:00", "2026-03-29 00:00:00"),
            ("2026-03-29 00:00:00", "2026-03-30 00:00:00"),
            ("2026-03-30 00:00:00", "2026-03-31 00:00:00"),
            ("2026-03-31 00:00:00", "2026-04-01 00:00:00"),
        ],
        &[
            "tz_p20260328",
            "tz_p20260329",
            "tz_p20260330",
            "tz_p20260331",
        ],
    )
    .await;
}

async fn time_zone_monthly_berlin(server: &Server) {
    tz_case(
        server,
        "timestamptz",
        "{interval: 1 month, premake: 6, timeZone: Europe/Berlin}",
        "2026-11-22T10:00:00Z",
        &[
            ("2026-10-31 23:00:00+00", "2026-11-30 23:00:00+00"),
            ("2026-11-30 23:00:00+00", "2026-12-31 23:00:00+00"),
            ("2026-12-31 23:00:00+00", "2027-01-31 23:00:00+00"),
            ("2027-01-31 23:00:00+00", "2027-02-28 23:00:00+00"),
            ("2027-02-28 23:00:00+00", "2027-03-31 22:00:00+00"),
            ("2027-03-31 22:00:00+00", "2027-04-30 22:00:00+00"),
            ("2027-04-30 22:00:00+00", "2027-05-31 22:00:00+00"),
        ],
        &[
            "tz_p20261101",
            "tz_p20261201",
            "tz_p20270101",
            "tz_p20270201",
            "tz_p20270301",
            "tz_p20270401",
            "tz_p20270501",
        ],
    )
    .await;
}

async fn time_zone_fixed_offset(server: &Server) {
    // +05:30: 2026-11-22T20:00Z is 2026-11-23 01:30 local.
    tz_case(
        server,
        "timestamptz",
        "{interval: 1 day, premake: 1, timeZone: \"+05:30\"}",
        "2026-11-22T20:00:00Z",
        &[
            ("2026-11-22 18:30:00+00", "2026-11-23 18:30:00+00"),
            ("2026-11-23 18:30:00+00", "2026-11-24 18:30:00+00"),
        ],
        &["tz_p20261123", "tz_p20261124"],
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// 10. hourly

async fn hourly_premake_24(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.ticks (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);",
    )
    .await;
    let policy = policy_doc(
        "ticks",
        "table: public.ticks\nrange: {interval: 1 hour, premake: 24}",
    );
    let now = "2026-11-22T10:17:00Z";
    applied(&cli::apply(&db.url, &policy, now).await, "apply");
    let start = ts("2026-11-22 10:00:00");
    let expected: Vec<(String, String)> = (0..25)
        .map(|h| {
            let a = start + Duration::hours(h);
            let b = a + Duration::hours(1);
            (
                a.format("%Y-%m-%d %H:%M:%S+00").to_string(),
                b.format("%Y-%m-%d %H:%M:%S+00").to_string(),
            )
        })
        .collect();
    assert_eq!(cli::range_bounds(c, "public.ticks").await, expected);
    let names = cli::partition_names(c, "public.ticks").await;
    assert_eq!(
        names.first().map(String::as_str),
        Some("ticks_p20261122_1000")
    );
    assert_eq!(
        names.last().map(String::as_str),
        Some("ticks_p20261123_1000")
    );
    assert_eq!(names.len(), 25);
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

/// Hourly in Berlin: whatever the slots are called, they must cover every instant from the
/// first bound to the last without gap or overlap, and have distinct names.
async fn hourly_dst_case(server: &Server, now: &str, first_from: &str, min_last_to: &str) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.ticks (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let policy = policy_doc(
        "ticks",
        "table: public.ticks\nrange: {interval: 1 hour, premake: 3, timeZone: Europe/Berlin}",
    );
    let run = cli::apply(&db.url, &policy, now).await;
    applied(&run, "apply");
    let bounds = cli::range_bounds(c, "public.ticks").await;
    assert_contiguous(&bounds, "hourly across DST");
    assert_eq!(
        bounds.first().map(|b| b.0.as_str()),
        Some(first_from),
        "{bounds:#?}"
    );
    let last_to = bounds.last().unwrap().1.clone();
    assert!(
        ts(&last_to) >= ts(min_last_to),
        "coverage ends at {last_to}, expected at least {min_last_to}: {bounds:#?}"
    );
    for (a, b) in &bounds {
        assert!(ts(a) < ts(b), "empty slot {a}..{b}");
    }
    let names = cli::partition_names(c, "public.ticks").await;
    let mut distinct = names.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), names.len(), "{names:?}");
    // Every 15 minutes from the first bound to the last has a home (no default here).
    sql(
        c,
        &format!(
            "INSERT INTO public.ticks SELECT generate_series(timestamptz '{}', timestamptz '{last_to}' - interval '1 microsecond', interval '15 minutes')",
            bounds[0].0
        ),
    )
    .await;
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

async fn hourly_across_dst_spring_forward(server: &Server) {
    // 2026-03-29T00:30Z = 01:30 CET; at 02:00 local the clock jumps to 03:00 (01:00Z).
    hourly_dst_case(
        server,
        "2026-03-29T00:30:00Z",
        "2026-03-29 00:00:00+00",
        "2026-03-29 03:00:00+00",
    )
    .await;
}

async fn hourly_across_dst_fall_back(server: &Server) {
    // 2026-10-24T23:30Z = 01:30 CEST; 02:00..03:00 local happens twice (00:00Z and 01:00Z).
    hourly_dst_case(
        server,
        "2026-10-24T23:30:00Z",
        "2026-10-24 23:00:00+00",
        "2026-10-25 04:00:00+00",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// more: a stray ancient row, integer retention, quoting, off-grid partitions

/// One stray row at the epoch (a classic application bug) next to a three-day backlog:
/// Repair must still move the backlog, and must not try to fill every day since 1970.
async fn repair_with_an_epoch_row_in_default(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(c, BACKLOG_TABLE).await;
    applied(
        &cli::apply(&db.url, &backlog_policy("Report"), "2026-11-16T08:00:00Z").await,
        "initial apply at D-3",
    );
    sql(
        c,
        "INSERT INTO public.events (at, kind, payload)
         SELECT timestamptz '2026-11-20 00:00:00+00' + g * interval '864 seconds', 'late', 'r' || g
           FROM generate_series(0, 299) g;
         INSERT INTO public.events (at, kind, payload) VALUES ('1970-01-01 00:00:00+00', 'epoch', 'bug');",
    )
    .await;
    let digest = rows_digest(c, "public.events").await;
    let total = cli::count(c, "public.events").await;
    let run = cli::apply(&db.url, &backlog_policy("Repair"), "2026-11-22T12:00:00Z").await;
    assert!(!run.panicked(), "{}", run.both());
    run.ok("Repair with one epoch row in the default");
    assert_eq!(cli::count(c, "public.events").await, total, "rows lost");
    assert_eq!(
        rows_digest(c, "public.events").await,
        digest,
        "rows changed"
    );
    let names = cli::partition_names(c, "public.events").await;
    // The backlog days become one partition, the epoch row its own day's.
    for (n, rows) in [
        (REPAIRED, 300),
        ("events_p19700101", 1),
        ("events_default", 0),
    ] {
        assert!(names.iter().any(|x| x == n), "{n} missing: {names:?}");
        assert_eq!(cli::count(c, &format!("public.{n}")).await, rows, "{n}");
    }
    assert!(
        names.len() < 30,
        "one stray row should not make pgpart create {} partitions",
        names.len()
    );
    db.drop_db().await;
}

/// A person's own `COMMENT ON` a partition pgpart made (the first version's only mark)
/// leaves it pgpart's: retention still retires it, and nothing is reported as foreign.
async fn a_comment_of_ones_own_does_not_disown_a_partition(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.ev (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let now = "2026-11-22T10:00:00Z";
    let make = policy_doc(
        "ev",
        "table: public.ev\nrange: {interval: 1 month, premake: 1, startFrom: \"2026-01-01\"}",
    );
    applied(&cli::apply(&db.url, &make, now).await, "make Jan .. Dec");
    sql(
        c,
        "COMMENT ON TABLE public.ev_p20260201 IS 'February: checked by ops'",
    )
    .await;
    let retire = policy_doc(
        "ev",
        "table: public.ev\nrange: {interval: 1 month, premake: 1}\nretention: {keep: 6 months, action: Drop, maxPerPass: 20}",
    );
    let run = cli::apply(&db.url, &retire, now).await;
    applied(&run, "retention");
    assert!(!run.stdout.contains("ForeignPartitions"), "{}", run.both());
    // now − 6 months = 2026-05-22: January .. April go, February with them.
    assert!(
        !cli::exists(c, "public.ev_p20260201").await,
        "{}",
        run.both()
    );
    assert_eq!(
        cli::partition_names(c, "public.ev")
            .await
            .first()
            .map(String::as_str),
        Some("ev_p20260501")
    );
    db.drop_db().await;
}

/// Integer keys: the cutoff is max(id) − keep. One stray id far ahead, in the DEFAULT
/// partition, must not move "now": premake and the cutoff come from the keys the partitions
/// hold (the first version took max(id) with the default's rows and retired every live
/// partition).
async fn integer_key_retention_drop(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.items (id bigint NOT NULL) PARTITION BY RANGE (id);",
    )
    .await;
    let grow = policy_doc(
        "items",
        "table: public.items\nrange: {interval: \"1000000\", premake: 5, startFrom: \"0\"}\ndefaultPartition: {create: true}",
    );
    let now = "2026-11-22T10:00:00Z";
    applied(
        &cli::apply(&db.url, &grow, now).await,
        "apply on the empty table",
    );
    sql(
        c,
        "INSERT INTO public.items SELECT g FROM generate_series(0, 4500000, 1000) g;
         INSERT INTO public.items VALUES (999999999999);",
    )
    .await;
    // max(id) in the partitions 4,500,000 (the stray id is in the default), keep 2,000,000
    // → cutoff 2,500,000: [0,1M) and [1M,2M) go.
    let retire = policy_doc(
        "items",
        "table: public.items
         range: {interval: \"1000000\", premake: 5, startFrom: \"0\"}
         defaultPartition: {create: true}
         retention: {keep: \"2000000\", action: Drop}",
    );
    applied(
        &cli::apply(&db.url, &retire, now).await,
        "apply with retention",
    );
    let m = 1_000_000i64;
    let expected: Vec<(String, String)> = (2..10)
        .map(|i| ((i * m).to_string(), ((i + 1) * m).to_string()))
        .collect();
    assert_eq!(cli::range_bounds(c, "public.items").await, expected);
    assert!(!cli::exists(c, "public.items_p0").await);
    assert!(!cli::exists(c, "public.items_p1000000").await);
    assert_eq!(
        cli::count(c, "public.items").await,
        2502,
        "ids 2,000,000 .. 4,500,000 remain, and the stray one in the default"
    );
    assert_idempotent(&db, &retire, now).await;
    db.drop_db().await;
}

/// Mixed case, spaces and quotes in schema, table and key names, through create, repair
/// and retention.
async fn quoted_identifiers_repair_and_retention(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        r#"CREATE SCHEMA "Billing";
           CREATE TABLE "Billing"."Heart ""Beats""" (
               id bigint GENERATED ALWAYS AS IDENTITY,
               "Seen At" timestamptz NOT NULL,
               note text
           ) PARTITION BY RANGE ("Seen At");"#,
    )
    .await;
    let parent = r#""Billing"."Heart ""Beats""""#;
    let spec = |extra: &str| {
        policy_doc(
            "quoted",
            &format!(
                r#"table: '"Billing"."Heart ""Beats"""'
                   range: {{interval: 1 month, premake: 2, startFrom: "2026-09-01"}}
                   defaultPartition: {{create: true, onRows: Repair}}
                   {extra}"#
            ),
        )
    };
    applied(
        &cli::apply(&db.url, &spec(""), "2026-11-22T10:00:00Z").await,
        "first apply",
    );
    let names = cli::partition_names(c, parent).await;
    assert_eq!(
        names,
        [
            r#"Heart "Beats"_p20260901"#,
            r#"Heart "Beats"_p20261001"#,
            r#"Heart "Beats"_p20261101"#,
            r#"Heart "Beats"_p20261201"#,
            r#"Heart "Beats"_p20270101"#,
            r#"Heart "Beats"_default"#,
        ]
    );
    assert!(
        cli::partitions(c, parent)
            .await
            .iter()
            .all(|p| p.schema == "Billing")
    );
    // Rows beyond premake fall into the default; Repair moves them.
    sql(
        c,
        &format!(
            r#"INSERT INTO {parent} ("Seen At", note)
               SELECT timestamptz '2027-02-01 00:00:00+00' + g * interval '1 hour', 'n' || g FROM generate_series(0, 99) g;
               INSERT INTO {parent} ("Seen At", note) VALUES ('2026-10-10 00:00:00+00', 'october');"#
        ),
    )
    .await;
    let digest = rows_digest(c, parent).await;
    applied(
        &cli::apply(&db.url, &spec(""), "2026-11-22T10:00:00Z").await,
        "repair",
    );
    assert_eq!(rows_digest(c, parent).await, digest);
    assert_eq!(
        cli::count(c, r#""Billing"."Heart ""Beats""_default""#).await,
        0
    );
    assert_eq!(
        cli::count(c, r#""Billing"."Heart ""Beats""_p20270201""#).await,
        100
    );
    // Retention: at 2026-12-15 keeping 1 month, September and October move to "Old Stuff".
    let retire = spec("retention: {keep: 1 month, action: MoveToSchema, schema: \"Old Stuff\"}");
    applied(
        &cli::apply(&db.url, &retire, "2026-12-15T00:00:00Z").await,
        "retention",
    );
    assert!(cli::exists(c, r#""Old Stuff"."Heart ""Beats""_p20261001""#).await);
    assert_eq!(
        cli::count(c, r#""Old Stuff"."Heart ""Beats""_p20261001""#).await,
        1
    );
    assert!(cli::exists(c, r#""Old Stuff"."Heart ""Beats""_p20260901""#).await);
    let bounds = cli::range_bounds(c, parent).await;
    assert_eq!(bounds.first().unwrap().0, "2026-11-01 00:00:00+00");
    assert_contiguous(&bounds, "quoted");
    assert_idempotent(&db, &retire, "2026-12-15T00:00:00Z").await;
    db.drop_db().await;
}

/// A partition made by hand off the grid ([Nov 15, Dec 15)) is left alone, and the rest of
/// the slots it touches is bridged: no key from now to the end of premake goes without a
/// partition (the first version left [Dec 15, Jan 1) uncovered and exited 0).
async fn off_grid_foreign_partition_is_left_alone_and_bridged(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.ev (at timestamptz NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.ev_legacy PARTITION OF public.ev
             FOR VALUES FROM ('2026-11-15 00:00:00+00') TO ('2026-12-15 00:00:00+00');
         INSERT INTO public.ev VALUES ('2026-11-20 00:00:00+00');",
    )
    .await;
    let policy = policy_doc(
        "ev",
        "table: public.ev\nrange: {interval: 1 month, premake: 3}",
    );
    let now = "2026-11-22T10:00:00Z";
    let doc = cli::plan_json(&db.url, &policy, now).await;
    let p = plan_for(&doc, "public.ev");
    let reasons: Vec<&str> = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert!(
        !reasons.contains(&"Overlap") && !reasons.contains(&"Hole"),
        "{doc:#}"
    );
    let run = cli::apply(&db.url, &policy, now).await;
    run.ok("apply next to an off-grid partition");
    assert_eq!(
        cli::range_bounds(c, "public.ev").await,
        pairs(&[
            ("2026-11-01 00:00:00+00", "2026-11-15 00:00:00+00"),
            ("2026-11-15 00:00:00+00", "2026-12-15 00:00:00+00"),
            ("2026-12-15 00:00:00+00", "2027-01-01 00:00:00+00"),
            ("2027-01-01 00:00:00+00", "2027-02-01 00:00:00+00"),
            ("2027-02-01 00:00:00+00", "2027-03-01 00:00:00+00"),
        ])
    );
    let parts = cli::partitions(c, "public.ev").await;
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ev_bridge_202611010000",
            "ev_legacy",
            "ev_bridge_202612150000",
            "ev_p20270101",
            "ev_p20270201"
        ]
    );
    assert!(
        !parts[1].managed,
        "ev_legacy must not be marked as pgpart's"
    );
    assert!(parts[0].managed && parts[2].managed, "bridges are pgpart's");
    assert_eq!(cli::count(c, "public.ev_legacy").await, 1);
    sql(c, "INSERT INTO public.ev VALUES ('2026-12-20 00:00:00+00')").await;
    assert_idempotent(&db, &policy, now).await;
    db.drop_db().await;
}

/// Two stray rows in the default, one in 2019 and one in 2031 (typos happen): the months
/// from now through premake hold none of them, so they must be created as usual. (Report
/// mode leaves the two rows where they are and reports them.)
async fn stray_rows_in_default_do_not_block_premake(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.orders (at timestamptz NOT NULL, n int) PARTITION BY RANGE (at);
         CREATE TABLE public.orders_default PARTITION OF public.orders DEFAULT;
         INSERT INTO public.orders VALUES ('2019-05-05 00:00:00+00', 1), ('2031-01-01 00:00:00+00', 2);",
    )
    .await;
    let policy = policy_doc(
        "orders",
        "table: public.orders
         range: {interval: 1 month, premake: 3}
         defaultPartition: {create: true, onRows: Report}",
    );
    let now = "2026-11-22T10:00:00Z";
    let doc = cli::plan_json(&db.url, &policy, now).await;
    let p = plan_for(&doc, "public.orders");
    let blocked: Vec<&str> = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["reason"] == "BlockedByDefaultRows")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert!(
        blocked.is_empty(),
        "no slot from now through premake holds a default row, yet: {blocked:#?}"
    );
    let run = cli::apply(&db.url, &policy, now).await;
    run.ok("apply with two stray rows in the default");
    assert_eq!(
        cli::range_bounds(c, "public.orders").await,
        month_bounds_utc(2026, 11, 4)
    );
    assert_eq!(cli::count(c, "public.orders_default").await, 2);
    db.drop_db().await;
}

/// `apply --output json`: one document per table with what was done, and a hole left by
/// rows in the default (Report) is an error: exit 1, reason MissingPartition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_json_reports_each_table_and_a_hole_is_an_error() {
    let db = TestDb::create(&crate::support::pg::server(17)).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.a (at timestamptz NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.b (at timestamptz NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.b_default PARTITION OF public.b DEFAULT;
         INSERT INTO public.b VALUES ('2026-12-05 00:00:00+00');",
    )
    .await;
    let policies = policy_docs(&[
        policy_doc(
            "a",
            "table: public.a\nrange: {interval: 1 month, premake: 1}",
        ),
        policy_doc(
            "b",
            "table: public.b\nrange: {interval: 1 month, premake: 1}",
        ),
    ]);
    let file = cli::PolicyFile::new(&policies);
    let run = cli::pgpart(&[
        "apply",
        "--policy",
        file.path_str(),
        "--database-url",
        &db.url,
        "--now",
        "2026-11-22T10:00:00Z",
        "--output",
        "json",
    ])
    .await;
    run.expect_code(1, "December of b is blocked by a row in its default");
    let doc: serde_json::Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("apply --output json: {e}\n{}", run.both()));
    let a = plan_for(&doc, "public.a");
    let created: Vec<&str> = a["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["ok"] == true)
        .map(|x| x["partition"].as_str().unwrap())
        .collect();
    assert_eq!(created, ["a_p20261101", "a_p20261201"], "{doc:#}");
    assert_eq!(a["error"], serde_json::Value::Null, "{doc:#}");
    assert_eq!(
        a["summary"]["coveredUntil"], "2027-01-01T00:00:00Z",
        "{doc:#}"
    );
    let b = plan_for(&doc, "public.b");
    assert_eq!(b["error"]["reason"], "MissingPartition", "{doc:#}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("[2026-12-01T00:00:00Z, 2027-01-01T00:00:00Z)"),
        "{doc:#}"
    );
    assert_eq!(
        b["summary"]["holes"],
        serde_json::json!(["[2026-12-01T00:00:00Z, 2027-01-01T00:00:00Z)"]),
        "{doc:#}"
    );
    db.drop_db().await;
}

/// An earlier pgpart's repair, killed, left a guard CHECK on the default (it refuses rows
/// for the guarded days) and a standalone child holding rows no reader sees. `plan` and
/// `status` show both; `apply` removes the guard and puts the rows back.
async fn what_an_earlier_repair_left_is_shown_and_undone(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(c, BACKLOG_TABLE).await;
    let now = "2026-11-16T08:00:00Z";
    applied(
        &cli::apply(&db.url, &backlog_policy("Report"), now).await,
        "initial apply at D-3",
    );
    sql(
        c,
        "ALTER TABLE public.events_default ADD CONSTRAINT pgpart_default_guard
             CHECK (at < '2026-11-20 00:00:00+00' OR at >= '2026-11-23 00:00:00+00') NOT VALID;
         CREATE TABLE public.events_p20261124 (LIKE public.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED);
         ALTER TABLE public.events_p20261124 ADD CONSTRAINT pgpart_bound
             CHECK (at IS NOT NULL AND at >= '2026-11-24 00:00:00+00' AND at < '2026-11-25 00:00:00+00');
         COMMENT ON TABLE public.events_p20261124 IS 'pgpart: managed partition';
         INSERT INTO public.events_p20261124 (id, at, kind, payload)
           SELECT g, timestamptz '2026-11-24 00:00:00+00' + g * interval '1 minute', 'hidden', 'h' || g
             FROM generate_series(1, 500) g;",
    )
    .await;
    // The guard refuses a row PostgreSQL would otherwise take into the default.
    let refused = c
        .batch_execute("INSERT INTO public.events (at, kind, payload) VALUES ('2026-11-21 10:00:00+00', 'x', 'y')")
        .await;
    assert!(refused.is_err(), "the old guard should refuse the row");
    let before = cli::count(c, "public.events").await;

    let doc = cli::plan_json(&db.url, &backlog_policy("Repair"), now).await;
    let p = plan_for(&doc, "public.events");
    let reasons: Vec<&str> = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.contains(&"DefaultGuardLeft"), "{doc:#}");
    assert!(reasons.contains(&"HiddenRows"), "{doc:#}");
    let status = cli::pgpart(&["status", "--database-url", &db.url]).await;
    status.ok("status");
    assert!(
        status.stdout.contains("default guard")
            && status.stdout.contains("hidden rows: events_p20261124"),
        "status should show what was left:\n{}",
        status.both()
    );

    applied(
        &cli::apply(&db.url, &backlog_policy("Repair"), now).await,
        "apply undoes what was left",
    );
    assert_eq!(
        cli::count(c, "public.events").await,
        before + 500,
        "the hidden rows are back"
    );
    assert!(!cli::exists(c, "public.events_p20261124").await);
    assert_eq!(
        one_i64(
            c,
            "SELECT count(*) FROM public.events WHERE kind = 'hidden'"
        )
        .await,
        500
    );
    sql(
        c,
        "INSERT INTO public.events (at, kind, payload) VALUES ('2026-11-21 10:00:00+00', 'x', 'y')",
    )
    .await;
    let doc = cli::plan_json(&db.url, &backlog_policy("Repair"), now).await;
    let p = plan_for(&doc, "public.events");
    assert!(
        !p["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["reason"] == "DefaultGuardLeft" || f["reason"] == "HiddenRows"),
        "{doc:#}"
    );
    db.drop_db().await;
}

/// Another table's foreign key references the table: Repair is refused at plan time with
/// the reason, nothing is made, and the rows stay in the default.
async fn a_referenced_table_is_not_repaired(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.events (id bigint NOT NULL, at timestamptz NOT NULL, PRIMARY KEY (id, at))
             PARTITION BY RANGE (at);
         CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
         INSERT INTO public.events SELECT g, timestamptz '2026-11-20 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 100) g;
         CREATE TABLE public.notes (id bigint, at timestamptz, FOREIGN KEY (id, at) REFERENCES public.events);
         INSERT INTO public.notes SELECT id, at FROM public.events WHERE id <= 10;",
    )
    .await;
    let now = "2026-11-22T12:00:00Z";
    let doc = cli::plan_json(&db.url, &backlog_policy("Repair"), now).await;
    let p = plan_for(&doc, "public.events");
    let refused = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "RepairRefused")
        .unwrap_or_else(|| panic!("no RepairRefused: {doc:#}"));
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("public.notes"),
        "{refused:#}"
    );
    assert!(
        !p["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "repair"),
        "{doc:#}"
    );
    let names_before = cli::partition_names(c, "public.events").await;
    let _ = cli::apply(&db.url, &backlog_policy("Repair"), now).await;
    assert_eq!(cli::count(c, "public.events_default").await, 100);
    let names = cli::partition_names(c, "public.events").await;
    assert!(
        names
            .iter()
            .all(|n| names_before.contains(n) || !n.starts_with("events_repaired")),
        "{names:?}"
    );
    assert_eq!(cli::count(c, "public.notes").await, 10);
    db.drop_db().await;
}
