//! A Drop or MoveToSchema retirement interrupted between its detach and its drop/move is
//! finished by the next pass, never left behind as a stray table.

mod support;

use chrono::{Datelike, Months};
use support::cli::apply;
use support::clock;
use support::pg::{TestDb, servers};

/// The instants of the two passes (three years ago, and now), and the year whose partition
/// both tests retire: six years back, where `startFrom` puts the first partition.
struct Scene {
    then: String,
    now: String,
    oldest: String,
    start: i32,
}

fn scene() -> Scene {
    let now = clock::now();
    let start = now.year() - 6;
    Scene {
        then: clock::rfc3339(now - Months::new(36)),
        now: clock::rfc3339(now),
        oldest: format!("yearly_p{start}0101"),
        start,
    }
}

/// Yearly from `startFrom` six years back, keep 3 years: at `then` nothing is old enough,
/// at `now` the three oldest are (maxPerPass 1 takes the oldest first).
fn policy(sc: &Scene, action: &str) -> String {
    let start = sc.start;
    format!(
        "apiVersion: pgpart.io/v1alpha1
kind: PartitionPolicy
metadata: {{name: y}}
spec:
  table: public.yearly
  range: {{interval: 1 year, premake: 1, startFrom: \"{start}-01-01\"}}
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
        let sc = scene();
        let oldest = format!("public.{}", sc.oldest);
        // First pass three years ago: nothing old enough to retire yet.
        apply(&db.url, &policy(&sc, "action: Drop"), &sc.then)
            .await
            .ok("first apply");
        assert!(exists(&db, &oldest).await);
        // A view on the oldest partition makes its DROP fail after the detach.
        db.client
            .batch_execute(&format!(
                "CREATE VIEW public.keep_oldest AS SELECT * FROM {oldest}"
            ))
            .await
            .unwrap();
        let run = apply(
            &db.url,
            &policy(&sc, "action: Drop, maxPerPass: 1"),
            &sc.now,
        )
        .await;
        run.expect_code(1, "the drop fails on the dependent view");
        assert!(exists(&db, &oldest).await, "{}", run.both());
        assert!(
            !is_partition(&db, &oldest).await,
            "it was detached: {}",
            run.both()
        );

        // The obstacle goes; the next pass finishes the retirement instead of forgetting it.
        db.client
            .batch_execute("DROP VIEW public.keep_oldest")
            .await
            .unwrap();
        let run = apply(
            &db.url,
            &policy(&sc, "action: Drop, maxPerPass: 1"),
            &sc.now,
        )
        .await;
        run.ok("second apply");
        assert!(
            run.stdout
                .contains(&format!("finish retiring {}", sc.oldest)),
            "{}",
            run.both()
        );
        assert!(!exists(&db, &oldest).await, "{}", run.both());
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
        let sc = scene();
        let (oldest, archived) = (
            format!("public.{}", sc.oldest),
            format!("archive.{}", sc.oldest),
        );
        let move_to = "action: MoveToSchema, schema: archive, maxPerPass: 1";
        apply(&db.url, &policy(&sc, move_to), &sc.then)
            .await
            .ok("first apply");
        db.client
            .batch_execute(&format!(
                "INSERT INTO public.yearly VALUES (1, '{}-06-01'); CREATE TABLE {archived} (x int)",
                sc.start
            ))
            .await
            .unwrap();
        let run = apply(&db.url, &policy(&sc, move_to), &sc.now).await;
        run.expect_code(1, "a table of that name already sits in archive");
        assert!(!is_partition(&db, &oldest).await, "{}", run.both());

        db.client
            .batch_execute(&format!("DROP TABLE {archived}"))
            .await
            .unwrap();
        apply(&db.url, &policy(&sc, move_to), &sc.now)
            .await
            .ok("second apply");
        assert!(!exists(&db, &oldest).await);
        let rows: i64 = db
            .client
            .query_one(&format!("SELECT count(*) FROM {archived}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(rows, 1, "the row moved with its partition");
        db.drop_db().await;
    }
}

async fn comment(db: &TestDb, qualified: &str) -> Option<String> {
    db.client
        .query_one(
            "SELECT obj_description(to_regclass($1), 'pg_class')",
            &[&qualified],
        )
        .await
        .unwrap()
        .get(0)
}

/// A Drop that failed after its detach leaves a retiring mark. Once the spec asks for
/// Detach instead, that mark is never acted on: the table stays (the first version dropped
/// it on the next pass but one). And the stuck partition holds up no other retirement.
#[tokio::test]
async fn a_stale_retiring_mark_never_drops_and_blocks_nothing() {
    for server in servers() {
        let db = TestDb::create(&server).await;
        db.client
            .batch_execute("CREATE TABLE public.yearly (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts)")
            .await
            .unwrap();
        let sc = scene();
        let oldest = format!("public.{}", sc.oldest);
        let (second, third) = (
            format!("public.yearly_p{}0101", sc.start + 1),
            format!("public.yearly_p{}0101", sc.start + 2),
        );
        apply(&db.url, &policy(&sc, "action: Drop"), &sc.then)
            .await
            .ok("first apply");
        db.client
            .batch_execute(&format!(
                "CREATE VIEW public.keep_oldest AS SELECT * FROM {oldest}"
            ))
            .await
            .unwrap();
        // Three years expire now; the oldest's drop fails on the view.
        let run = apply(
            &db.url,
            &policy(&sc, "action: Drop, maxPerPass: 10"),
            &sc.now,
        )
        .await;
        run.expect_code(1, "the drop of the oldest fails on the dependent view");
        assert!(
            exists(&db, &oldest).await && !is_partition(&db, &oldest).await,
            "{}",
            run.both()
        );
        assert!(
            !exists(&db, &second).await && !exists(&db, &third).await,
            "the other expired years are dropped all the same: {}",
            run.both()
        );

        // The reference goes and the spec now says Detach: the oldest is never dropped.
        db.client
            .batch_execute("DROP VIEW public.keep_oldest")
            .await
            .unwrap();
        for pass in ["first", "second"] {
            let run = apply(&db.url, &policy(&sc, "action: Detach"), &sc.now).await;
            run.ok(&format!("{pass} apply with Detach"));
            assert!(
                exists(&db, &oldest).await,
                "{pass} apply with Detach dropped {oldest} on a stale mark: {}",
                run.both()
            );
        }
        let c = comment(&db, &oldest).await.unwrap_or_default();
        assert!(c.starts_with("pgpart: detached from yearly"), "{c}");
        db.drop_db().await;
    }
}
