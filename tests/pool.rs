//! The controller's session pool against real PostgreSQL: a session comes back clean,
//! whatever the pass that used it left behind.

mod support;

use pgpart::db::connect::Target;
use pgpart::db::pool;
use pgpart::db::targets::Pools;
use support::pg::{TestDb, server};

#[tokio::test]
async fn a_session_returns_to_the_pool_without_the_locks_and_settings_it_held() {
    let db = TestDb::create(&server(17)).await;
    let target = Target::from_url(&db.url).expect("test URL");
    let pools = Pools::default();
    let pool = pools.get(1, &target, 1);
    let pid: i32 = {
        let c = pool::get(&pool).await.expect("a session");
        c.batch_execute("SELECT pg_advisory_lock(7, 7); SET lock_timeout = '1ms'")
            .await
            .unwrap();
        // Dropped while holding both, as a pass that returns early would.
        c.query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0)
    };
    let c = pool::get(&pool).await.expect("the session again");
    let row = c
        .query_one(
            "SELECT pg_backend_pid(),
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()),
                    current_setting('lock_timeout'), current_setting('TimeZone')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, i32>(0),
        pid,
        "the pool handed out the same session"
    );
    assert_eq!(
        row.get::<_, i64>(1),
        0,
        "the advisory lock went back with it"
    );
    assert_eq!(row.get::<_, String>(2), "0", "lock_timeout was left set");
    assert_eq!(
        row.get::<_, String>(3),
        "UTC",
        "the session setup pgpart relies on stays"
    );
    // Another session takes the lock at once.
    let free: bool = db
        .client
        .query_one("SELECT pg_try_advisory_lock(7, 7)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(free);
    drop(c);
    db.drop_db().await;
}

/// A plan goes stale when another run changed the partitions, even when their number is the
/// same (one made, one retired): the engine plans again under the table's lock.
#[tokio::test]
async fn a_plan_is_stale_once_the_partitions_change_at_the_same_count() {
    use pgpart::db::observe::{observe_and_plan, replan_if_stale};
    use pgpart::policy::{PartitionPolicy, validate};
    let db = TestDb::create(&server(15)).await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE public.events_a PARTITION OF public.events
               FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00');",
        )
        .await
        .unwrap();
    let doc: PartitionPolicy = serde_yaml_ng::from_str(&support::cli::policy_doc(
        "events",
        "table: public.events\nrange: {interval: 1 month, premake: 1}",
    ))
    .unwrap();
    let policy = validate(&doc.spec).unwrap();
    let now = support::clock::parse("2026-11-22T10:00:00Z");
    let client = Target::from_url(&db.url).unwrap().connect().await.unwrap();
    let (mut plan, _) = observe_and_plan(&client, &policy, now).await.unwrap();
    assert!(
        !replan_if_stale(&client, &mut plan, &policy, now)
            .await
            .unwrap()
    );
    let before = plan.actions.clone();
    // Another run: the same number of partitions, other ones.
    db.client
        .batch_execute(
            "ALTER TABLE public.events DETACH PARTITION public.events_a;
             CREATE TABLE public.events_b PARTITION OF public.events
               FOR VALUES FROM ('2026-12-01 00:00:00+00') TO ('2027-01-01 00:00:00+00');",
        )
        .await
        .unwrap();
    assert!(
        replan_if_stale(&client, &mut plan, &policy, now)
            .await
            .unwrap()
    );
    assert_ne!(
        plan.actions, before,
        "the plan was made again from what is there now"
    );
    db.drop_db().await;
}
