//! Bad input: every case exits 2 (from both `plan` and `apply`), names the field at fault,
//! and leaves the database exactly as it was (a catalog snapshot with OIDs is compared).
//! A valid policy for a real table rides along in the same file wherever the file can be
//! parsed at all, so a run that applied the good policies before giving up would show.
//!
//! Every case runs on PostgreSQL 15 and 17 (`<case>::pg15`, `<case>::pg17`).

mod support;

use support::cli::{self, policy_doc, policy_docs};
use support::clock;
use support::pg::{Server, TestDb};

/// 56 characters: with `_p20261122` appended it is 66 bytes, over PostgreSQL's 63.
const LONG_TABLE: &str = "heartbeats_of_licenses_from_every_region_and_data_center";

on_every_major!(
    unknown_table,
    table_not_partitioned,
    table_not_partitioned_message_does_not_claim_it_is_missing,
    range_policy_on_list_table,
    time_interval_on_integer_key,
    malformed_interval,
    bad_time_zone,
    bad_template_token,
    template_with_duplicate_names_for_daily,
    names_over_63_bytes_from_long_table,
    names_over_63_bytes_from_long_template,
    unknown_field_typo,
    unknown_field_names_its_location,
    file_not_yaml,
    file_yaml_but_not_a_policy,
    file_missing,
    two_policies_for_one_table,
    bad_now_flag,
    hourly_interval_on_date_key,
    retention_on_list_table,
    move_to_schema_without_schema,
    premake_zero,
    lock_timeout_not_a_duration,
    start_from_not_a_date,
    start_from_date_on_integer_key,
    max_per_pass_zero,
    hash_modulus_change,
    neither_range_list_nor_hash,
);

/// Tables every case can point at, each already in some state worth preserving.
async fn fixtures(db: &TestDb) {
    let month = clock::month_start(clock::now());
    let this_month = clock::month_partition_sql("public", "events", month);
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);
             CREATE INDEX events_at_brin ON public.events USING brin (at);
             {this_month}
             INSERT INTO public.events (at, payload) VALUES ('{month} 00:00:00+00', 'x');
             CREATE TABLE public.regions (id bigint NOT NULL, region text NOT NULL) PARTITION BY LIST (region);
             CREATE TABLE public.regions_eu PARTITION OF public.regions FOR VALUES IN ('de', 'fr');
             CREATE TABLE public.items (id bigint NOT NULL, name text) PARTITION BY RANGE (id);
             CREATE TABLE public.plain (id bigint NOT NULL, at timestamptz NOT NULL);
             CREATE TABLE public.daily (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE public.{LONG_TABLE} (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE public.days (d date NOT NULL) PARTITION BY RANGE (d);
             CREATE TABLE public.buckets (id bigint NOT NULL) PARTITION BY HASH (id);
             CREATE TABLE public.buckets_p0 PARTITION OF public.buckets FOR VALUES WITH (MODULUS 4, REMAINDER 0);"
        ))
        .await
        .expect("fixtures");
}

/// A valid policy that would create partitions for public.events if it were applied.
fn good_policy() -> String {
    policy_doc(
        "good-events",
        "table: public.events
         range: {interval: 1 month, premake: 3}
         defaultPartition: {create: true}",
    )
}

/// Runs `plan` and `apply` with `file_text` and checks: exit 2 from both, every needle in
/// stderr, the catalog unchanged. Returns apply's stderr.
async fn expect_bad_input(server: &Server, file_text: &str, needles: &[&str]) -> String {
    let db = TestDb::create(server).await;
    fixtures(&db).await;
    let before = cli::snapshot(&db.client, true).await;
    let file = cli::PolicyFile::new(file_text);
    let mut stderr = String::new();
    for cmd in ["plan", "apply"] {
        let run = cli::pgpart(&[
            cmd,
            "--policy",
            file.path_str(),
            "--database-url",
            &db.url,
            "--now",
            &clock::now_arg(),
        ])
        .await;
        assert!(
            !run.panicked(),
            "{cmd} panicked on PostgreSQL {}:\n{}",
            server.major,
            run.both()
        );
        run.expect_code(
            2,
            &format!("{cmd} with bad input on PostgreSQL {}", server.major),
        );
        for needle in needles {
            assert!(
                run.stderr.contains(needle),
                "{cmd}: the message should contain {needle:?} on PostgreSQL {}:\n{}",
                server.major,
                run.both()
            );
        }
        assert!(
            run.action_lines().is_empty(),
            "{cmd} printed actions although the input was bad:\n{}",
            run.both()
        );
        let after = cli::snapshot(&db.client, true).await;
        cli::assert_same_snapshot(
            &before,
            &after,
            &format!("{cmd} with bad input on PostgreSQL {}", server.major),
        );
        stderr = run.stderr;
    }
    assert_eq!(cli::count(&db.client, "public.events").await, 1);
    db.drop_db().await;
    stderr
}

fn with_good(bad: String) -> String {
    policy_docs(&[good_policy(), bad])
}

async fn unknown_table(server: &Server) {
    let bad = policy_doc("missing", "table: public.nope\nrange: {interval: 1 month}");
    expect_bad_input(server, &with_good(bad), &["public.nope", "spec.table"]).await;
}

async fn table_not_partitioned(server: &Server) {
    let bad = policy_doc("plain", "table: public.plain\nrange: {interval: 1 day}");
    expect_bad_input(server, &with_good(bad), &["public.plain", "spec.table"]).await;
}

/// public.plain exists; it is just not partitioned. Telling the user it "does not exist"
/// sends them looking for the wrong problem.
async fn table_not_partitioned_message_does_not_claim_it_is_missing(server: &Server) {
    let bad = policy_doc("plain", "table: public.plain\nrange: {interval: 1 day}");
    let stderr = expect_bad_input(server, &with_good(bad), &["public.plain"]).await;
    assert!(
        !stderr.contains("does not exist") && stderr.contains("not partitioned"),
        "public.plain exists but is not partitioned; the message should say so, got:\n{stderr}"
    );
}

async fn range_policy_on_list_table(server: &Server) {
    let bad = policy_doc(
        "regions",
        "table: public.regions\nrange: {interval: 1 month}",
    );
    expect_bad_input(
        server,
        &with_good(bad),
        &["spec.range", "public.regions", "LIST"],
    )
    .await;
}

async fn time_interval_on_integer_key(server: &Server) {
    let bad = policy_doc("items", "table: public.items\nrange: {interval: 1 month}");
    expect_bad_input(
        server,
        &with_good(bad),
        &["spec.range.interval", "public.items"],
    )
    .await;
}

async fn malformed_interval(server: &Server) {
    let bad = policy_doc(
        "fortnights",
        "table: public.daily\nrange: {interval: 3 fortnights}",
    );
    expect_bad_input(
        server,
        &with_good(bad),
        &["spec.range.interval", "fortnight"],
    )
    .await;
}

async fn bad_time_zone(server: &Server) {
    let bad = policy_doc(
        "mars",
        "table: public.daily\nrange: {interval: 1 day, timeZone: Mars/Olympus}",
    );
    expect_bad_input(
        server,
        &with_good(bad),
        &["spec.range.timeZone", "Mars/Olympus"],
    )
    .await;
}

async fn bad_template_token(server: &Server) {
    let bad = policy_doc(
        "xx",
        "table: public.daily\nrange: {interval: 1 day}\nnaming: {template: \"{table}_{XX}\"}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.naming.template", "{XX}"]).await;
}

async fn template_with_duplicate_names_for_daily(server: &Server) {
    let bad = policy_doc(
        "dup",
        "table: public.daily\nrange: {interval: 1 day}\nnaming: {template: \"{table}_{YYYY}{MM}\"}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.naming.template"]).await;
}

async fn names_over_63_bytes_from_long_table(server: &Server) {
    let bad = policy_doc(
        "long",
        &format!("table: public.{LONG_TABLE}\nrange: {{interval: 1 day}}"),
    );
    expect_bad_input(server, &with_good(bad), &["spec.naming.template", "63"]).await;
}

async fn names_over_63_bytes_from_long_template(server: &Server) {
    let bad = policy_doc(
        "longtpl",
        "table: public.daily
         range: {interval: 1 day}
         naming: {template: \"{table}_with_a_suffix_so_long_that_no_identifier_can_hold_it_{YYYY}{MM}{DD}\"}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.naming.template", "63"]).await;
}

fn typo_policy() -> String {
    policy_doc(
        "typo",
        "table: public.daily\nrange: {interval: 1 day, premke: 6}",
    )
}

async fn unknown_field_typo(server: &Server) {
    // The unknown field and the one meant are both named.
    expect_bad_input(server, &with_good(typo_policy()), &["premke", "premake"]).await;
}

/// The message should say where the unknown field is (spec.range), as for every other field.
async fn unknown_field_names_its_location(server: &Server) {
    expect_bad_input(server, &with_good(typo_policy()), &["spec.range", "premke"]).await;
}

async fn file_not_yaml(server: &Server) {
    expect_bad_input(
        server,
        "this: [is not\n  yaml: {at all\n\t- : :\n",
        &[".yaml"],
    )
    .await;
}

async fn file_yaml_but_not_a_policy(server: &Server) {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n";
    expect_bad_input(
        server,
        &policy_docs(&[good_policy(), text.to_string()]),
        &["PartitionPolicy"],
    )
    .await;
}

async fn file_missing(server: &Server) {
    let db = TestDb::create(server).await;
    fixtures(&db).await;
    let before = cli::snapshot(&db.client, true).await;
    let missing = std::env::temp_dir()
        .join("pgpart-tests")
        .join("no-such-policy-file.yaml");
    let missing = missing.to_str().unwrap();
    for cmd in ["plan", "apply"] {
        let run = cli::pgpart(&[
            cmd,
            "--policy",
            missing,
            "--database-url",
            &db.url,
            "--now",
            &clock::now_arg(),
        ])
        .await;
        run.expect_code(2, &format!("{cmd} with a missing policy file"));
        assert!(
            run.stderr.contains("no-such-policy-file.yaml"),
            "{}",
            run.both()
        );
    }
    cli::assert_same_snapshot(
        &before,
        &cli::snapshot(&db.client, true).await,
        "missing policy file",
    );
    db.drop_db().await;
}

/// Two policies for one table is a bad file: exit 2, nothing changed.
async fn two_policies_for_one_table(server: &Server) {
    let other = policy_doc(
        "good-events-again",
        "table: public.events\nrange: {interval: 1 month, premake: 6}",
    );
    expect_bad_input(
        server,
        &with_good(other),
        &["public.events", "good-events", "good-events-again"],
    )
    .await;
}

async fn bad_now_flag(server: &Server) {
    let db = TestDb::create(server).await;
    fixtures(&db).await;
    let before = cli::snapshot(&db.client, true).await;
    let file = cli::PolicyFile::new(&good_policy());
    for cmd in ["plan", "apply"] {
        let run = cli::pgpart(&[
            cmd,
            "--policy",
            file.path_str(),
            "--database-url",
            &db.url,
            "--now",
            "next tuesday",
        ])
        .await;
        run.expect_code(2, &format!("{cmd} --now 'next tuesday'"));
        assert!(run.stderr.contains("--now"), "{}", run.both());
    }
    cli::assert_same_snapshot(&before, &cli::snapshot(&db.client, true).await, "bad --now");
    db.drop_db().await;
}

async fn hourly_interval_on_date_key(server: &Server) {
    let bad = policy_doc("days", "table: public.days\nrange: {interval: 6 hours}");
    expect_bad_input(
        server,
        &with_good(bad),
        &["spec.range.interval", "public.days"],
    )
    .await;
}

async fn retention_on_list_table(server: &Server) {
    let bad = policy_doc(
        "regions",
        "table: public.regions
         list: {partitions: [{name: us, values: [us]}]}
         retention: {keep: 1 year}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.retention"]).await;
}

async fn move_to_schema_without_schema(server: &Server) {
    let bad = policy_doc(
        "move",
        "table: public.daily
         range: {interval: 1 day}
         retention: {keep: 30 days, action: MoveToSchema}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.retention.schema"]).await;
}

async fn premake_zero(server: &Server) {
    let bad = policy_doc(
        "zero",
        "table: public.daily\nrange: {interval: 1 day, premake: 0}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.range.premake"]).await;
}

async fn lock_timeout_not_a_duration(server: &Server) {
    let bad = policy_doc(
        "lt",
        "table: public.daily\nrange: {interval: 1 day}\nlockTimeout: 5 seconds",
    );
    expect_bad_input(server, &with_good(bad), &["spec.lockTimeout"]).await;
}

async fn start_from_not_a_date(server: &Server) {
    let bad = policy_doc(
        "sf",
        "table: public.daily\nrange: {interval: 1 day, startFrom: yesterday}",
    );
    expect_bad_input(
        server,
        &with_good(bad),
        &["spec.range.startFrom", "yesterday"],
    )
    .await;
}

async fn start_from_date_on_integer_key(server: &Server) {
    let bad = policy_doc(
        "items",
        "table: public.items\nrange: {interval: \"1000\", startFrom: \"2025-01-01\"}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.range.startFrom"]).await;
}

async fn max_per_pass_zero(server: &Server) {
    let bad = policy_doc(
        "mpp",
        "table: public.daily
         range: {interval: 1 day}
         retention: {keep: 30 days, action: Drop, maxPerPass: 0}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.retention.maxPerPass"]).await;
}

async fn hash_modulus_change(server: &Server) {
    let bad = policy_doc("buckets", "table: public.buckets\nhash: {modulus: 8}");
    expect_bad_input(
        server,
        &with_good(bad),
        &["spec.hash.modulus", "buckets_p0"],
    )
    .await;
}

async fn neither_range_list_nor_hash(server: &Server) {
    let bad = policy_doc(
        "none",
        "table: public.daily\ndefaultPartition: {create: true}",
    );
    expect_bad_input(server, &with_good(bad), &["spec.range"]).await;
}
