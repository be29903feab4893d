//! What a pass reads of a big DEFAULT partition: a quiet pass (nothing to do) reads a
//! bounded sample, never the whole default; a pass that acts on the default (creates
//! beside it, repairs it) reads it exactly. Real PostgreSQL, every supported major.

mod support;

use std::time::Duration;

use support::cli::{self, plan_for, policy_doc};
use support::pg::{Server, TestDb, sql};
use tokio_postgres::Client;

on_every_major!(
    a_quiet_pass_reads_a_bounded_sample_of_a_big_default,
    a_big_default_is_repaired_from_an_exact_read,
);

/// pgpart counts this many default rows exactly (db::observe::EXACT_DEFAULT_ROWS).
const EXACT: i64 = 10_000;
const NOW: &str = "2026-11-22T12:00:00Z";
/// Three times what a pass counts exactly.
const BIG: i64 = 3 * EXACT;

fn policy(on_rows: &str) -> String {
    policy_doc(
        "big",
        &format!(
            "table: public.big
             range: {{interval: 1 day, premake: 3}}
             defaultPartition: {{create: true, onRows: {on_rows}}}"
        ),
    )
}

/// A daily table whose partitions are made, then `rows` rows of `day` in its default.
async fn big_default(db: &TestDb, day: &str, rows: i64) {
    sql(
        &db.client,
        "CREATE TABLE public.big (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at)",
    )
    .await;
    cli::apply(&db.url, &policy("Report"), NOW)
        .await
        .ok("first apply");
    db.client
        .execute(
            "INSERT INTO public.big SELECT g, $1::text::timestamptz + g * interval '1 second' FROM generate_series(1, $2::int8) g",
            &[&format!("{day} 00:00:00+00"), &rows],
        )
        .await
        .unwrap();
    assert_eq!(cli::count(&db.client, "public.big_default").await, rows);
}

/// Rows read by sequential scans of `rel` so far, once the statistics show more than
/// `above` (a finished session's counts arrive a moment after it ends, on PostgreSQL 14
/// through the statistics collector).
async fn seq_tup_read_above(c: &Client, rel: &str, above: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let read: i64 = c
            .query_one(
                "SELECT coalesce(seq_tup_read, 0) FROM pg_stat_user_tables WHERE relid = $1::text::regclass",
                &[&rel],
            )
            .await
            .unwrap()
            .get(0);
        if read > above {
            return read;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rel}: statistics show {read} rows read, waited for more than {above}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // the statistics have no notification
    }
}

/// The plan's RowsInDefault finding.
fn rows_in_default(plan: &serde_json::Value) -> &serde_json::Value {
    plan["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["reason"] == "RowsInDefault")
        .unwrap_or_else(|| panic!("no RowsInDefault finding: {plan:#}"))
}

async fn a_quiet_pass_reads_a_bounded_sample_of_a_big_default(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    // Rows of 1990: no partition will ever take them, and nothing is to do about them.
    big_default(&db, "1990-06-01", BIG).await;

    // Until now only big_default's own count read rows of the default (the first apply
    // found it empty): wait for those, then for what the quiet pass reads.
    let before = seq_tup_read_above(c, "public.big_default", BIG - 1).await;
    let run = cli::apply(&db.url, &policy("Report"), NOW).await;
    run.ok("quiet apply");
    assert_eq!(run.action_lines(), Vec::<String>::new(), "{}", run.both());
    let read = seq_tup_read_above(c, "public.big_default", before).await - before;
    assert!(
        read <= EXACT + 1,
        "a quiet pass read {read} rows of a {BIG}-row default; at most {} expected",
        EXACT + 1
    );

    // What it says: rows in the default, counted as an estimate past the exact count.
    let doc = cli::plan_json(&db.url, &policy("Report"), NOW).await;
    let p = plan_for(&doc, "public.big");
    let rows = p["summary"]["defaultPartitionRows"].as_i64().unwrap();
    assert!(rows > EXACT, "{doc:#}");
    let finding = rows_in_default(p);
    assert!(
        finding["message"].as_str().unwrap().starts_with("about "),
        "{finding:#}"
    );

    // With a btree index on the key the span is two index probes, and said.
    sql(
        c,
        "CREATE INDEX big_at ON public.big (at); ANALYZE public.big",
    )
    .await;
    let doc = cli::plan_json(&db.url, &policy("Report"), NOW).await;
    let p = plan_for(&doc, "public.big");
    let finding = rows_in_default(p);
    let message = finding["message"].as_str().unwrap();
    assert!(message.contains("from 1990-06-01"), "{finding:#}");
    // ANALYZE gave the estimate: the count is the table's, not the probe's limit.
    assert_eq!(p["summary"]["defaultPartitionRows"], BIG, "{doc:#}");
    assert_eq!(cli::count(c, "public.big").await, BIG);
    db.drop_db().await;
}

async fn a_big_default_is_repaired_from_an_exact_read(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    // Rows of a past day no partition covers: with onRows Repair that day's partition is
    // the pass's only action, which only an exact read of the default can find.
    big_default(&db, "2026-10-01", BIG / 2).await;
    sql(
        c,
        "INSERT INTO public.big SELECT g, timestamptz '2026-10-03 00:00:00+00' + g * interval '1 second' FROM generate_series(1, 15000) g",
    )
    .await;
    let total = cli::count(c, "public.big").await;
    let run = cli::apply(&db.url, &policy("Repair"), NOW).await;
    run.ok("repair apply");
    assert_eq!(
        cli::count(c, "public.big_default").await,
        0,
        "{}",
        run.both()
    );
    assert_eq!(cli::count(c, "public.big").await, total);
    // The default itself became the partition of its rows' days.
    let names = cli::partition_names(c, "public.big").await;
    assert!(
        names.iter().any(|n| n.starts_with("big_repaired_20261001")),
        "{names:?}"
    );
    db.drop_db().await;
}
