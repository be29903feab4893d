//! Keys that hold time in another type (`spec.range.keyEncoding`): a UUIDv7 and integers
//! counting seconds, milliseconds or microseconds since 1970, through the CLI on every
//! PostgreSQL major. The promises are the timestamp ones: partitions made ahead in time with
//! their bounds encoded into the key's type, rows (made by the server: `uuidv7()` on 18, the
//! same layout in SQL on older majors) landing where their time says, a default's rows
//! repaired into their month, retention by age, plan and apply showing times; and a key that
//! cannot hold the encoding is refused, naming the field.
//!
//! Each case hands pgpart a fixed `--now`; nothing depends on today's date.

mod support;

use chrono::{DateTime, Months, NaiveDate, Utc};
use support::cli::{self, action_count, plan_for, policy_doc};
use support::pg::{Server, TestDb, create_uuidv7_at, sql};
use tokio_postgres::Client;

on_every_major!(
    a_uuidv7_key_is_partitioned_by_the_time_it_holds,
    epoch_keys_are_partitioned_by_the_time_they_hold,
    a_key_that_cannot_hold_the_encoding_is_refused_naming_the_field,
);

/// Midnight UTC of the first of the month `n` months after (y, m).
fn month(y: i32, m: u32, n: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, m, 1)
        .unwrap()
        .checked_add_months(Months::new(n))
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// A UUIDv7 bound as PostgreSQL prints it: the instant's milliseconds, then zeros.
fn uuid_bound(t: DateTime<Utc>) -> String {
    let h = format!("{:012x}", t.timestamp_millis());
    format!("{}-{}-0000-0000-000000000000", &h[..8], &h[8..])
}

/// Where the row with `note` lives.
async fn home(c: &Client, parent: &str, note: &str) -> String {
    c.query_one(
        &format!("SELECT tableoid::regclass::text FROM {parent} WHERE note = $1"),
        &[&note],
    )
    .await
    .unwrap_or_else(|e| panic!("row {note:?} of {parent}: {e}"))
    .get(0)
}

async fn count(c: &Client, rel: &str) -> i64 {
    cli::count(c, rel).await
}

/// Names and (from, to) bounds of the range partitions of `parent`, in order.
async fn ranges(c: &Client, parent: &str) -> Vec<(String, String, String)> {
    cli::partitions(c, parent)
        .await
        .into_iter()
        .filter_map(|p| Some((p.name, p.from?, p.to?)))
        .collect()
}

async fn a_uuidv7_key_is_partitioned_by_the_time_it_holds(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    create_uuidv7_at(c).await;
    sql(
        c,
        "CREATE TABLE public.orders (id uuid NOT NULL, note text)
             PARTITION BY RANGE (id);",
    )
    .await;
    let policy = policy_doc(
        "orders",
        "table: public.orders
         range: {interval: 1 month, premake: 3, keyEncoding: uuidv7}
         retention: {keep: 3 months, action: Drop}
         defaultPartition: {create: true, onRows: Repair}",
    );
    let now = "2026-11-22T10:00:00Z";

    // plan speaks in time, and its SQL in the key's own values.
    let text = cli::plan(&db.url, &policy, now).await;
    text.ok("plan");
    assert!(
        text.stdout.contains("2026-11-01T00:00:00Z")
            && text.stdout.contains("2027-03-01T00:00:00Z"),
        "plan should show the bounds as times:\n{}",
        text.both()
    );
    assert!(
        text.stdout.contains(&uuid_bound(month(2026, 11, 0))),
        "plan's SQL should hold the encoded bound:\n{}",
        text.both()
    );
    cli::apply(&db.url, &policy, now).await.ok("first apply");
    let want: Vec<(String, String, String)> = (0..4)
        .map(|i| {
            let from = month(2026, 11, i);
            (
                format!("orders_p{}", from.format("%Y%m%d")),
                uuid_bound(from),
                uuid_bound(month(2026, 11, i + 1)),
            )
        })
        .collect();
    assert_eq!(ranges(c, "public.orders").await, want);
    assert!(cli::exists(c, "public.orders_default").await);
    let doc = cli::plan_json(&db.url, &policy, now).await;
    assert_eq!(
        plan_for(&doc, "public.orders")["summary"]["coveredUntil"],
        "2027-03-01T00:00:00Z",
        "{doc:#}"
    );

    // Rows made by the server land in the month their time says, to the millisecond.
    sql(
        c,
        "INSERT INTO public.orders (id, note) VALUES
             (uuidv7_at('2026-11-01T00:00:00Z'), 'first instant'),
             (uuidv7_at('2026-12-15T12:00:00Z'), 'mid december'),
             (uuidv7_at('2027-02-28T23:59:59.998Z'), 'last of february'),
             (uuidv7_at('2026-10-05T08:00:00Z'), 'october, early'),
             (gen_random_uuid(), 'a v4, no time');",
    )
    .await;
    for (note, part) in [
        ("first instant", "orders_p20261101"),
        ("mid december", "orders_p20261201"),
        ("last of february", "orders_p20270201"),
        ("october, early", "orders_default"),
        ("a v4, no time", "orders_default"),
    ] {
        assert_eq!(home(c, "public.orders", note).await, part, "{note}");
    }

    // The default's October row gets its month: repaired, not copied, nothing lost. The v4
    // holds no time: it stays in the default, reported.
    let rows = count(c, "public.orders").await;
    let run = cli::apply(&db.url, &policy, now).await;
    run.ok("repair");
    assert!(
        run.stdout.contains("orders_p20261001"),
        "apply should name the repaired partition:\n{}",
        run.both()
    );
    assert_eq!(
        home(c, "public.orders", "october, early").await,
        "orders_p20261001"
    );
    assert_eq!(count(c, "public.orders").await, rows);
    assert_eq!(
        home(c, "public.orders", "a v4, no time").await,
        "orders_default"
    );
    assert_eq!(count(c, "ONLY public.orders_default").await, 1);
    let doc = cli::plan_json(&db.url, &policy, now).await;
    let findings = plan_for(&doc, "public.orders")["findings"].to_string();
    assert!(findings.contains("RowsInDefault"), "{doc:#}");
    let again = cli::apply(&db.url, &policy, now).await;
    again.ok("apply again");
    assert!(again.action_lines().is_empty(), "{}", again.both());

    // Months later: partitions whose whole range ends before now - 3 months go, the window
    // moves ahead.
    let later = "2027-03-10T00:00:00Z";
    cli::apply(&db.url, &policy, later)
        .await
        .ok("apply in March");
    let names: Vec<String> = ranges(c, "public.orders")
        .await
        .into_iter()
        .map(|(n, ..)| n)
        .collect();
    let want: Vec<String> = (0..7)
        .map(|i| format!("orders_p{}", month(2026, 12, i).format("%Y%m%d")))
        .collect();
    assert_eq!(names, want);
    for gone in ["first instant", "october, early"] {
        let left: i64 = c
            .query_one(
                "SELECT count(*) FROM public.orders WHERE note = $1",
                &[&gone],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "{gone} was in a retired month");
    }
    assert_eq!(
        home(c, "public.orders", "mid december").await,
        "orders_p20261201"
    );
    assert_eq!(
        action_count(&cli::plan_json(&db.url, &policy, later).await),
        0
    );
    db.drop_db().await;
}

async fn epoch_keys_are_partitioned_by_the_time_they_hold(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    // (table, key type, encoding, units per second)
    let tables = [
        ("ev_s", "integer", "epochSeconds", 1i64),
        ("ev_ms", "bigint", "epochMillis", 1_000),
        ("ev_us", "bigint", "epochMicros", 1_000_000),
    ];
    let mut docs = Vec::new();
    for (table, key_type, encoding, _) in tables {
        sql(
            c,
            &format!("CREATE TABLE public.{table} (at {key_type} NOT NULL, note text) PARTITION BY RANGE (at);"),
        )
        .await;
        docs.push(policy_doc(
            table,
            &format!(
                "table: public.{table}
                 range: {{interval: 1 day, premake: 2, timeZone: Europe/Berlin, keyEncoding: {encoding}}}
                 retention: {{keep: 2 days, action: Detach}}
                 defaultPartition: {{create: true, onRows: Repair}}"
            ),
        ));
    }
    let policy = cli::policy_docs(&docs);
    // Berlin is at +01:00 in November: local midnight is 23:00 UTC the day before.
    let now = "2026-11-22T10:00:00Z";
    cli::apply(&db.url, &policy, now).await.ok("first apply");
    let midnight = |d: u32| {
        NaiveDate::from_ymd_opt(2026, 11, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            - chrono::Duration::hours(1)
    };
    for (table, _, _, per_second) in tables {
        let want: Vec<(String, String, String)> = (22..25)
            .map(|d| {
                (
                    format!("{table}_p202611{d}"),
                    (midnight(d).timestamp() * per_second).to_string(),
                    (midnight(d + 1).timestamp() * per_second).to_string(),
                )
            })
            .collect();
        assert_eq!(ranges(c, &format!("public.{table}")).await, want, "{table}");
        // Rows made by the server from times: the last microsecond before Berlin's midnight
        // belongs to the day before it.
        sql(
            c,
            &format!(
                "INSERT INTO public.{table} (at, note)
                 SELECT floor(extract(epoch FROM t) * {per_second}), note FROM (VALUES
                     ('2026-11-23T22:59:59.999999Z'::timestamptz, 'end of the 23rd'),
                     ('2026-11-23T23:00:00Z', 'start of the 24th'),
                     ('2026-11-21T12:00:00Z', 'the day before')) v(t, note);"
            ),
        )
        .await;
        let parent = format!("public.{table}");
        assert_eq!(
            home(c, &parent, "end of the 23rd").await,
            format!("{table}_p20261123")
        );
        assert_eq!(
            home(c, &parent, "start of the 24th").await,
            format!("{table}_p20261124")
        );
        assert_eq!(
            home(c, &parent, "the day before").await,
            format!("{table}_default")
        );
    }
    let doc = cli::plan_json(&db.url, &policy, now).await;
    for (table, ..) in tables {
        let p = plan_for(&doc, &format!("public.{table}"));
        assert_eq!(
            p["summary"]["coveredUntil"], "2026-11-24T23:00:00Z",
            "{p:#}"
        );
        assert_eq!(p["actions"][0]["kind"], "repair", "{p:#}");
    }

    // The default's row is repaired into its day; two days on, the oldest days are detached.
    cli::apply(&db.url, &policy, now).await.ok("repair");
    let later = "2026-11-25T10:00:00Z";
    cli::apply(&db.url, &policy, later).await.ok("two days on");
    for (table, ..) in tables {
        let names: Vec<String> = ranges(c, &format!("public.{table}"))
            .await
            .into_iter()
            .map(|(n, ..)| n)
            .collect();
        let want: Vec<String> = (23..28).map(|d| format!("{table}_p202611{d}")).collect();
        assert_eq!(names, want, "{table}");
        for detached in ["21", "22"] {
            let rel = format!("public.{table}_p202611{detached}");
            assert!(cli::exists(c, &rel).await, "{rel} is detached, not dropped");
        }
        assert_eq!(
            count(c, &format!("public.{table}_p20261121")).await,
            1,
            "the repaired row went with its day"
        );
    }
    assert_eq!(
        action_count(&cli::plan_json(&db.url, &policy, later).await),
        0
    );
    db.drop_db().await;
}

async fn a_key_that_cannot_hold_the_encoding_is_refused_naming_the_field(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    sql(
        c,
        "CREATE TABLE public.u (id uuid NOT NULL) PARTITION BY RANGE (id);
         CREATE TABLE public.i (at integer NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.b (at bigint NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE public.s (at smallint NOT NULL) PARTITION BY RANGE (at);",
    )
    .await;
    let now = "2026-11-22T10:00:00Z";
    let cases = [
        (
            "table: public.u\nrange: {interval: 1 day}",
            "has a uuid key: set spec.range.keyEncoding: uuidv7",
        ),
        (
            "table: public.i\nrange: {interval: 1 day, keyEncoding: epochMillis}",
            "is integer, which can't hold epochMillis",
        ),
        (
            "table: public.b\nrange: {interval: 1 day, keyEncoding: uuidv7}",
            "is bigint, which can't hold uuidv7",
        ),
        (
            "table: public.s\nrange: {interval: 1 day, keyEncoding: epochSeconds}",
            "is smallint, which can't hold epochSeconds",
        ),
        (
            "table: public.u\nrange: {interval: 1 day, keyEncoding: epochSeconds}",
            "is uuid, which can't hold epochSeconds",
        ),
    ];
    let before = cli::snapshot(c, true).await;
    for (spec, needle) in cases {
        let run = cli::apply(&db.url, &policy_doc("p", spec), now).await;
        assert_ne!(run.code, 0, "{spec}: {}", run.both());
        assert!(
            run.both().contains("spec.range.keyEncoding") && run.both().contains(needle),
            "{spec}: the message should name spec.range.keyEncoding and say {needle:?}:\n{}",
            run.both()
        );
    }
    // An encoded key holds time: an integer interval is bad input (exit 2).
    let run = cli::apply(
        &db.url,
        &policy_doc(
            "p",
            "table: public.b\nrange: {interval: \"1000\", keyEncoding: epochSeconds}",
        ),
        now,
    )
    .await;
    run.expect_code(2, "keyEncoding with an integer interval");
    assert!(
        run.both().contains("spec.range.keyEncoding"),
        "{}",
        run.both()
    );
    cli::assert_same_snapshot(&before, &cli::snapshot(c, true).await, "refused policies");
    db.drop_db().await;
}
