//! `retention.action: Archive` through the CLI on every PostgreSQL major: each retired
//! partition is detached, written to the archive (COPY text, gzip), read back and checked
//! (rows, SHA-256) before it is dropped, and `pgpart restore` brings it back with the same
//! rows. A store that refuses the write, a full disk and a SIGKILL in the middle each keep
//! the partition (detached, marked), report the failure, and the next pass finishes.
//!
//! Each case hands pgpart a fixed `--now`; nothing depends on today's date.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::cli::{self, PolicyFile, apply_args, pgpart, policy_doc, spawn, wait};
use support::pg::{Server, TestDb, sql};
use tokio_postgres::Client;

on_every_major!(
    archived_partitions_are_dropped_only_after_verifying_and_restore_brings_them_back,
    a_store_that_refuses_the_write_or_is_full_keeps_the_partition,
    a_pass_killed_while_archiving_keeps_the_partition_and_the_next_one_finishes,
);

/// Mid-December 2025: with keep 6 months, the months January to May end before the cutoff.
const NOW: &str = "2025-12-15T00:00:00Z";
const RETIRED: [&str; 5] = [
    "events_p20250101",
    "events_p20250201",
    "events_p20250301",
    "events_p20250401",
    "events_p20250501",
];

/// A directory of its own for one case's archive (removed first: a rerun starts empty).
fn archive_dir(db: &TestDb, what: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("pgpart-tests")
        .join(format!("archive-{}-{what}", db.name));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn policy(dir: &Path) -> String {
    policy_doc(
        "events",
        &format!(
            "table: public.events
             range: {{interval: 1 month, premake: 2, startFrom: \"2025-01-01\"}}
             retention: {{keep: 6 months, action: Archive, archive: {{url: \"file://{}\"}}}}",
            dir.display()
        ),
    )
}

/// A table with the values COPY must carry exactly: tabs, newlines, backslashes, NULLs,
/// non-ASCII text, JSON, bytes, an identity and a generated column.
async fn create_events(c: &Client) {
    sql(
        c,
        "CREATE TABLE public.events (
             id bigint GENERATED ALWAYS AS IDENTITY,
             ts timestamptz NOT NULL,
             note text,
             doc jsonb,
             raw bytea,
             twice bigint GENERATED ALWAYS AS (id * 2) STORED
         ) PARTITION BY RANGE (ts);",
    )
    .await;
}

async fn insert_rows(c: &Client, from: &str, to: &str, step: &str) {
    c.batch_execute(&format!(
        "INSERT INTO public.events (ts, note, doc, raw)
         SELECT t,
                CASE WHEN extract(hour FROM t)::int % 5 = 0 THEN NULL
                     ELSE E'tab\\there, line\\nbreak, back\\\\slash, ünïcødé ' || t::text END,
                jsonb_build_object('at', t, 'q', E'\"quoted\"\\n'),
                decode(md5(t::text), 'hex')
           FROM generate_series(timestamptz '{from}', timestamptz '{to}', interval '{step}') t"
    ))
    .await
    .expect("insert rows");
}

/// Rows and a checksum of a relation's rows in id order, every column included.
async fn fingerprint(c: &Client, rel: &str) -> (i64, String) {
    let r = c
        .query_one(
            &format!(
                "SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY id)), '') FROM {rel} t"
            ),
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("fingerprint of {rel}: {e}"));
    (r.get(0), r.get(1))
}

async fn exists(c: &Client, rel: &str) -> bool {
    cli::exists(c, rel).await
}

/// Detached (a table, no partition any more) and marked to be archived.
async fn kept_detached_and_marked(c: &Client, rel: &str) -> String {
    let r = c
        .query_opt(
            "SELECT relispartition, coalesce(obj_description(oid, 'pg_class'), '') FROM pg_class
              WHERE oid = to_regclass($1)",
            &[&rel],
        )
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{rel} was dropped: a failed archive must keep it"));
    assert!(!r.get::<_, bool>(0), "{rel} is still a partition");
    let comment: String = r.get(1);
    assert!(
        comment.starts_with("pgpart: retiring partition of events: archive to file://"),
        "{rel}'s mark: {comment}"
    );
    comment
}

fn manifest(dir: &Path, partition: &str) -> Option<serde_json::Value> {
    let path = dir
        .join("public/events")
        .join(partition)
        .join("manifest.json");
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).expect("manifest.json is JSON"))
}

async fn restore(file: &PolicyFile, url: &str, partition: &str, how: &[&str]) -> cli::Run {
    let mut args = vec![
        "restore",
        "--policy",
        file.path_str(),
        "--database-url",
        url,
        "--partition",
        partition,
    ];
    args.extend_from_slice(how);
    pgpart(&args).await
}

async fn archived_partitions_are_dropped_only_after_verifying_and_restore_brings_them_back(
    server: &Server,
) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    create_events(c).await;
    let dir = archive_dir(&db, "round-trip");
    let file = PolicyFile::new(&policy(&dir));

    // First make the partitions (as of January), then fill them.
    cli::wait(spawn(&apply_args(&file, &db.url, "2025-01-10T00:00:00Z")))
        .await
        .ok("apply in January");
    cli::wait(spawn(&apply_args(&file, &db.url, "2025-06-10T00:00:00Z")))
        .await
        .ok("apply in June");
    insert_rows(c, "2025-01-01", "2025-06-30 23:00", "1 hour").await;
    let mut before = Vec::new();
    for p in RETIRED {
        let f = fingerprint(c, &format!("public.{p}")).await;
        assert!(f.0 > 600, "{p} holds a month of hourly rows: {f:?}");
        before.push(f);
    }

    let shown = cli::plan(&db.url, &policy(&dir), NOW).await;
    shown.ok("plan");
    assert!(
        shown.stdout.contains("archive it to file://")
            && shown.stdout.contains("read back and verified"),
        "plan shows the archive step:\n{}",
        shown.stdout
    );

    let run = cli::wait(spawn(&apply_args(&file, &db.url, NOW))).await;
    run.ok("apply with Archive");
    for (p, (rows, _)) in RETIRED.iter().zip(&before) {
        assert!(
            !exists(c, &format!("public.{p}")).await,
            "{p} was not dropped"
        );
        let m = manifest(&dir, p).unwrap_or_else(|| panic!("no manifest for {p}:\n{}", run.both()));
        assert_eq!(m["rows"].as_i64(), Some(*rows), "{p}'s manifest: {m}");
        assert_eq!(m["partition"], *p);
        assert!(
            m["bound"]
                .as_str()
                .unwrap_or_default()
                .starts_with("FOR VALUES FROM ("),
            "{p}'s manifest keeps its bound: {m}"
        );
        assert!(
            dir.join("public/events")
                .join(p)
                .join("data.copy.gz")
                .is_file()
        );
    }
    assert!(exists(c, "public.events_p20250601").await, "June is kept");

    // Back as a plain table: the same rows, every column.
    restore(
        &file,
        &db.url,
        RETIRED[0],
        &["--as-table", "events_january"],
    )
    .await
    .ok("restore --as-table");
    assert_eq!(fingerprint(c, "public.events_january").await, before[0]);
    // Back as the partition it was: its rows are the parent's again.
    let back = restore(&file, &db.url, RETIRED[1], &["--attach"]).await;
    back.ok("restore --attach");
    assert!(
        back.stdout
            .contains("attached to public.events FOR VALUES FROM ("),
        "{}",
        back.stdout
    );
    assert_eq!(fingerprint(c, "public.events_p20250201").await, before[1]);
    let through_parent = fingerprint(
        c,
        "(SELECT * FROM public.events WHERE ts >= '2025-02-01' AND ts < '2025-03-01')",
    )
    .await;
    assert_eq!(through_parent, before[1]);
    // Restoring over an existing table is refused, and changes nothing.
    let again = restore(&file, &db.url, RETIRED[1], &["--attach"]).await;
    again.expect_code(2, "restore over an existing table");
    assert!(again.stderr.contains("exists already"), "{}", again.stderr);
    // A restored partition is not pgpart's: the next pass keeps it (and says so).
    let next = cli::wait(spawn(&apply_args(&file, &db.url, NOW))).await;
    next.ok("apply after restore");
    assert_eq!(fingerprint(c, "public.events_p20250201").await, before[1]);
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_db().await;
}

async fn a_store_that_refuses_the_write_or_is_full_keeps_the_partition(server: &Server) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    create_events(c).await;
    let base = archive_dir(&db, "refused");
    // The archive's directory cannot be made: a file stands where it would go.
    std::fs::create_dir_all(&base).unwrap();
    std::fs::write(base.join("blocked"), "not a directory").unwrap();
    let dir = base.join("blocked/archive");
    let file = PolicyFile::new(&policy(&dir));
    cli::wait(spawn(&apply_args(&file, &db.url, "2025-01-10T00:00:00Z")))
        .await
        .ok("apply in January");
    cli::wait(spawn(&apply_args(&file, &db.url, "2025-06-10T00:00:00Z")))
        .await
        .ok("apply in June");
    insert_rows(c, "2025-01-01", "2025-05-31 23:00", "1 hour").await;
    let before = fingerprint(c, "public.events_p20250101").await;

    let refused = cli::wait(spawn(&apply_args(&file, &db.url, NOW))).await;
    refused.expect_code(1, "apply with a store that refuses the write");
    assert!(
        refused.both().contains("archive: file://")
            && refused.both().contains("cannot create the directory"),
        "the failure names the archive: {}",
        refused.both()
    );
    // The first retirement failed and is kept whole; no other was begun after it.
    kept_detached_and_marked(c, "public.events_p20250101").await;
    for p in &RETIRED[1..] {
        let attached = cli::partition_names(c, "public.events").await;
        assert!(
            attached.iter().any(|n| n == p),
            "{p} was detached after an archive failed"
        );
    }
    assert_eq!(fingerprint(c, "public.events_p20250101").await, before);

    // A full disk: a 512 KiB file system, over a megabyte of gzip to write.
    std::fs::remove_file(base.join("blocked")).unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"])
        .arg(&dir)
        .status()
        .expect("run mount");
    assert!(
        mounted.success(),
        "mount a small tmpfs (the tests run as root)"
    );
    sql(
        c,
        "UPDATE public.events_p20250101 SET note = (SELECT string_agg(md5(random()::text || g || id), '') FROM generate_series(1, 100) g);",
    )
    .await;
    let before = fingerprint(c, "public.events_p20250101").await;
    let full = cli::wait(spawn(&apply_args(&file, &db.url, NOW))).await;
    let unmounted = std::process::Command::new("umount").arg(&dir).status();
    full.expect_code(1, "apply with a full disk");
    assert!(full.both().contains("archive: "), "{}", full.both());
    assert!(unmounted.expect("run umount").success());
    kept_detached_and_marked(c, "public.events_p20250101").await;
    assert_eq!(fingerprint(c, "public.events_p20250101").await, before);
    assert!(manifest(&dir, "events_p20250101").is_none());

    // With room again, the next pass finishes what was marked, then the rest.
    let fixed = cli::wait(spawn(&apply_args(&file, &db.url, NOW))).await;
    fixed.ok("apply with room");
    assert!(!exists(c, "public.events_p20250101").await);
    let m = manifest(&dir, "events_p20250101").expect("a manifest once archived");
    assert_eq!(m["rows"].as_i64(), Some(before.0));
    restore(&file, &db.url, "events_p20250101", &["--as-table", "back"])
        .await
        .ok("restore");
    assert_eq!(fingerprint(c, "public.back").await, before);
    let _ = std::fs::remove_dir_all(&base);
    db.drop_db().await;
}

async fn a_pass_killed_while_archiving_keeps_the_partition_and_the_next_one_finishes(
    server: &Server,
) {
    let db = TestDb::create(server).await;
    let c = &db.client;
    create_events(c).await;
    let dir = archive_dir(&db, "killed");
    let file = PolicyFile::new(&policy(&dir));
    cli::wait(spawn(&apply_args(&file, &db.url, "2025-01-10T00:00:00Z")))
        .await
        .ok("apply in January");
    cli::wait(spawn(&apply_args(&file, &db.url, "2025-06-10T00:00:00Z")))
        .await
        .ok("apply in June");
    // January big enough that its archive takes a while: ~270k rows, ~60 MB of COPY text.
    insert_rows(c, "2025-01-01", "2025-01-31 23:59", "10 seconds").await;
    let before = fingerprint(c, "public.events_p20250101").await;

    // Kill the pass once the data object is being written (its staged file exists).
    let partition_dir = dir.join("public/events/events_p20250101");
    let mut child = spawn(&apply_args(&file, &db.url, NOW));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let writing = std::fs::read_dir(&partition_dir)
            .map(|d| d.count() > 0)
            .unwrap_or(false);
        if writing {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the pass ended ({status}) before its archive was seen being written");
        }
        assert!(Instant::now() < deadline, "no archive write began in 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.start_kill().expect("SIGKILL the pass");
    let killed = wait(child).await;
    assert_eq!(killed.code, -1, "killed by a signal: {}", killed.both());

    // The server ends the killed session's transaction: the partition is whole and marked.
    let deadline = Instant::now() + Duration::from_secs(30);
    while c
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE relation = to_regclass('public.events_p20250101') AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
    {
        assert!(Instant::now() < deadline, "the killed session still holds its lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kept_detached_and_marked(c, "public.events_p20250101").await;
    assert_eq!(fingerprint(c, "public.events_p20250101").await, before);
    assert!(
        manifest(&dir, "events_p20250101").is_none(),
        "no manifest for an unfinished archive"
    );

    let next = cli::wait(spawn(&apply_args(&file, &db.url, NOW))).await;
    next.ok("the next pass");
    assert!(!exists(c, "public.events_p20250101").await);
    let m = manifest(&dir, "events_p20250101").expect("archived by the next pass");
    assert_eq!(m["rows"].as_i64(), Some(before.0));
    restore(&file, &db.url, "events_p20250101", &["--as-table", "back"])
        .await
        .ok("restore");
    assert_eq!(fingerprint(c, "public.back").await, before);
    let _ = std::fs::remove_dir_all(&dir);
    db.drop_db().await;
}
