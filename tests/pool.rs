//! The controller's session pool against real PostgreSQL: a session comes back clean,
//! whatever the pass that used it left behind.

mod support;

use pgpart::db::connect::Target;
use pgpart::db::pool::{self, Pools};
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
