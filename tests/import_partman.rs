//! `pgpart import-partman` against a real pg_partman 4.7 (PostgreSQL 15 from Debian):
//! the printed policies are valid, keep pg_partman's names (and its epoch keys), and adopt
//! its partitions.

mod support;

use support::cli::{PolicyFile, pgpart, plan_for, plan_json};
use support::pg::{TestDb, server};

#[tokio::test]
async fn imported_policies_adopt_what_pg_partman_made() {
    let db = TestDb::create(&server(15)).await;
    // pg_partman's sessions run in the database's zone; the imported policies must say so.
    db.client
        .batch_execute(&format!(
            "ALTER DATABASE {} SET TimeZone = 'Europe/Berlin'",
            support::pg::quote_ident(&db.name)
        ))
        .await
        .unwrap();
    let client = support::pg::connect(&db.url).await;
    client
        .batch_execute(
            "CREATE SCHEMA partman; CREATE EXTENSION pg_partman SCHEMA partman;
             CREATE TABLE public.hb (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
             SELECT partman.create_parent('public.hb', 'ts', 'native', 'monthly', p_premake := 6);
             UPDATE partman.part_config SET retention = '24 months', retention_keep_table = false WHERE parent_table = 'public.hb';
             CREATE TABLE public.ev (id bigint NOT NULL) PARTITION BY RANGE (id);
             SELECT partman.create_parent('public.ev', 'id', 'native', '1000000', p_premake := 3);
             CREATE TABLE public.clicks (at bigint NOT NULL) PARTITION BY RANGE (at);
             SELECT partman.create_parent('public.clicks', 'at', 'native', 'daily', p_premake := 3, p_epoch := 'milliseconds');",
        )
        .await
        .expect("pg_partman set-up");

    let run = pgpart(&[
        "import-partman",
        "--database-url",
        &db.url,
        "--secret",
        "billing-db",
    ])
    .await;
    run.ok("import-partman");
    let yaml = &run.stdout;
    assert!(
        yaml.contains("table: public.hb") && yaml.contains("table: public.ev"),
        "{yaml}"
    );
    assert!(
        yaml.contains("interval: 1 month")
            && yaml.contains("keep: 24 months")
            && yaml.contains("action: Drop"),
        "{yaml}"
    );
    assert!(
        yaml.contains("template: '{table}_p{YYYY}_{MM}'"),
        "pg_partman's names are kept: {yaml}"
    );
    assert!(yaml.contains("name: billing-db"), "{yaml}");
    assert!(
        yaml.contains("table: public.clicks") && yaml.contains("keyEncoding: epochMillis"),
        "pg_partman's epoch milliseconds are a keyEncoding: {yaml}"
    );
    assert!(
        yaml.contains("timeZone: Europe/Berlin"),
        "the database's zone, not the UTC pgpart sets for itself: {yaml}"
    );

    // The output is a valid policy file; pg_partman's partitions satisfy the grid, so
    // nothing is created over them — they are adopted — and the default is kept.
    // pg_partman made its partitions on the database server's clock (it cannot be handed
    // another), so pgpart plans at that clock's instant too.
    let file = PolicyFile::new(yaml);
    let now: String = db
        .client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let doc = plan_json(
        &db.url,
        &std::fs::read_to_string(file.path_str()).unwrap(),
        &now,
    )
    .await;
    for table in ["public.hb", "public.ev", "public.clicks"] {
        let p = plan_for(&doc, table);
        let kinds: Vec<&str> = p["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"adopt"), "{table}: {p:#}");
        assert!(
            !kinds.contains(&"create_default"),
            "{table}: pg_partman's default is reused: {p:#}"
        );
    }
    db.drop_db().await;
}

#[tokio::test]
async fn without_pg_partman_it_says_so() {
    let db = TestDb::create(&server(17)).await;
    let run = pgpart(&["import-partman", "--database-url", &db.url]).await;
    run.expect_code(2, "import-partman without pg_partman");
    assert!(
        run.stderr.contains("pg_partman is not installed"),
        "{}",
        run.both()
    );
    db.drop_db().await;
}
