//! Faults under the controller: PostgreSQL out of connection slots, the Secret deleted and
//! recreated, a password rotated, and the clock jumping a year ahead. Each test has its
//! own namespace and controller; the servers that are starved or given passwords are the
//! test's own. No fixed sleeps: waits poll a condition up to a deadline.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams};
use pgpart::policy::PartitionPolicy;
use serde_json::json;
use support::clock;
use support::controller::{
    self as ctl, Controller, WAIT, apply, condition, conditions_summary, eventually, has_condition,
    policy, uri_secret, wait_for, wait_ready,
};
use support::faults::OwnPg;
use support::kube::{self as testkube, TestNamespace};
use support::pg;
use tokio_postgres::Client;

// The database faults run on every major; the Kubernetes ones (Secret, apiserver) on one.
on_every_major!(
    max_connections_reached_reports_unavailable_then_catches_up,
    clock_jump_of_a_year_retires_at_most_two_per_pass,
);

async fn setup(prefix: &str) -> (TestNamespace, Api<PartitionPolicy>, Api<Secret>) {
    let client = testkube::client().await;
    ctl::install_crd(&client).await;
    let ns = TestNamespace::new(&client, prefix).await;
    let policies = ns.api::<PartitionPolicy>();
    let secrets = ns.api::<Secret>();
    (ns, policies, secrets)
}

/// A role `app` with `password` that owns `public.events` (monthly) and may create in public.
async fn app_role_and_table(admin: &Client, password: &str) {
    admin
        .batch_execute(&format!(
            "CREATE ROLE app LOGIN PASSWORD '{password}';
             GRANT CREATE ON SCHEMA public TO app;
             CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);
             ALTER TABLE public.events OWNER TO app;"
        ))
        .await
        .expect("role and table");
}

/// A PostgreSQL 17 of the test's own that asks for passwords, with `app_role_and_table`.
async fn password_server_with_app(password: &str) -> (OwnPg, Client) {
    let server = OwnPg::start(17, &[]);
    server.password_auth();
    let admin = pg::connect(&server.url).await;
    app_role_and_table(&admin, password).await;
    (server, admin)
}

async fn connections_of(admin: &Client, role: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1",
            &[&role],
        )
        .await
        .expect("pg_stat_activity")
        .get(0)
}

// 2. PostgreSQL at max_connections.
async fn max_connections_reached_reports_unavailable_then_catches_up(pg_server: &pg::Server) {
    let server = OwnPg::start(
        pg_server.major,
        &["max_connections=10", "superuser_reserved_connections=0"],
    );
    let admin = pg::connect(&server.url).await;
    app_role_and_table(&admin, "unused").await;
    // Hold every slot (the admin connection is one of them).
    let mut held = Vec::new();
    loop {
        match tokio_postgres::connect(&server.url, tokio_postgres::NoTls).await {
            Ok((c, conn)) => {
                tokio::spawn(conn);
                held.push(c);
            }
            Err(e) => {
                let msg = e
                    .as_db_error()
                    .map(|d| d.message().to_owned())
                    .unwrap_or_default();
                assert!(
                    msg.contains("too many") || msg.contains("remaining connection slots"),
                    "{e}"
                );
                break;
            }
        }
        assert!(held.len() < 20, "max_connections=10 is not in force");
    }

    let (ns, policies, secrets) = setup("maxconn").await;
    apply(
        &secrets,
        &uri_secret("db", &server.url_for("app", "postgres")),
    )
    .await
    .unwrap();
    let controller = Controller::start(ns.name()).await;
    let doc = policy(
        "events",
        "db",
        json!({ "table": "public.events", "range": { "interval": "1 month", "premake": 2 },
                "schedule": { "every": "5s" } }),
    );
    apply(&policies, &doc).await.unwrap();
    let p = wait_for(
        &policies,
        "events",
        "Ready=False DatabaseUnavailable",
        WAIT,
        |p| has_condition(p, "Ready", "False", Some("DatabaseUnavailable")),
    )
    .await;
    let msg = &condition(&p, "Ready").unwrap().message;
    assert!(msg.contains("connect"), "{msg}");

    // Free the slots; the controller catches up using at most its pool (2).
    held.truncate(1);
    let freed = clock::now();
    let watcher = &held[0];
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        most = most.max(connections_of(watcher, "app").await);
        let p = policies.get("events").await.unwrap();
        if ctl::ready_now(&p) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never Ready again: {}",
            conditions_summary(&p)
        );
        tokio::time::sleep(ctl::POLL).await;
    }
    for _ in 0..10 {
        most = most.max(connections_of(watcher, "app").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        most <= 2,
        "the controller held {most} connections, more than its pool of 2"
    );
    // This month and two ahead as of each pass since the slots were freed (every 5 s).
    ctl::wait_partitions_of_last_pass(
        &policies,
        "events",
        watcher,
        "public.events",
        |names, pass| clock::is_monthly_run(names, "events", freed, pass, 2),
    )
    .await;
    drop(controller);
    drop(held);
    ns.cleanup().await;
    server.stop();
}

// 6. The Secret deleted and recreated; the password rotated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_deleted_stalls_naming_it_recreated_recovers_and_password_rotation_recovers() {
    let (server, admin) = password_server_with_app("first-pass-1").await;
    let url = |pw: &str| format!("postgresql://app:{pw}@127.0.0.1:{}/postgres", server.port);

    let (ns, policies, secrets) = setup("secret").await;
    const SECRET: &str = "billing-db-creds";
    apply(&secrets, &uri_secret(SECRET, &url("first-pass-1")))
        .await
        .unwrap();
    let controller = Controller::start(ns.name()).await;
    let doc = policy(
        "events",
        SECRET,
        json!({ "table": "public.events", "range": { "interval": "1 month", "premake": 2 },
                "schedule": { "every": "5s" } }),
    );
    apply(&policies, &doc).await.unwrap();
    let first_pass = ctl::last_pass_time(&wait_ready(&policies, "events", WAIT).await);

    // Deleted: Ready=False (and Stalled) with a message naming the Secret.
    secrets
        .delete(SECRET, &DeleteParams::default())
        .await
        .unwrap();
    let p = wait_for(
        &policies,
        "events",
        "Ready=False naming the Secret",
        WAIT,
        |p| {
            condition(p, "Ready").is_some_and(|c| c.status == "False" && c.message.contains(SECRET))
        },
    )
    .await;
    assert!(
        has_condition(&p, "Stalled", "True", None),
        "{}",
        conditions_summary(&p)
    );

    // Recreated: recovers.
    apply(&secrets, &uri_secret(SECRET, &url("first-pass-1")))
        .await
        .unwrap();
    wait_for(
        &policies,
        "events",
        "Ready=True after the Secret is back",
        WAIT,
        |p| ctl::ready_now(p) && has_condition(p, "Stalled", "False", None),
    )
    .await;

    // Rotated: the old password stops working (sessions cut), the Secret gets the new one.
    admin
        .batch_execute(
            "ALTER ROLE app PASSWORD 'second-pass-2';
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app';",
        )
        .await
        .unwrap();
    let p = wait_for(
        &policies,
        "events",
        "Ready=False with the old password",
        WAIT,
        |p| has_condition(p, "Ready", "False", Some("DatabaseUnavailable")),
    )
    .await;
    let msg = conditions_summary(&p);
    assert!(
        !msg.contains("first-pass-1") && !msg.contains("second-pass-2"),
        "{msg}"
    );
    apply(&secrets, &uri_secret(SECRET, &url("second-pass-2")))
        .await
        .unwrap();
    wait_for(
        &policies,
        "events",
        "Ready=True with the new password",
        Duration::from_secs(90),
        ctl::ready_now,
    )
    .await;
    // It works with the new password: a change is acted on.
    let mut doc = doc.clone();
    doc["spec"]["range"]["premake"] = json!(4);
    apply(&policies, &doc).await.unwrap();
    // Passes every 5 s: from the first pass's month to 4 ahead of the latest pass's.
    ctl::wait_partitions_of_last_pass(
        &policies,
        "events",
        &admin,
        "public.events",
        |names, pass| names == clock::monthly_between("events", first_pass, pass, 4),
    )
    .await;
    let mut controller = controller;
    controller.assert_running();
    drop(controller);
    ns.cleanup().await;
    server.stop();
}

// 6b. Watched Secrets (`--secret-watch=labeled`): a Secret created for a stalled policy, and
// a rotated password, each start a pass at once; the stalled policy would otherwise wait
// for its recheck (2 minutes) and the healthy one for its schedule (1 hour). An unlabeled
// Secret is not watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_secret_created_or_rotated_starts_a_pass_at_once() {
    let (server, admin) = password_server_with_app("first-pass-1").await;
    let url = |pw: &str| format!("postgresql://app:{pw}@127.0.0.1:{}/postgres", server.port);
    let labeled = |name: &str, pw: &str| {
        let mut s = uri_secret(name, &url(pw));
        s["metadata"]["labels"] = json!({ "pgpart.io/watch": "true" });
        s
    };

    let (ns, policies, secrets) = setup("secretwatch").await;
    let controller = Controller::start_with(ctl::Options {
        extra_args: vec!["--secret-watch=labeled".into()],
        ..ctl::Options::namespace(ns.name())
    })
    .await;
    let hourly = |name: &str, secret: &str| {
        policy(
            name,
            secret,
            json!({ "table": "public.events", "range": { "interval": "1 month", "premake": 2 },
                    "schedule": { "every": "1h" } }),
        )
    };
    // Two policies whose Secrets do not exist yet: both stall naming them. (Both name
    // public.events; only the one with a Secret ever gets as far as claiming it.)
    apply(&policies, &hourly("watched", "watched-db"))
        .await
        .unwrap();
    apply(&policies, &hourly("unwatched", "unwatched-db"))
        .await
        .unwrap();
    for (name, secret) in [("watched", "watched-db"), ("unwatched", "unwatched-db")] {
        wait_for(&policies, name, "Stalled naming its Secret", WAIT, |p| {
            has_condition(p, "Stalled", "True", None)
                && condition(p, "Ready").is_some_and(|c| c.message.contains(secret))
        })
        .await;
    }

    // The unlabeled Secret first, then the labeled one: once the watched policy is Ready,
    // a watch of the unlabeled Secret would have started its pass too.
    apply(&secrets, &uri_secret("unwatched-db", &url("first-pass-1")))
        .await
        .unwrap();
    apply(&secrets, &labeled("watched-db", "first-pass-1"))
        .await
        .unwrap();
    let created = Instant::now();
    wait_for(
        &policies,
        "watched",
        "Ready=True before the 2-minute recheck",
        Duration::from_secs(60),
        ctl::ready_now,
    )
    .await;
    eprintln!(
        "labeled Secret created -> Ready=True after {:?}",
        created.elapsed()
    );
    let unwatched = policies.get("unwatched").await.unwrap();
    assert!(
        has_condition(&unwatched, "Stalled", "True", None),
        "a change of an unlabeled Secret starts no pass: {}",
        conditions_summary(&unwatched)
    );
    assert!(
        controller
            .logs()
            .contains(&format!("Secret {}/watched-db changed", ns.name())),
        "the log says why the pass ran"
    );

    // Rotated: the old password stops working and its sessions are cut; the Secret gets
    // the new one. Nothing else is due for an hour, so only the watch can start the pass
    // that opens a session again (the status it writes repeats the last one, so only the
    // database sees it).
    admin
        .batch_execute(
            "ALTER ROLE app PASSWORD 'second-pass-2';
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app';",
        )
        .await
        .unwrap();
    let admin = &admin;
    eventually("no session of app", WAIT, || async move {
        match connections_of(admin, "app").await {
            0 => Ok(()),
            n => Err(format!("{n} sessions")),
        }
    })
    .await;
    apply(&secrets, &labeled("watched-db", "second-pass-2"))
        .await
        .unwrap();
    let rotated = Instant::now();
    eventually(
        "a pass connected with the new password",
        Duration::from_secs(60),
        || async move {
            match connections_of(admin, "app").await {
                0 => Err("no session of app".to_owned()),
                _ => Ok(()),
            }
        },
    )
    .await;
    eprintln!(
        "password rotated -> a pass connected after {:?}",
        rotated.elapsed()
    );
    let p = policies.get("watched").await.unwrap();
    assert!(ctl::ready_now(&p), "{}", conditions_summary(&p));

    let mut controller = controller;
    controller.assert_running();
    drop(controller);
    ns.cleanup().await;
    server.stop();
}

// 7. The clock a year ahead, retention keep 3 months, maxPerPass 2, every 5 s: retirements
// come at most two per 5 s (the first version retired everything within seconds).
async fn clock_jump_of_a_year_retires_at_most_two_per_pass(pg_server: &pg::Server) {
    let db = pg::TestDb::create(pg_server).await;
    db.client
        .batch_execute(
            "CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);",
        )
        .await
        .unwrap();
    // 12 months of partitions made by pgpart: 11 before this month, and this month.
    let now = clock::now();
    let start = clock::add_months(clock::month_start(now), -11);
    let setup_policy = support::cli::policy_doc(
        "events",
        &format!(
            "table: public.events
             range:
               interval: 1 month
               premake: 1
               startFrom: \"{start}\""
        ),
    );
    support::cli::apply(&db.url, &setup_policy, &clock::rfc3339(now))
        .await
        .ok("make 12 months (+1 ahead)");
    let before = support::cli::partitions(&db.client, "public.events").await;
    assert_eq!(before.len(), 13);
    assert!(before.iter().all(|p| p.managed));

    let (ns, policies, secrets) = setup("clock").await;
    apply(&secrets, &uri_secret("db", &db.url)).await.unwrap();
    let year_ahead = clock::now() + chrono::Duration::days(365);
    let controller = Controller::start_with(ctl::Options {
        namespaces: vec![ns.name().to_owned()],
        extra_args: vec![format!("--now={}", clock::rfc3339(year_ahead))],
        ..ctl::Options::default()
    })
    .await;
    let doc = policy(
        "events",
        "db",
        json!({ "table": "public.events", "range": { "interval": "1 month", "premake": 2 },
                "retention": { "keep": "3 months", "action": "Detach", "maxPerPass": 2 },
                "schedule": { "every": "5s" } }),
    );
    apply(&policies, &doc).await.unwrap();

    let mut seen: Vec<i64> = Vec::new();
    let mut when: Vec<Instant> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n: i64 = db
            .client
            .query_one(
                "SELECT count(*) FROM pg_class c WHERE c.relname LIKE 'events\\_p%' AND c.relkind = 'r'
                    AND NOT c.relispartition",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if seen.last() != Some(&n) {
            seen.push(n);
            when.push(Instant::now());
        }
        if n >= 13 {
            break;
        }
        assert!(Instant::now() < deadline, "detached counts seen: {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Each pass retires at most two: the count moves 0 → 2 → 4 … (a poll may miss a step,
    // never see a jump of more than two from one pass), and within any 4 s (less than
    // `every`, polls being 20 ms apart) at most two are retired.
    assert_eq!(seen[0], 0, "{seen:?}");
    for i in 1..seen.len() {
        let within = (i..seen.len())
            .take_while(|&j| when[j] - when[i] < Duration::from_secs(4))
            .last()
            .unwrap();
        assert!(
            seen[within] - seen[i - 1] <= 2,
            "{} retired within 4 s (counts {seen:?})",
            seen[within] - seen[i - 1]
        );
    }
    let p = wait_ready(&policies, "events", WAIT).await;
    let names = support::cli::partition_names(&db.client, "public.events").await;
    // The month of the last pass (a year on) and two ahead.
    for name in clock::monthly("events", ctl::last_pass_time(&p), 2) {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        before.iter().all(|b| !names.contains(&b.name)),
        "old partitions still attached: {names:?}"
    );
    assert_eq!(support::cli::count(&db.client, "public.events").await, 0);
    drop(controller);
    ns.cleanup().await;
    db.drop_db().await;
}

// 5. kube-apiserver restarted (the test's own control plane; the shared one is untouched).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_restart_keeps_controller_running_and_watch_resumes() {
    use k8s_openapi::api::core::v1::Namespace;
    use support::faults::{OwnKube, TraceController};
    let kube = OwnKube::up();
    let client = kube.client().await;
    ctl::install_crd(&client).await;
    let ns_name = "faults-apiserver";
    apply(
        &Api::<Namespace>::all(client.clone()),
        &json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns_name } }),
    )
    .await
    .unwrap();
    let db = pg::TestDb::create(&pg::server(15)).await;
    db.client
        .batch_execute(
            "CREATE TABLE public.a (at timestamptz NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE public.b (at timestamptz NOT NULL) PARTITION BY RANGE (at);",
        )
        .await
        .unwrap();
    let policies: Api<PartitionPolicy> = Api::namespaced(client.clone(), ns_name);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns_name);
    apply(&secrets, &uri_secret("db", &db.url)).await.unwrap();
    let mut controller = TraceController::spawn_on(&kube.kubeconfig(), ns_name, "info", &[]);
    let spec =
        |table: &str| json!({ "table": table, "range": { "interval": "1 month", "premake": 1 } });
    apply(&policies, &policy("a", "db", spec("public.a")))
        .await
        .unwrap();
    let a_first = ctl::last_pass_time(&wait_ready(&policies, "a", Duration::from_secs(90)).await);

    kube.restart_apiserver();
    eventually(
        "the restarted apiserver answers",
        Duration::from_secs(120),
        || {
            let policies = policies.clone();
            let kube = &kube;
            async move {
                policies.get("a").await.map(|_| ()).map_err(|e| {
                    format!(
                        "{}\n{}",
                        support::faults::error_chain(&e),
                        kube.apiserver_report()
                    )
                })
            }
        },
    )
    .await;
    assert!(
        controller.is_running(),
        "the controller exited with the apiserver:\n{}",
        controller.logs()
    );

    // A policy created after the restart gets Ready; a change to the old one is acted on.
    apply(&policies, &policy("b", "db", spec("public.b")))
        .await
        .unwrap();
    wait_ready(&policies, "b", Duration::from_secs(120)).await;
    let mut bumped = policy("a", "db", spec("public.a"));
    bumped["spec"]["range"]["premake"] = json!(3);
    apply(&policies, &bumped).await.unwrap();
    wait_ready(&policies, "a", Duration::from_secs(60)).await;
    ctl::wait_partitions_of_last_pass(&policies, "a", &db.client, "public.a", |names, pass| {
        names == clock::monthly_between("a", a_first, pass, 3)
    })
    .await;
    ctl::wait_partitions_of_last_pass(&policies, "b", &db.client, "public.b", |names, pass| {
        names == clock::monthly("b", pass, 1)
    })
    .await;
    assert!(controller.is_running());
    drop(controller);
    db.drop_db().await;
    drop(kube);
}
