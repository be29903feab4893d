//! A Drop or MoveToSchema retirement interrupted between its detach and its drop/move is
//! finished by the next pass, never left behind as a stray table.

mod support;

use support::cli::apply;
use support::pg::{TestDb, servers};

const NOW: &str = "2026-11-22T00:00:00Z";

fn policy(action: &str) -> String {
    format!(
        "apiVersion: pgpart.io/v1alpha1
kind: PartitionPolicy
metadata: {{name: y}}
spec:
  table: public.yearly
  range: {{interval: 1 year, premake: 1, startFrom: \"2020-01-01\"}}
  retention: {{keep: 3 years, {action}}}
"
    )
}

async fn exists(db: &TestDb, qualified: &str) -> bool {
    db.client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&qualified])
        .await
        .unwrap()
        .get(0)
}

async fn is_partition(db: &TestDb, qualified: &str) -> bool {
    db.client
        .query_one(
            "SELECT coalesce((SELECT relispartition FROM pg_class WHERE oid = to_regclass($1)), false)",
            &[&qualified],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn interrupted_drop_is_finished_next_pass() {
    for server in servers() {
        let db = TestDb::create(&server).await;
        db.client
            .batch_execute("CREATE TABLE public.yearly (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
            .await
            .unwrap();
        // First pass as of 2023: 2020..2024 exist, nothing old enough to retire yet.
        apply(&db.url, &policy("action: Drop"), "2023-06-01T00:00:00Z")
            .await
            .ok("first apply");
        assert!(exists(&db, "public.yearly_p20200101").await);
        // A view on 2020's partition makes its DROP fail after the detach.
        db.client
            .batch_execute("CREATE VIEW public.keep_2020 AS SELECT * FROM public.yearly_p20200101")
            .await
            .unwrap();
        let run = apply(&db.url, &policy("action: Drop, maxPerPass: 1"), NOW).await;
        run.expect_code(1, "the drop fails on the dependent view");
        assert!(
            exists(&db, "public.yearly_p20200101").await,
            "{}",
            run.both()
        );
        assert!(
            !is_partition(&db, "public.yearly_p20200101").await,
            "it was detached: {}",
            run.both()
        );

        // The obstacle goes; the next pass finishes the retirement instead of forgetting it.
        db.client
            .batch_execute("DROP VIEW public.keep_2020")
            .await
            .unwrap();
        let run = apply(&db.url, &policy("action: Drop, maxPerPass: 1"), NOW).await;
        run.ok("second apply");
        assert!(
            run.stdout.contains("finish retiring yearly_p20200101"),
            "{}",
            run.both()
        );
        assert!(
            !exists(&db, "public.yearly_p20200101").await,
            "{}",
            run.both()
        );
        db.drop_db().await;
    }
}

#[tokio::test]
async fn interrupted_move_is_finished_next_pass() {
    for server in servers() {
        let db = TestDb::create(&server).await;
        db.client
            .batch_execute(
                "CREATE TABLE public.yearly (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
                 CREATE SCHEMA archive;",
            )
            .await
            .unwrap();
        let move_to = "action: MoveToSchema, schema: archive, maxPerPass: 1";
        apply(&db.url, &policy(move_to), "2023-06-01T00:00:00Z")
            .await
            .ok("first apply");
        db.client
            .batch_execute("INSERT INTO public.yearly VALUES (1, '2020-06-01'); CREATE TABLE archive.yearly_p20200101 (x int)")
            .await
            .unwrap();
        let run = apply(&db.url, &policy(move_to), NOW).await;
        run.expect_code(1, "a table of that name already sits in archive");
        assert!(
            !is_partition(&db, "public.yearly_p20200101").await,
            "{}",
            run.both()
        );

        db.client
            .batch_execute("DROP TABLE archive.yearly_p20200101")
            .await
            .unwrap();
        apply(&db.url, &policy(move_to), NOW)
            .await
            .ok("second apply");
        assert!(!exists(&db, "public.yearly_p20200101").await);
        let rows: i64 = db
            .client
            .query_one("SELECT count(*) FROM archive.yearly_p20200101", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 1, "the row moved with its partition");
        db.drop_db().await;
    }
}
