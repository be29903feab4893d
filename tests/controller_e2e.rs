//! End to end: the real `pgpart controller` process against the test apiserver and real
//! PostgreSQL 15 and 17. Every test has its own namespace, its own database and its own
//! controller (watching only that namespace), so the tests run in parallel.
//!
//! Needs `PGPART_TEST_KUBECONFIG`, `PGPART_TEST_PG15_URL` and `PGPART_TEST_PG17_URL`;
//! `kubectl` on PATH for the printer-column test.

mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};
use kube::{Client, ResourceExt};
use pgpart::policy::PartitionPolicy;
use serde_json::{Value, json};
use support::clock;
use support::controller::{
    self as ctl, Controller, Election, Options, WAIT, apply, condition, conditions_summary,
    eventually, has_condition, last_pass_time, observed_current, policy, stays, uri_secret,
    wait_for, wait_ready,
};
use support::kube::{self as testkube, TestNamespace};
use support::pg::{self, TestDb};

const SECRET: &str = "db";

/// A namespace, a database, the CRD, and (optionally) a controller for them.
struct Env {
    client: Client,
    ns: TestNamespace,
    db: TestDb,
    policies: Api<PartitionPolicy>,
    secrets: Api<Secret>,
}

impl Env {
    /// CRD installed, a fresh namespace and database on PostgreSQL `major`, and a Secret
    /// `db` in the namespace with the database's `uri`.
    async fn new(prefix: &str, major: u32) -> Env {
        let client = testkube::client().await;
        ctl::install_crd(&client).await;
        let ns = TestNamespace::new(&client, prefix).await;
        let db = TestDb::create(&pg::server(major)).await;
        let policies = ns.api::<PartitionPolicy>();
        let secrets = ns.api::<Secret>();
        apply(&secrets, &uri_secret(SECRET, &db.url))
            .await
            .expect("apply the database Secret");
        Env {
            client,
            ns,
            db,
            policies,
            secrets,
        }
    }

    fn ns(&self) -> &str {
        self.ns.name()
    }

    async fn controller(&self) -> Controller {
        Controller::start(self.ns()).await
    }

    async fn sql(&self, sql: &str) {
        pg::sql(&self.db.client, sql).await;
    }

    /// A monthly timestamptz table `public.<name>`, partitioned by range.
    async fn monthly_table(&self, name: &str) {
        self.sql(&format!(
            "CREATE TABLE public.{name} (id bigint GENERATED ALWAYS AS IDENTITY, \
             at timestamptz NOT NULL, payload text) PARTITION BY RANGE (at)"
        ))
        .await;
    }

    async fn apply_policy(&self, doc: &Value) -> PartitionPolicy {
        apply(&self.policies, doc)
            .await
            .unwrap_or_else(|e| panic!("apply policy {}: {e}", doc["metadata"]["name"]))
    }

    async fn partition_names(&self, table: &str) -> Vec<String> {
        support::cli::partition_names(&self.db.client, table).await
    }

    async fn teardown(self, controllers: Vec<Controller>) {
        drop(controllers); // killed and reaped before the database goes
        self.ns.cleanup().await;
        self.db.drop_db().await;
    }
}

fn monthly(name: &str, table: &str, premake: u32) -> Value {
    policy(
        name,
        SECRET,
        json!({ "table": table, "range": { "interval": "1 month", "premake": premake } }),
    )
}

/// events.k8s.io/v1 Events in `ns` about policy `name`.
async fn policy_events(client: &Client, ns: &str, name: &str) -> Vec<Event> {
    Api::<Event>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .expect("list events.k8s.io/v1 Events")
        .items
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("PartitionPolicy") && r.name.as_deref() == Some(name)
            })
        })
        .collect()
}

fn show_events(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} [{}]: {}",
                e.type_.as_deref().unwrap_or("?"),
                e.reason.as_deref().unwrap_or("?"),
                e.reporting_instance.as_deref().unwrap_or("?"),
                e.note.as_deref().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn kubectl(args: &[&str]) -> std::process::Output {
    let kubectl = std::env::var("PGPART_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".to_owned());
    std::process::Command::new(&kubectl)
        .args(args)
        .env("KUBECONFIG", testkube::kubeconfig_path())
        .output()
        .unwrap_or_else(|e| panic!("run {kubectl} (is it on PATH?): {e}"))
}

/// The value of the first /metrics sample of `metric` whose labels include all of `labels`
/// (a sample without labels has none to include).
fn sample(metrics: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?;
        let (set, value) = match rest.strip_prefix('{') {
            Some(labelled) => labelled.rsplit_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        labels
            .iter()
            .all(|(k, v)| set.contains(&format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

// 1 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_creates_partitions_reports_ready_records_events_and_prints_columns() {
    let env = Env::new("e2e-ready", 17).await;
    env.monthly_table("events").await;
    let controller = env.controller().await;

    let started = Instant::now();
    let applied = env
        .apply_policy(&monthly("events", "public.events", 3))
        .await;
    let p = wait_ready(&env.policies, "events", WAIT).await;
    let took = started.elapsed();
    eprintln!("apply -> Ready=True took {took:?} (PostgreSQL 17, 4 partitions to create)");

    // In the database: the month of the pass and 3 ahead, all pgpart's.
    let pass = last_pass_time(&p);
    let want = clock::monthly("events", pass, 3);
    let parts = support::cli::partitions(&env.db.client, "public.events").await;
    let names: Vec<&str> = parts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, want, "partitions of public.events");
    assert!(parts.iter().all(|p| p.managed), "all managed: {parts:?}");

    // Status.
    assert_eq!(
        p.status.as_ref().unwrap().observed_generation,
        applied.metadata.generation
    );
    let s = p.status.as_ref().unwrap();
    assert_eq!(s.partitions, Some(4), "status.partitions");
    assert_eq!(s.oldest.as_deref(), Some(want[0].as_str()));
    assert_eq!(s.newest.as_deref(), Some(want[3].as_str()));
    // Covered until the end of the newest partition (the start of the month after it).
    let covered_end = clock::add_months(clock::month_start(pass), 4);
    assert_eq!(
        s.covered_until.as_deref(),
        Some(
            covered_end
                .format("%Y-%m-%dT00:00:00Z")
                .to_string()
                .as_str()
        ),
        "status.coveredUntil"
    );
    assert!(
        s.last_maintenance_time.is_some(),
        "lastMaintenanceTime: {s:?}"
    );
    assert!(
        s.pending_actions.is_empty(),
        "pendingActions: {:?}",
        s.pending_actions
    );
    assert!(
        has_condition(&p, "Stalled", "False", None)
            && has_condition(&p, "Reconciling", "False", None),
        "{}",
        conditions_summary(&p)
    );

    // Events: PartitionCreated (Normal) from the pgpart controller.
    let client = env.client.clone();
    let ns = env.ns().to_owned();
    let events = eventually("a PartitionCreated event", WAIT, || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let events = policy_events(&client, &ns, "events").await;
            if events
                .iter()
                .any(|e| e.reason.as_deref() == Some("PartitionCreated"))
            {
                Ok(events)
            } else {
                Err(show_events(&events))
            }
        }
    })
    .await;
    for e in events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("PartitionCreated"))
    {
        assert_eq!(
            e.type_.as_deref(),
            Some("Normal"),
            "{}",
            show_events(&events)
        );
        assert_eq!(e.reporting_controller.as_deref(), Some("pgpart"));
        // The action carries a digest of the note, so distinct changes stay distinct events.
        assert!(
            e.action
                .as_deref()
                .unwrap_or_default()
                .starts_with("Reconcile-"),
            "{}",
            show_events(&events)
        );
    }

    // kubectl get ppol shows the printer columns.
    let out = kubectl(&["get", "ppol", "-n", env.ns()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kubectl get ppol: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    let header = lines.next().unwrap_or_default();
    for col in [
        "NAME",
        "TABLE",
        "INTERVAL",
        "PARTITIONS",
        "COVERED UNTIL",
        "READY",
    ] {
        assert!(header.contains(col), "column {col} missing from {header:?}");
    }
    let row = lines.next().unwrap_or_default();
    let cell = |col: &str| {
        let start = header.find(col).unwrap();
        let rest = row.get(start..).unwrap_or("");
        // Columns are separated by at least 3 spaces; values like "1 month" hold one.
        rest.split("   ").next().unwrap_or("").trim().to_owned()
    };
    assert_eq!(cell("NAME"), "events", "{stdout}");
    assert_eq!(cell("TABLE"), "public.events", "{stdout}");
    assert_eq!(cell("INTERVAL"), "1 month", "{stdout}");
    assert_eq!(cell("PARTITIONS"), "4", "{stdout}");
    assert_eq!(
        cell("COVERED UNTIL"),
        s.covered_until.clone().unwrap(),
        "{stdout}"
    );
    assert_eq!(cell("READY"), "True", "{stdout}");
    // And by category.
    let out = kubectl(&["get", "pgpart", "-n", env.ns(), "-o", "name"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "partitionpolicy.pgpart.io/events",
        "kubectl get pgpart (category): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every partition created is named by an event (a person reading `kubectl events`
    // must be able to tell what was created, and not see one partition "created" 4 times).
    let client = env.client.clone();
    let ns = env.ns().to_owned();
    eventually(
        "each created partition named by a PartitionCreated event",
        Duration::from_secs(15),
        || {
        let (client, ns, want) = (client.clone(), ns.clone(), want.clone());
        async move {
            let events = policy_events(&client, &ns, "events").await;
            let missing: Vec<&String> = want
                .iter()
                .filter(|w| {
                    !events.iter().any(|e| {
                        e.reason.as_deref() == Some("PartitionCreated")
                            && e.note.as_deref().is_some_and(|n| n.contains(w.as_str()))
                    })
                })
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "no PartitionCreated event names {missing:?}; the events (with series counts):\n{}",
                    events
                        .iter()
                        .map(|e| format!(
                            "{} x{}: {}",
                            e.reason.as_deref().unwrap_or("?"),
                            e.series.as_ref().map(|s| s.count).unwrap_or(1),
                            e.note.as_deref().unwrap_or("")
                        ))
                        .collect::<Vec<_>>()
                        .join("\n")
                ))
            }
        }
    })
    .await;

    let mut controller = controller;
    controller.assert_running();
    env.teardown(vec![controller]).await;
}

/// A `kubernetes.io/basic-auth` Secret with host, port and dbname keys (no `uri`) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_with_separate_keys_connects() {
    let env = Env::new("e2e-keys", 15).await;
    env.monthly_table("events").await;
    let cfg: tokio_postgres::Config = env.db.url.parse().expect("test database URL");
    let host = match &cfg.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        other => panic!("test server is not on TCP: {other:?}"),
    };
    let mut data = serde_json::Map::new();
    data.insert("host".into(), json!(host));
    data.insert("port".into(), json!(cfg.get_ports()[0].to_string()));
    data.insert("dbname".into(), json!(env.db.name));
    data.insert(
        "username".into(),
        json!(cfg.get_user().unwrap_or("postgres")),
    );
    data.insert(
        "password".into(),
        json!(String::from_utf8_lossy(
            cfg.get_password().unwrap_or_default()
        )),
    );
    env.secrets
        .delete(SECRET, &DeleteParams::default())
        .await
        .expect("delete the uri Secret");
    apply(
        &env.secrets,
        &json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "keys" },
            "type": "kubernetes.io/basic-auth", "stringData": data,
        }),
    )
    .await
    .expect("basic-auth Secret");
    let controller = env.controller().await;
    let mut doc = monthly("events", "public.events", 1);
    doc["spec"]["database"]["secretRef"]["name"] = json!("keys");
    env.apply_policy(&doc).await;
    let p = wait_ready(&env.policies, "events", WAIT).await;
    assert_eq!(
        env.partition_names("public.events").await,
        clock::monthly("events", last_pass_time(&p), 1)
    );
    env.teardown(vec![controller]).await;
}

// 2 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_premake_adds_partitions_and_observed_generation_follows() {
    let env = Env::new("e2e-premake", 15).await;
    env.monthly_table("metrics").await;
    let controller = env.controller().await;

    let first = env
        .apply_policy(&monthly("metrics", "public.metrics", 2))
        .await;
    let p = wait_ready(&env.policies, "metrics", WAIT).await;
    let first_pass = last_pass_time(&p);
    assert_eq!(p.status.as_ref().unwrap().partitions, Some(3));
    assert_eq!(
        env.partition_names("public.metrics").await,
        clock::monthly("metrics", first_pass, 2)
    );

    let second = env
        .apply_policy(&monthly("metrics", "public.metrics", 5))
        .await;
    let g1 = first.metadata.generation.unwrap();
    let g2 = second.metadata.generation.unwrap();
    assert!(
        g2 > g1,
        "a spec change must bump the generation ({g1} -> {g2})"
    );
    let p = wait_for(
        &env.policies,
        "metrics",
        "Ready at the new generation",
        WAIT,
        |p| ctl::ready_now(p) && p.metadata.generation == Some(g2),
    )
    .await;
    let s = p.status.as_ref().unwrap();
    assert_eq!(s.observed_generation, Some(g2));
    assert!(
        s.conditions
            .iter()
            .all(|c| c.observed_generation == Some(g2)),
        "every condition carries the new generation: {}",
        conditions_summary(&p)
    );
    // The first pass's months, and the month of this pass and 5 ahead (6 partitions
    // unless a month began between the two passes).
    let want = clock::monthly_between("metrics", first_pass, last_pass_time(&p), 5);
    assert_eq!(s.partitions, Some(want.len() as i64), "status.partitions");
    assert_eq!(env.partition_names("public.metrics").await, want);

    env.teardown(vec![controller]).await;
}

// 3 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_and_suspend_plan_but_change_nothing() {
    let env = Env::new("e2e-dryrun", 17).await;
    env.monthly_table("planned").await;
    env.monthly_table("paused").await;
    let before = support::cli::snapshot(&env.db.client, true).await;
    let controller = env.controller().await;

    let mut dry = monthly("planned", "public.planned", 3);
    dry["spec"]["dryRun"] = json!(true);
    let mut suspended = monthly("paused", "public.paused", 3);
    suspended["spec"]["suspend"] = json!(true);
    env.apply_policy(&dry).await;
    env.apply_policy(&suspended).await;

    for (name, reason) in [("planned", "DryRun"), ("paused", "Suspended")] {
        let p = wait_for(&env.policies, name, "pendingActions reported", WAIT, |p| {
            observed_current(p)
                && p.status
                    .as_ref()
                    .is_some_and(|s| !s.pending_actions.is_empty())
        })
        .await;
        let s = p.status.as_ref().unwrap();
        assert_eq!(
            s.pending_actions.len(),
            4,
            "{name}: the 4 partitions it would create: {:?}",
            s.pending_actions
        );
        assert!(
            s.pending_actions.iter().any(|a| a.contains("create")),
            "{:?}",
            s.pending_actions
        );
        assert!(
            has_condition(&p, "Ready", "False", Some(reason))
                && has_condition(&p, "Stalled", "False", None),
            "{name}: {}",
            conditions_summary(&p)
        );
        assert_eq!(s.partitions, Some(0), "{name}: status.partitions");
    }
    let after = support::cli::snapshot(&env.db.client, true).await;
    assert_eq!(
        before, after,
        "dryRun and suspend must not change the catalog"
    );

    // Turning dryRun off acts at once (no waiting for spec.schedule.every).
    dry["spec"]["dryRun"] = json!(false);
    env.apply_policy(&dry).await;
    let p = wait_ready(&env.policies, "planned", WAIT).await;
    assert_eq!(
        env.partition_names("public.planned").await,
        clock::monthly("planned", last_pass_time(&p), 3)
    );
    assert!(
        env.partition_names("public.paused").await.is_empty(),
        "the suspended policy still changed nothing"
    );

    env.teardown(vec![controller]).await;
}

// 4 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_refuses_invalid_policies_naming_the_field() {
    let client = testkube::client().await;
    ctl::install_crd(&client).await;
    let ns = TestNamespace::new(&client, "e2e-invalid").await;
    let api = ns.api::<PartitionPolicy>();

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "range and list both set",
            json!({ "table": "public.t", "range": { "interval": "1 month" },
                    "list": { "partitions": [{ "name": "eu", "values": ["de"] }] } }),
            "spec.list",
        ),
        (
            "neither range, list nor hash",
            json!({ "table": "public.t" }),
            "spec.range",
        ),
        (
            "retention MoveToSchema without schema",
            json!({ "table": "public.t", "range": { "interval": "1 month" },
                    "retention": { "keep": "12 months", "action": "MoveToSchema" } }),
            "spec.retention.schema",
        ),
        (
            "interval 3 fortnights",
            json!({ "table": "public.t", "range": { "interval": "3 fortnights" } }),
            "spec.range.interval",
        ),
        (
            "lockTimeout five",
            json!({ "table": "public.t", "range": { "interval": "1 month" }, "lockTimeout": "five" }),
            "spec.lockTimeout",
        ),
        (
            "premake 0",
            json!({ "table": "public.t", "range": { "interval": "1 month", "premake": 0 } }),
            "spec.range.premake",
        ),
        (
            "table not schema-qualified",
            json!({ "table": "events", "range": { "interval": "1 month" } }),
            "spec.table",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (what, spec, field)) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        match apply(&api, &policy(&name, SECRET, spec.clone())).await {
            Ok(_) => failures.push(format!("{what}: accepted by the apiserver")),
            Err(kube::Error::Api(s)) => {
                if s.code != 422 || !s.message.contains(field) {
                    failures.push(format!(
                        "{what}: expected 422 naming {field}, got {}: {}",
                        s.code, s.message
                    ));
                }
            }
            Err(e) => failures.push(format!("{what}: {e}")),
        }
        if api.get_opt(&name).await.expect("get").is_some() {
            failures.push(format!("{what}: the object was stored"));
        }
    }

    // spec.table is immutable.
    apply(&api, &monthly("fixed", "public.a", 2))
        .await
        .expect("a valid policy is accepted");
    match apply(&api, &monthly("fixed", "public.b", 2)).await {
        Ok(_) => failures.push("changing spec.table: accepted".into()),
        Err(kube::Error::Api(s)) => {
            if s.code != 422
                || !s.message.contains("spec.table")
                || !s.message.contains("immutable")
            {
                failures.push(format!(
                    "changing spec.table: expected 422 naming spec.table as immutable, got {}: {}",
                    s.code, s.message
                ));
            }
        }
        Err(e) => failures.push(format!("changing spec.table: {e}")),
    }
    let stored = api.get("fixed").await.expect("get fixed");
    if stored.spec.table != "public.a" {
        failures.push(format!("spec.table changed to {}", stored.spec.table));
    }

    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    ns.cleanup().await;
}

// 5 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_stalls_then_becomes_ready_once_created() {
    let env = Env::new("e2e-missing", 17).await;
    let controller = env.controller().await;
    env.apply_policy(&monthly("later", "public.later_events", 2))
        .await;

    let p = wait_for(
        &env.policies,
        "later",
        "Stalled=True reason TableMissing",
        WAIT,
        |p| observed_current(p) && has_condition(p, "Stalled", "True", Some("TableMissing")),
    )
    .await;
    let stalled = condition(&p, "Stalled").unwrap();
    assert!(
        stalled.message.contains("later_events"),
        "the message names the table: {}",
        stalled.message
    );
    assert!(
        has_condition(&p, "Ready", "False", Some("TableMissing")),
        "{}",
        conditions_summary(&p)
    );

    // Create the table and touch nothing else: the stalled re-check (at most 2 minutes) finds it.
    env.monthly_table("later_events").await;
    let created = Instant::now();
    let p = wait_ready(&env.policies, "later", Duration::from_secs(150)).await;
    eprintln!(
        "table created -> Ready=True after {:?} (stalled re-check)",
        created.elapsed()
    );
    assert_eq!(
        env.partition_names("public.later_events").await,
        clock::monthly("later_events", last_pass_time(&p), 2)
    );

    env.teardown(vec![controller]).await;
}

// 6 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_is_transient_and_recovers_when_the_secret_is_fixed() {
    let env = Env::new("e2e-unreach", 15).await;
    env.monthly_table("events").await;
    // Nothing listens on this port.
    let dead = format!(
        "postgresql://postgres@127.0.0.1:{}/{}",
        ctl::free_port(),
        env.db.name
    );
    apply(&env.secrets, &uri_secret(SECRET, &dead))
        .await
        .expect("point the Secret at a dead port");
    let mut controller = env.controller().await;
    let pid = controller.pid();
    env.apply_policy(&monthly("events", "public.events", 2))
        .await;

    let p = wait_for(
        &env.policies,
        "events",
        "Ready=False DatabaseUnavailable, not stalled",
        WAIT,
        |p| observed_current(p) && has_condition(p, "Ready", "False", Some("DatabaseUnavailable")),
    )
    .await;
    assert!(
        has_condition(&p, "Stalled", "False", None)
            && has_condition(&p, "Reconciling", "True", None),
        "a database that is down is transient (Stalled=False, Reconciling=True): {}",
        conditions_summary(&p)
    );
    let msg = &condition(&p, "Ready").unwrap().message;
    assert!(!msg.is_empty(), "the message says why");
    let events = policy_events(&env.client, env.ns(), "events").await;
    assert!(
        events.iter().any(|e| e.type_.as_deref() == Some("Warning")
            && e.reason.as_deref() == Some("DatabaseUnavailable")),
        "a Warning event with the error reason:\n{}",
        show_events(&events)
    );

    // Fix the Secret only: the back-off retry picks it up, same process.
    apply(&env.secrets, &uri_secret(SECRET, &env.db.url))
        .await
        .expect("fix the Secret");
    let fixed = Instant::now();
    let p = wait_ready(&env.policies, "events", Duration::from_secs(120)).await;
    eprintln!("Secret fixed -> Ready=True after {:?}", fixed.elapsed());
    assert_eq!(
        env.partition_names("public.events").await,
        clock::monthly("events", last_pass_time(&p), 2)
    );
    controller.assert_running();
    assert_eq!(controller.pid(), pid);

    env.teardown(vec![controller]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_dropped_under_a_ready_policy_is_transient_and_recovers() {
    let env = Env::new("e2e-dropped", 17).await;
    env.monthly_table("events").await;
    let mut controller = env.controller().await;
    let mut doc = monthly("events", "public.events", 2);
    doc["spec"]["schedule"] = json!({ "every": "3s" });
    env.apply_policy(&doc).await;
    wait_ready(&env.policies, "events", WAIT).await;

    // The database goes away (sessions terminated): the next pass cannot connect.
    let admin = env.db.server.admin_client().await;
    admin
        .batch_execute(&format!(
            "DROP DATABASE {} WITH (FORCE)",
            pg::quote_ident(&env.db.name)
        ))
        .await
        .expect("drop the test database");
    let p = wait_for(
        &env.policies,
        "events",
        "Ready=False, not stalled",
        WAIT,
        |p| has_condition(p, "Ready", "False", None),
    )
    .await;
    let ready = condition(&p, "Ready").unwrap();
    eprintln!(
        "database dropped -> Ready=False reason {}: {}",
        ready.reason, ready.message
    );
    assert!(
        ["DatabaseUnavailable", "DatabaseError"].contains(&ready.reason.as_str()),
        "reason for a database that is gone: {}",
        conditions_summary(&p)
    );
    assert!(
        has_condition(&p, "Stalled", "False", None)
            && has_condition(&p, "Reconciling", "True", None),
        "a database that is gone may come back: {}",
        conditions_summary(&p)
    );

    // It comes back (empty): the controller recreates the partitions without a restart.
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {}",
            pg::quote_ident(&env.db.name)
        ))
        .await
        .expect("recreate the test database");
    let back = pg::connect(&env.db.url).await;
    back.batch_execute(
        "CREATE TABLE public.events (id bigint, at timestamptz NOT NULL) PARTITION BY RANGE (at)",
    )
    .await
    .expect("recreate the table");
    let t = Instant::now();
    let recreated = clock::now();
    wait_for(
        &env.policies,
        "events",
        "Ready=True again",
        Duration::from_secs(150),
        |p| has_condition(p, "Ready", "True", None),
    )
    .await;
    eprintln!("database back -> Ready=True after {:?}", t.elapsed());
    // Passes run every 3 s: the months since the table came back, up to 2 ahead of the
    // latest pass (the first pass after it came back may have been in a later month).
    ctl::wait_partitions_of_last_pass(
        &env.policies,
        "events",
        &back,
        "public.events",
        |names, pass| clock::is_monthly_run(names, "events", recreated, pass, 2),
    )
    .await;
    controller.assert_running();
    drop(back);

    env.teardown(vec![controller]).await;
}

// 7 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_acts_and_a_standby_takes_over_when_it_dies() {
    let env = Env::new("e2e-leader", 17).await;
    env.monthly_table("first").await;
    env.monthly_table("second").await;
    let lease_name = format!("pgpart-{}", &env.ns()[env.ns().len() - 12..]);
    let start = |identity: &str| {
        Controller::spawn(Options {
            namespaces: vec![env.ns().to_owned()],
            election: Some(Election {
                lease_name: lease_name.clone(),
                lease_namespace: env.ns().to_owned(),
                identity: identity.to_owned(),
                duration_seconds: 5,
            }),
            extra_args: vec![],
        })
    };
    let mut a = start("replica-a");
    let mut b = start("replica-b");
    a.wait_ready().await;
    b.wait_ready().await;

    let leases = env.ns.api::<Lease>();
    let holder = |l: &Lease| {
        l.spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .unwrap_or_default()
    };
    let lease = wait_for(&leases, &lease_name, "a leader", WAIT, |l| {
        ["replica-a", "replica-b"].contains(&holder(l).as_str())
    })
    .await;
    let leader_id = holder(&lease);
    let (mut leader, mut standby) = if leader_id == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    let standby_id = standby.identity().unwrap().to_owned();

    env.apply_policy(&monthly("first", "public.first", 2)).await;
    let p = wait_ready(&env.policies, "first", WAIT).await;
    assert_eq!(
        env.partition_names("public.first").await,
        clock::monthly("first", last_pass_time(&p), 2)
    );

    // Exactly one acted: every event comes from the leader, the standby never reconciled.
    let events = policy_events(&env.client, env.ns(), "first").await;
    assert!(!events.is_empty());
    assert!(
        events
            .iter()
            .all(|e| e.reporting_instance.as_deref() == Some(leader_id.as_str())),
        "events must all come from the leader {leader_id}:\n{}",
        show_events(&events)
    );
    let standby_metrics = standby.metrics().await;
    assert_eq!(
        sample(
            &standby_metrics,
            "pgpart_reconciles_total",
            &[("policy", "first")]
        ),
        None,
        "the standby reconciled:\n{standby_metrics}"
    );
    assert!(
        sample(
            &leader.metrics().await,
            "pgpart_reconciles_total",
            &[("policy", "first")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(holder(&leases.get(&lease_name).await.unwrap()), leader_id);

    assert!(
        leader.logs().contains("became the leader"),
        "leader log:\n{}",
        leader.logs()
    );
    assert!(
        !standby.logs().contains("became the leader"),
        "the standby says it leads:\n{}",
        standby.logs()
    );

    // kill -9 the leader: the standby takes the lease once it expires.
    leader.kill9();
    let killed = Instant::now();
    wait_for(
        &leases,
        &lease_name,
        "the standby holds the lease",
        WAIT,
        |l| holder(l) == standby_id,
    )
    .await;
    eprintln!(
        "leader killed -> standby {standby_id} holds the lease after {:?}",
        killed.elapsed()
    );

    env.apply_policy(&monthly("second", "public.second", 2))
        .await;
    let p = wait_ready(&env.policies, "second", WAIT).await;
    assert_eq!(
        env.partition_names("public.second").await,
        clock::monthly("second", last_pass_time(&p), 2)
    );
    let events = policy_events(&env.client, env.ns(), "second").await;
    assert!(
        !events.is_empty()
            && events
                .iter()
                .all(|e| e.reporting_instance.as_deref() == Some(standby_id.as_str())),
        "events of the new policy must come from the new leader {standby_id}:\n{}",
        show_events(&events)
    );
    standby.assert_running();
    assert!(standby.logs().contains("became the leader"));

    env.teardown(vec![leader, standby]).await;
}

// 8 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_policy_keeps_every_partition() {
    let env = Env::new("e2e-delete", 17).await;
    env.monthly_table("events").await;
    let controller = env.controller().await;
    env.apply_policy(&monthly("events", "public.events", 3))
        .await;
    let p = wait_ready(&env.policies, "events", WAIT).await;
    let pass = last_pass_time(&p);
    env.sql(&format!(
        "INSERT INTO public.events (at, payload) VALUES ('{}', 'keep me')",
        clock::rfc3339(pass)
    ))
    .await;
    let before = support::cli::snapshot(&env.db.client, true).await;
    let names = env.partition_names("public.events").await;
    assert_eq!(names, clock::monthly("events", pass, 3));
    let series = format!("namespace=\"{}\",policy=\"events\"", env.ns());
    let metrics = controller.metrics().await;
    assert!(
        metrics.contains(&format!("pgpart_partitions{{{series}")),
        "the policy's series are exported while it exists:\n{metrics}"
    );

    env.policies
        .delete("events", &DeleteParams::default())
        .await
        .expect("delete the policy");
    let policies = env.policies.clone();
    eventually("the policy is gone (no finalizer holds it)", WAIT, || {
        let policies = policies.clone();
        async move {
            match policies.get_opt("events").await {
                Ok(None) => Ok(()),
                Ok(Some(p)) => Err(format!("still there, finalizers {:?}", p.finalizers())),
                Err(e) => Err(e.to_string()),
            }
        }
    })
    .await;

    // The catalog stays exactly as it was (same relations, same OIDs), and the row is there.
    let client = &env.db.client;
    stays(
        "every partition still in the database",
        Duration::from_secs(3),
        || {
            let before = before.clone();
            async move {
                let now = support::cli::snapshot(client, true).await;
                if now == before {
                    Ok(())
                } else {
                    Err(format!("catalog changed: {now:#?}"))
                }
            }
        },
    )
    .await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM public.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);

    // Nothing of the policy stays in the controller's metrics.
    eventually("no series of the deleted policy", WAIT, || {
        let (controller, series) = (&controller, &series);
        async move {
            let metrics = controller.metrics().await;
            match metrics.lines().find(|l| l.contains(series.as_str())) {
                None => Ok(()),
                Some(line) => Err(format!("still exported: {line}")),
            }
        }
    })
    .await;

    env.teardown(vec![controller]).await;
}

// 9 ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_policy_on_the_same_table_is_stalled_with_conflict() {
    let env = Env::new("e2e-conflict", 17).await;
    env.monthly_table("events").await;
    let controller = env.controller().await;
    env.apply_policy(&monthly("owner", "public.events", 2))
        .await;
    let owner = wait_ready(&env.policies, "owner", WAIT).await;
    let want = clock::monthly("events", last_pass_time(&owner), 2);

    env.apply_policy(&monthly("intruder", "public.events", 6))
        .await;
    let p = wait_for(
        &env.policies,
        "intruder",
        "Stalled=True reason Conflict",
        WAIT,
        |p| observed_current(p) && has_condition(p, "Stalled", "True", Some("Conflict")),
    )
    .await;
    let msg = &condition(&p, "Stalled").unwrap().message;
    assert!(
        msg.contains("owner") && msg.contains("events"),
        "the message names the table and the policy that has it: {msg}"
    );
    assert!(
        has_condition(&p, "Ready", "False", Some("Conflict")),
        "{}",
        conditions_summary(&p)
    );

    // The intruder changed nothing (its premake 6 would add partitions); the owner stays Ready.
    assert_eq!(env.partition_names("public.events").await, want);
    let owner = env.policies.get("owner").await.unwrap();
    assert!(
        ctl::ready_now(&owner),
        "owner: {}",
        conditions_summary(&owner)
    );

    env.teardown(vec![controller]).await;
}

/// The policy that holds a table keeps it, whatever the names and creation times of the two
/// (`kubectl apply -f dir/` may create both in one second), and also after a restart of the
/// controller, when nothing in memory says who held it and the newcomer (it sorts first) is
/// likely reconciled first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_policy_holding_a_table_keeps_it_across_a_controller_restart() {
    let env = Env::new("e2e-conflict-restart", 17).await;
    env.monthly_table("events").await;
    let controller = env.controller().await;
    env.apply_policy(&monthly("zz-owner", "public.events", 2))
        .await;
    let owner = wait_ready(&env.policies, "zz-owner", WAIT).await;
    let want = clock::monthly("events", last_pass_time(&owner), 2);
    let claim = owner.status.as_ref().and_then(|s| s.claim.clone());
    assert!(
        claim
            .as_deref()
            .is_some_and(|c| c.ends_with(" public.events")),
        "status.claim names the table: {claim:?}"
    );
    env.apply_policy(&monthly("aa-intruder", "public.events", 6))
        .await;
    let conflict = |p: &PartitionPolicy| {
        observed_current(p) && has_condition(p, "Stalled", "True", Some("Conflict"))
    };
    wait_for(&env.policies, "aa-intruder", "Conflict", WAIT, conflict).await;

    drop(controller);
    let restarted = env.controller().await;
    // The new process passes both again (a pass that finds what the status says writes
    // nothing, so its metrics say when both are done); the newcomer, which sorts first, is
    // still the one refused.
    eventually("two passes by the restarted controller", WAIT, || async {
        let metrics = restarted.metrics().await;
        match sample(&metrics, "pgpart_reconcile_duration_seconds_count", &[]).unwrap_or(0.0) {
            n if n >= 2.0 => Ok(()),
            n => Err(format!("{n} passes finished")),
        }
    })
    .await;
    let owner = env.policies.get("zz-owner").await.unwrap();
    let intruder = env.policies.get("aa-intruder").await.unwrap();
    assert!(ctl::ready_now(&owner), "{}", conditions_summary(&owner));
    assert_eq!(owner.status.as_ref().unwrap().claim, claim);
    assert!(
        conflict(&intruder),
        "after a restart the newcomer took the table: {}",
        conditions_summary(&intruder)
    );
    assert_eq!(intruder.status.as_ref().unwrap().claim, None);
    assert_eq!(
        env.partition_names("public.events").await,
        want,
        "the newcomer changed the table"
    );
    env.teardown(vec![restarted]).await;
}

/// A partition made by hand off the grid, from the 10th of this month to the 10th of the
/// next: the controller bridges the rest of the slots it touches, so Ready means that every
/// key from now to the end of premake takes a row (the first version said Ready with
/// [the 10th of next month, the month after) uncovered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_off_grid_partition_is_bridged_and_ready_means_covered() {
    let env = Env::new("e2e-bridge", 15).await;
    env.monthly_table("events").await;
    let m = clock::month_start(clock::now());
    let (from, to) = (
        m + chrono::Days::new(9),
        clock::add_months(m, 1) + chrono::Days::new(9),
    );
    env.sql(&format!(
        "CREATE TABLE public.events_hand PARTITION OF public.events FOR VALUES FROM ('{}') TO ('{}')",
        clock::bound_text(from),
        clock::bound_text(to)
    ))
    .await;
    let controller = env.controller().await;
    env.apply_policy(&monthly("events", "public.events", 2))
        .await;
    let p = wait_ready(&env.policies, "events", WAIT).await;
    let pass = last_pass_time(&p);
    let names = env.partition_names("public.events").await;
    assert!(names.contains(&"events_hand".to_owned()), "{names:?}");
    assert!(
        names.iter().any(|n| n.starts_with("events_bridge_")),
        "{names:?}"
    );
    // Keys at the pass, just after the hand-made partition, and at the end of premake.
    let end = clock::add_months(clock::month_start(pass), 3);
    env.sql(&format!(
        "INSERT INTO public.events (at, payload) VALUES ('{}', 'now'), ('{}', 'after'), ('{} 00:00:00+00'::timestamptz - interval '1 second', 'last')",
        clock::rfc3339(pass),
        clock::bound_text(to),
        end
    ))
    .await;
    env.teardown(vec![controller]).await;
}

// 10 -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_namespace_secret_ref_is_refused_without_reading_it() {
    let env = Env::new("e2e-xns", 17).await;
    env.monthly_table("events").await;
    // The policy's own namespace has no Secret; the other namespace has a working one.
    env.secrets
        .delete(SECRET, &DeleteParams::default())
        .await
        .expect("delete the Secret of the policy's namespace");
    let other = TestNamespace::new(&env.client, "e2e-xns-other").await;
    apply(
        &other.api::<Secret>(),
        &uri_secret("shared-db", &env.db.url),
    )
    .await
    .expect("Secret in the other namespace");
    let before = support::cli::snapshot(&env.db.client, true).await;
    let controller = env.controller().await;

    let mut doc = monthly("borrower", "public.events", 2);
    doc["spec"]["database"]["secretRef"] =
        json!({ "name": "shared-db", "namespace": other.name() });
    env.apply_policy(&doc).await;
    let p = wait_for(&env.policies, "borrower", "Stalled=True", WAIT, |p| {
        observed_current(p) && has_condition(p, "Stalled", "True", None)
    })
    .await;
    let stalled = condition(&p, "Stalled").unwrap();
    assert!(
        stalled
            .message
            .contains("spec.database.secretRef.namespace"),
        "the message names the field: {}",
        conditions_summary(&p)
    );
    assert!(
        has_condition(&p, "Stalled", "True", Some("InvalidPolicy"))
            && has_condition(&p, "Ready", "False", Some("InvalidPolicy")),
        "{}",
        conditions_summary(&p)
    );
    // The other namespace's Secret (which would work) was not used: the database is untouched.
    let after = support::cli::snapshot(&env.db.client, true).await;
    assert_eq!(
        before, after,
        "the database was changed through another namespace's Secret"
    );

    // A policy in a namespace the controller does not watch is left alone.
    apply(&other.api::<PartitionPolicy>(), &{
        let mut d = monthly("unwatched", "public.events", 2);
        d["spec"]["database"]["secretRef"] = json!({ "name": "shared-db" });
        d
    })
    .await
    .expect("policy in the other namespace");
    let unwatched = other.api::<PartitionPolicy>();
    stays(
        "the unwatched namespace's policy untouched",
        Duration::from_secs(3),
        || {
            let unwatched = unwatched.clone();
            async move {
                match unwatched.get("unwatched").await {
                    Ok(p) if p.status.is_none() => Ok(()),
                    Ok(p) => Err(format!("it has a status: {}", conditions_summary(&p))),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .await;
    assert!(env.partition_names("public.events").await.is_empty());

    env.teardown(vec![controller]).await;
    other.cleanup().await;
}

// 11 -----------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_readiness_endpoints() {
    let env = Env::new("e2e-metrics", 17).await;
    env.monthly_table("events").await;
    let controller = Controller::start_with(Options {
        extra_args: vec!["--log-format".into(), "json".into()],
        ..Options::namespace(env.ns())
    })
    .await;

    for path in ["/healthz", "/readyz"] {
        let (code, body) = controller.get(path).await.expect(path);
        assert_eq!(code, 200, "GET {path}: {body}");
    }
    let (code, _) = controller.get("/nope").await.expect("/nope");
    assert_eq!(code, 404);

    env.apply_policy(&monthly("events", "public.events", 3))
        .await;
    wait_ready(&env.policies, "events", WAIT).await;
    let labels = [
        ("namespace", env.ns()),
        ("policy", "events"),
        ("table", "public.events"),
    ];
    let text = eventually(
        "pgpart_partitions and pgpart_reconciles_total",
        WAIT,
        || {
            let c = &controller;
            async move {
                let text = c.metrics().await;
                match (
                    sample(&text, "pgpart_partitions", &labels),
                    sample(&text, "pgpart_reconciles_total", &labels),
                ) {
                    (Some(p), Some(r)) if p == 4.0 && r >= 1.0 => Ok(text),
                    _ => Err(text),
                }
            }
        },
    )
    .await;
    for family in [
        "# TYPE pgpart_partitions gauge",
        "# TYPE pgpart_reconciles counter",
        "pgpart_reconcile_duration_seconds_count",
    ] {
        assert!(
            text.contains(family),
            "{family} missing from /metrics:\n{text}"
        );
    }
    assert!(
        sample(
            &text,
            "pgpart_ddl_actions_total",
            &[("kind", "create"), ("result", "ok")]
        )
        .is_some_and(|n| n >= 4.0),
        "4 creates counted:\n{text}"
    );

    // --log-format json: one JSON object a line.
    let logs = controller.logs();
    let lines: Vec<&str> = logs.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in &lines {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "no level in {line}");
    }
    assert!(
        lines.iter().any(|l| l.contains("events_p")),
        "the created partitions are logged:\n{logs}"
    );

    env.teardown(vec![controller]).await;
}

// Shared observation -------------------------------------------------------------------------

/// Policies due together are served by a few shared catalog observations, not one each;
/// a table another session holds locked reports why, and stalls none of the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_due_together_share_observations_and_a_locked_table_stalls_only_itself() {
    const N: usize = 24;
    let env = Env::new("e2e-shared", 17).await;
    let names: Vec<String> = (0..N).map(|i| format!("s{i:02}")).collect();
    for name in &names {
        env.monthly_table(name).await;
        env.apply_policy(&monthly(name, &format!("public.{name}"), 2))
            .await;
    }
    env.monthly_table("locked").await;
    env.sql("CREATE TABLE public.locked_default PARTITION OF public.locked DEFAULT")
        .await;
    env.apply_policy(&monthly("locked", "public.locked", 2))
        .await;
    // Reading the default's rows would wait behind this session's lock.
    let holder = env.db.connect().await;
    holder
        .batch_execute("BEGIN; LOCK TABLE public.locked_default IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    // Every policy is due at once when the controller starts.
    let controller = env.controller().await;
    // 75 partitions to make: a loaded machine takes longer than one policy's WAIT.
    for name in &names {
        wait_ready(&env.policies, name, 3 * WAIT).await;
    }
    let p = wait_for(
        &env.policies,
        "locked",
        "Ready=False because of the lock",
        WAIT,
        |p| has_condition(p, "Ready", "False", Some("LockTimeout")),
    )
    .await;
    assert!(
        condition(&p, "Ready").unwrap().message.contains("lock"),
        "{}",
        conditions_summary(&p)
    );
    let metrics = controller.metrics().await;
    let observations = sample(&metrics, "pgpart_observations_total", &[])
        .unwrap_or_else(|| panic!("no pgpart_observations_total in:\n{metrics}"));
    // One per pass would be N + 1 or more; sharing serves them in a few.
    assert!(
        observations >= 1.0 && observations <= (N / 2) as f64,
        "{observations} observations for {} policies due together",
        N + 1
    );

    // The lock gone, the locked table gets its partitions too.
    holder.batch_execute("ROLLBACK").await.unwrap();
    wait_ready(&env.policies, "locked", WAIT).await;
    env.teardown(vec![controller]).await;
}
