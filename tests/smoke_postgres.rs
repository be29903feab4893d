//! The test PostgreSQL servers are really there, are the majors they claim to be, and
//! `support::pg::TestDb` gives each test its own database.
//!
//! Needs PGPART_TEST_PG_MAJORS and a PGPART_TEST_PG<major>_URL for each (tests/support/pg.rs).

mod support;

use support::pg::{self, TestDb};

#[tokio::test]
async fn each_server_is_the_expected_major() {
    for server in pg::servers() {
        let client = server.admin_client().await;
        let version: String = client
            .query_one("select version()", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            version.starts_with(&format!("PostgreSQL {}.", server.major)),
            "{} should be PostgreSQL {}, is: {version}",
            server.admin_url,
            server.major
        );
        let num: String = client
            .query_one("show server_version_num", &[])
            .await
            .unwrap()
            .get(0);
        let num: u32 = num.parse().unwrap();
        assert_eq!(
            num / 10000,
            server.major,
            "server_version_num {num} at {}",
            server.admin_url
        );
    }
}

#[tokio::test]
async fn test_database_can_be_created_used_and_dropped() {
    for server in pg::servers() {
        let db = TestDb::create(&server).await;
        assert_ne!(db.name, "postgres");
        let current: String = db
            .client
            .query_one("select current_database()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(current, db.name);

        db.client
            .batch_execute(
                "create table events (id bigint not null, at date not null) partition by range (at);
                 create table events_2024 partition of events for values from ('2024-01-01') to ('2025-01-01');
                 create table events_2025 partition of events for values from ('2025-01-01') to ('2026-01-01');
                 insert into events values (1, '2024-03-01'), (2, '2025-03-01'), (3, '2025-12-31');",
            )
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL {}: {e}", server.major));
        let rows = db
            .client
            .query(
                "select tableoid::regclass::text, count(*) from events group by 1 order by 1",
                &[],
            )
            .await
            .unwrap();
        let per_partition: Vec<(String, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        assert_eq!(
            per_partition,
            vec![("events_2024".into(), 1), ("events_2025".into(), 2)]
        );

        // A second connection must not keep DROP DATABASE ... WITH (FORCE) from working.
        let _other = db.connect().await;
        let name = db.name.clone();
        db.drop_db().await;
        let admin = server.admin_client().await;
        let left = admin
            .query("select 1 from pg_database where datname = $1", &[&name])
            .await
            .unwrap();
        assert!(
            left.is_empty(),
            "database {name} still exists on PostgreSQL {}",
            server.major
        );
    }
}

#[tokio::test]
async fn test_databases_get_distinct_names() {
    let server = pg::server(17);
    let (a, b) = tokio::join!(TestDb::create(&server), TestDb::create(&server));
    assert_ne!(a.name, b.name);
    a.drop_db().await;
    b.drop_db().await;
}

#[tokio::test]
async fn pg_partman_is_installable_on_15() {
    let db = TestDb::create(&pg::server(15)).await;
    db.client
        .batch_execute("create schema partman; create extension pg_partman schema partman;")
        .await
        .unwrap_or_else(|e| panic!("pg_partman on PostgreSQL 15: {e}"));
    db.drop_db().await;
}

#[test]
fn with_database_replaces_only_the_path() {
    assert_eq!(
        pg::with_database("postgresql://postgres@127.0.0.1:5432/postgres", "t_1"),
        "postgresql://postgres@127.0.0.1:5432/t_1"
    );
    assert_eq!(
        pg::with_database(
            "postgresql://postgres@127.0.0.1:5432/postgres?sslmode=disable",
            "t_1"
        ),
        "postgresql://postgres@127.0.0.1:5432/t_1?sslmode=disable"
    );
    assert_eq!(
        pg::with_database("postgres://u@h:1", "t_1"),
        "postgres://u@h:1/t_1"
    );
}
