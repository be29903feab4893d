//! pgpart as users run it: the image built from `Containerfile`, installed by `helm install`
//! on a real node (scripts/lib/node.sh: containerd, kubelet, controller manager, scheduler,
//! kube-proxy), policies applied with kubectl, the database reached from the pods.
//!
//! One test walks a release through its life, because each step needs the one before:
//! install (both pods Ready through the real probes, one Lease holder, the chart's security
//! context in force on the running process, the examples Ready through the pod's in-cluster
//! config), failover (the leader's pod deleted), upgrade (a newly built image and a changed
//! CRD), 1000 policies (every one Ready, no pod restarted or over its memory limit, by the
//! kubelet's figures), uninstall (the CRD and policies kept, the database untouched) and
//! Flux (all of `gitops/flux` from a local git server: helm-controller installs the chart
//! again, taking over the kept CRD, then the policies of `gitops/policies` are Ready).
//! PostgreSQL logs every DDL statement of the test's database, so "no action done twice, no
//! error from two leaders" is read from the database itself.
//!
//! Needs the node environment (`PGPART_TESTENV_NODE=1 scripts/testenv up`; scripts/test runs
//! it as its node step). Cargo builds it only when asked (`test = false` in Cargo.toml:
//! `cargo test --test node`), so the other cells, which have no node, never run it.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::helm::{chart_dir, helm_ok};
use support::{flux, run};

const NS: &str = "pgpart-node-test";
const APP_NS: &str = "pgpart-node-demo";
const SCALE_NS: &str = "pgpart-node-scale";
/// Policies (and tables) of the scale step.
const SCALE: usize = 1000;
const LEASE_SECONDS: u64 = 15;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run in the node environment (PGPART_TESTENV_NODE=1 scripts/testenv up)")
    })
}

#[track_caller]
fn kubectl(args: &[&str]) -> String {
    run(Command::new(env("PGPART_TEST_KUBECTL")).args(args))
}

#[track_caller]
fn kubectl_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(&a)).expect("kubectl prints JSON")
}

/// Poll `f` every 200 ms until it returns Some, for at most `limit`.
#[track_caller]
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The superuser URL of the environment's PostgreSQL 17, for `database`.
fn admin_url(database: &str) -> String {
    let url = env("PGPART_TEST_PG17_URL");
    format!(
        "{}/{database}",
        url.rsplit_once('/').expect("URL has a path").0
    )
}

#[track_caller]
fn psql(database: &str, sql: &str) -> String {
    run(Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(admin_url(database))
        .args(["-c", sql]))
}

/// The server's log file (scripts/testenv: PGROOT/pg17/postgres.log).
fn pg_log() -> PathBuf {
    let dir = PathBuf::from(env("PGPART_TESTENV_DIR"));
    let root = std::fs::read_to_string(dir.join("pgroot"))
        .map(|s| PathBuf::from(s.trim()))
        .unwrap_or(dir);
    root.join("pg17/postgres.log")
}

/// DDL statements of the test's role since `from` (a byte offset of the log), and the errors.
fn ddl_since(from: u64) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read(pg_log()).expect("read the PostgreSQL log");
    let text = String::from_utf8_lossy(&text[from as usize..]).into_owned();
    let mut statements = Vec::new();
    let mut errors = Vec::new();
    for line in text.lines() {
        // Simple protocol logs "statement: ", the extended one "execute <name>: ".
        let statement = line
            .split_once("LOG:  statement: ")
            .map(|(_, s)| s)
            .or_else(|| {
                line.split_once("LOG:  execute ")
                    .and_then(|(_, s)| s.split_once(": "))
                    .map(|(_, s)| s)
            });
        if let Some(s) = statement {
            statements.push(s.to_owned());
        } else if line.contains("ERROR:") {
            errors.push(line.to_owned());
        }
    }
    (statements, errors)
}

fn log_len() -> u64 {
    std::fs::metadata(pg_log()).expect("PostgreSQL log").len()
}

/// Each `CREATE TABLE` at most once: a second one would be an action done twice.
#[track_caller]
fn assert_each_ddl_once(statements: &[String]) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for s in statements.iter().filter(|s| s.contains("CREATE TABLE")) {
        *seen.entry(s.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "statements run more than once: {twice:#?}"
    );
}

/// The pods of the release in `ns`, as `kubectl get -o json` lists them.
fn release_pods(ns: &str) -> Value {
    kubectl_json(&[
        "-n",
        ns,
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=pgpart",
    ])
}

/// The pods of the release in `ns` (name, ready, image) that are not being deleted.
fn pods(ns: &str) -> Vec<(String, bool, String)> {
    let list = release_pods(ns);
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"].as_str().expect("name").to_owned(),
                ready,
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .expect("image")
                    .to_owned(),
            )
        })
        .collect()
}

fn lease_holder() -> Option<String> {
    let lease = kubectl_json(&["-n", NS, "get", "lease", "pgpart"]);
    lease["spec"]["holderIdentity"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Wait until `n` pods of `image` are Ready in `ns` and no other pod is left; returns their
/// names.
#[track_caller]
fn wait_pods_ready(ns: &str, n: usize, image: &str) -> Vec<String> {
    wait_for(
        &format!("{n} Ready pods of {image}"),
        Duration::from_secs(120),
        || {
            let p = pods(ns);
            (p.len() == n && p.iter().all(|(_, ready, img)| *ready && img == image))
                .then(|| p.into_iter().map(|(name, ..)| name).collect())
        },
    )
}

/// `kubectl apply` of the YAML documents `docs` in namespace `ns`.
fn kubectl_apply(ns: &str, docs: &str) {
    let mut child = Command::new(env("PGPART_TEST_KUBECTL"))
        .args(["-n", ns, "apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl apply");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), docs.as_bytes())
        .expect("write");
    assert!(
        child.wait().expect("kubectl").success(),
        "kubectl apply in {ns}"
    );
}

/// A daily policy of `table` using Secret `secret`.
fn daily_policy(name: &str, table: &str, secret: &str) -> String {
    format!(
        "---\napiVersion: pgpart.io/v1alpha1\nkind: PartitionPolicy\nmetadata: {{name: {name}}}\nspec:\n  database: {{secretRef: {{name: {secret}}}}}\n  table: {table}\n  range: {{interval: 1 day, premake: 3}}\n"
    )
}

/// Every policy of namespace `ns` (there are `count`) has condition Ready=True.
#[track_caller]
fn wait_policies_ready(ns: &str, count: usize, limit: Duration) {
    wait_for(&format!("{count} Ready policies in {ns}"), limit, || {
        let list = kubectl_json(&["-n", ns, "get", "partitionpolicies"]);
        let items = list["items"].as_array().expect("items");
        let ready = items
            .iter()
            .filter(|p| {
                p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .count();
        (items.len() == count && ready == count).then_some(())
    });
}

/// A memory quantity as the chart writes limits (`256Mi`, `1Gi`, bytes).
fn bytes_of(quantity: &str) -> u64 {
    let (n, unit) = quantity
        .find(|c: char| !c.is_ascii_digit())
        .map_or((quantity, ""), |i| quantity.split_at(i));
    let n: u64 = n
        .parse()
        .unwrap_or_else(|_| panic!("memory quantity {quantity:?}"));
    n * match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => panic!("memory quantity {quantity:?}: unit {unit:?}"),
    }
}

/// Each release pod's controller container as the kubelet reports it (its stats summary,
/// what `kubectl top` shows): (pod, working set bytes, memory limit bytes), after checking
/// that it never restarted and was never OOM-killed.
fn memory_of_pods() -> Vec<(String, u64, u64)> {
    let node = env("PGPART_TEST_NODE_NAME");
    let summary: Value = serde_json::from_str(&kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/stats/summary"),
    ]))
    .expect("the kubelet's stats summary is JSON");
    let specs = release_pods(NS);
    let mut out = Vec::new();
    for pod in specs["items"].as_array().expect("items") {
        let name = pod["metadata"]["name"].as_str().expect("name");
        let status = &pod["status"]["containerStatuses"][0];
        assert_eq!(status["restartCount"], 0, "{name} restarted: {status}");
        assert!(
            status["lastState"]["terminated"].is_null(),
            "{name} was terminated before (OOMKilled?): {status}"
        );
        let limit = bytes_of(
            pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
                .as_str()
                .expect("the chart sets a memory limit"),
        );
        let stats = summary["pods"]
            .as_array()
            .expect("pods")
            .iter()
            .find(|p| p["podRef"]["name"] == name)
            .unwrap_or_else(|| panic!("no stats for {name}"));
        let working_set = stats["containers"][0]["memory"]["workingSetBytes"]
            .as_u64()
            .expect("workingSetBytes");
        out.push((name.to_owned(), working_set, limit));
    }
    out
}

/// The host's view of the controller process of `pod`: found through containerd's container
/// for it, the process's real credentials, capabilities, seccomp mode and root mount.
fn assert_process_confined(pod: &str) {
    let pods = kubectl_json(&["-n", NS, "get", "pod", pod]);
    let id = pods["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .expect("container id")
        .trim_start_matches("containerd://")
        .to_owned();
    let tasks = run(Command::new("ctr").args([
        "--address",
        &env("PGPART_TEST_CONTAINERD_SOCK"),
        "-n",
        "k8s.io",
        "tasks",
        "ls",
    ]));
    let pid = tasks
        .lines()
        .find(|l| l.starts_with(&id))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no task for container {id} of {pod}:\n{tasks}"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(
        field("Uid:"),
        "65532 65532 65532 65532",
        "{pod} runs as 65532"
    );
    assert_eq!(
        field("Gid:"),
        "65532 65532 65532 65532",
        "{pod} runs as group 65532"
    );
    assert_eq!(
        field("CapEff:"),
        "0000000000000000",
        "{pod} has no capabilities"
    );
    assert_eq!(
        field("CapBnd:"),
        "0000000000000000",
        "{pod} cannot regain capabilities"
    );
    assert_eq!(
        field("NoNewPrivs:"),
        "1",
        "{pod}: allowPrivilegeEscalation false"
    );
    assert_eq!(
        field("Seccomp:"),
        "2",
        "{pod} runs under a seccomp filter (RuntimeDefault)"
    );
    let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("mountinfo");
    let root = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .expect("a root mount");
    let options = root.split_whitespace().nth(5).expect("mount options");
    assert!(
        options.split(',').any(|o| o == "ro"),
        "{pod}'s root is read-only: {root}"
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(
        cmdline.starts_with(b"/pgpart\0controller\0"),
        "the image's entrypoint runs"
    );
}

fn build_image(tag: &str) -> String {
    let name = format!("pgpart.local/pgpart:{tag}");
    run(
        Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/testenv")).args([
            "image",
            &env("PGPART_TESTENV_DIR"),
            &name,
        ]),
    );
    name
}

/// `helm install` or `helm upgrade` of release pgpart from `chart` with image `tag`, the
/// test's Lease duration and clock; waits for the rollout.
fn helm_release(verb: &str, chart: &std::path::Path, tag: &str, now: &str) {
    let chart = chart.to_str().expect("path");
    let tag = format!("--set=image.tag={tag}");
    let lease = format!("--set=leaderElection.leaseDurationSeconds={LEASE_SECONDS}");
    let clock = format!("--set-json=extraArgs=[\"--now={now}\"]");
    helm_ok(&[
        verb,
        "pgpart",
        chart,
        "-n",
        NS,
        "--wait",
        "--timeout=180s",
        "--set=image.repository=pgpart.local/pgpart",
        &tag,
        &lease,
        &clock,
    ]);
}

#[test]
fn helm_install_failover_upgrade_and_uninstall_on_a_real_node() {
    let node_ip = env("PGPART_TEST_NODE_IP");
    let port = env("PGPART_TEST_PG17_URL")
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next().map(str::to_owned))
        .expect("port in PGPART_TEST_PG17_URL");

    // The database, its owner with a password (the pods come in over the bridge, which
    // pg_hba lets in with scram only), the examples' tables, every DDL statement logged.
    psql("postgres", "DROP DATABASE IF EXISTS node_demo WITH (FORCE)");
    psql("postgres", "DROP ROLE IF EXISTS node_app");
    psql(
        "postgres",
        "CREATE ROLE node_app LOGIN PASSWORD 'node-app-pw'",
    );
    psql("postgres", "CREATE DATABASE node_demo OWNER node_app");
    psql(
        "postgres",
        "ALTER DATABASE node_demo SET log_statement = 'ddl'",
    );
    let schema =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/schema.sql"))
            .expect("examples/schema.sql");
    psql("node_demo", &format!("SET ROLE node_app;\n{schema}"));
    let examples: Vec<PathBuf> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
            .expect("examples")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();

    for ns in [NS, APP_NS] {
        let _ = Command::new(env("PGPART_TEST_KUBECTL"))
            .args(["create", "namespace", ns])
            .output();
    }
    let uri =
        format!("uri=postgresql://node_app:node-app-pw@{node_ip}:{port}/node_demo?sslmode=disable");
    let _ = Command::new(env("PGPART_TEST_KUBECTL"))
        .args([
            "-n",
            APP_NS,
            "delete",
            "secret",
            "demo-db",
            "--ignore-not-found",
        ])
        .output();
    kubectl(&[
        "-n",
        APP_NS,
        "create",
        "secret",
        "generic",
        "demo-db",
        "--from-literal",
        &uri,
    ]);

    // --- helm install ------------------------------------------------------------------
    let image1 = build_image("node-test-1");
    let now = support::clock::now_arg();
    let log_start = log_len();
    let chart = chart_dir();
    helm_release("install", &chart, "node-test-1", &now);
    let first = wait_pods_ready(NS, 2, &image1);
    let leader = wait_for(
        "a Lease holder",
        Duration::from_secs(LEASE_SECONDS + 10),
        lease_holder,
    );
    assert!(
        first.contains(&leader),
        "the Lease holder {leader} is one of the pods {first:?}"
    );
    for pod in &first {
        assert_process_confined(pod);
    }
    for f in &examples {
        kubectl(&["-n", APP_NS, "apply", "-f", f.to_str().expect("path")]);
    }
    wait_policies_ready(APP_NS, examples.len(), Duration::from_secs(90));
    let partitions = |db: &str| {
        psql(db, "SELECT count(*) FROM pg_inherits")
            .trim()
            .parse::<u64>()
            .expect("count")
    };
    let made = partitions("node_demo");
    assert!(
        made > examples.len() as u64,
        "the pods created partitions: {made}"
    );

    // --- failover: the leader's pod is deleted --------------------------------------------
    let standby = first
        .iter()
        .find(|p| **p != leader)
        .expect("a standby")
        .clone();
    let deleted_at = Instant::now();
    kubectl(&["-n", NS, "delete", "pod", &leader, "--wait=false"]);
    let next = wait_for(
        "a new Lease holder",
        Duration::from_secs(LEASE_SECONDS + 10),
        || lease_holder().filter(|h| *h != leader),
    );
    let takeover = deleted_at.elapsed();
    assert!(
        next == standby || !first.contains(&next),
        "the new holder {next} is a live pod"
    );
    // A table created after the failover is served by the new leader.
    psql(
        "node_demo",
        "SET ROLE node_app; CREATE TABLE public.after_failover (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at)",
    );
    kubectl_apply(
        APP_NS,
        &daily_policy("after-failover", "public.after_failover", "demo-db"),
    );
    wait_policies_ready(APP_NS, examples.len() + 1, Duration::from_secs(90));
    wait_pods_ready(NS, 2, &image1);

    // --- helm upgrade: a newly built image and a changed CRD -------------------------------
    let image2 = build_image("node-test-2");
    let upgraded_chart = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-chart");
    let _ = std::fs::remove_dir_all(&upgraded_chart);
    run(Command::new("cp")
        .arg("-r")
        .arg(&chart)
        .arg(&upgraded_chart));
    // The schema's text changes, as a new release's CRD would.
    let crd_file = upgraded_chart.join("files/crd.yaml");
    let crd = std::fs::read_to_string(&crd_file).expect("files/crd.yaml");
    let changed = crd.replacen(
        "description: Desired shape of one partitioned table.",
        "description: Desired shape of one partitioned table (upgraded).",
        1,
    );
    assert_ne!(changed, crd, "files/crd.yaml has the description to change");
    std::fs::write(&crd_file, changed).expect("write files/crd.yaml");
    let revision_before = kubectl_json(&["-n", NS, "get", "deployment", "pgpart"]);
    helm_release("upgrade", &upgraded_chart, "node-test-2", &now);
    let second = wait_pods_ready(NS, 2, &image2);
    assert!(
        second.iter().all(|p| !first.contains(p)),
        "every pod was replaced: {second:?}"
    );
    let deployment = kubectl_json(&["-n", NS, "get", "deployment", "pgpart"]);
    assert_eq!(
        deployment["spec"]["strategy"]["type"], "RollingUpdate",
        "the upgrade rolls"
    );
    assert_ne!(
        deployment["metadata"]["generation"], revision_before["metadata"]["generation"],
        "the Deployment changed"
    );
    let crd = kubectl_json(&["get", "crd", "partitionpolicies.pgpart.io"]);
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["description"], "Desired shape of one partitioned table (upgraded).",
        "the CRD was upgraded"
    );
    let holder = wait_for(
        "a Lease holder of the new pods",
        Duration::from_secs(LEASE_SECONDS * 2 + 10),
        || lease_holder().filter(|h| second.contains(h)),
    );
    wait_policies_ready(APP_NS, examples.len() + 1, Duration::from_secs(90));

    // No action done twice, no error from two leaders: in the database's own log.
    let (statements, errors) = ddl_since(log_start);
    assert!(!statements.is_empty(), "the DDL of the pods is logged");
    assert_each_ddl_once(&statements);
    let conflicts: Vec<_> = errors
        .iter()
        .filter(|e| {
            e.contains("already exists") || e.contains("duplicate key") || e.contains("deadlock")
        })
        .collect();
    assert!(
        conflicts.is_empty(),
        "errors two leaders would cause: {conflicts:#?}"
    );

    // --- 1000 policies: the pods stay under their memory limit ----------------------------
    psql(
        "postgres",
        "DROP DATABASE IF EXISTS node_scale WITH (FORCE)",
    );
    psql("postgres", "CREATE DATABASE node_scale OWNER node_app");
    psql(
        "node_scale",
        &format!(
            "SET ROLE node_app; DO $$ BEGIN FOR i IN 1..{SCALE} LOOP
               EXECUTE format('CREATE TABLE public.t%s (id bigint NOT NULL, at timestamptz NOT NULL) PARTITION BY RANGE (at)', i);
             END LOOP; END $$"
        ),
    );
    let _ = Command::new(env("PGPART_TEST_KUBECTL"))
        .args(["create", "namespace", SCALE_NS])
        .output();
    let scale_uri = uri.replace("/node_demo?", "/node_scale?");
    kubectl(&[
        "-n",
        SCALE_NS,
        "create",
        "secret",
        "generic",
        "scale-db",
        "--from-literal",
        &scale_uri,
    ]);
    let scaling = Instant::now();
    let docs: String = (1..=SCALE)
        .map(|i| daily_policy(&format!("t{i}"), &format!("public.t{i}"), "scale-db"))
        .collect();
    kubectl_apply(SCALE_NS, &docs);
    wait_policies_ready(SCALE_NS, SCALE, Duration::from_secs(300));
    let scaled = scaling.elapsed();
    let memory = memory_of_pods();
    assert_eq!(memory.len(), 2, "both pods still there: {memory:?}");
    for (pod, working_set, limit) in &memory {
        assert!(
            working_set < limit,
            "{pod}: working set {working_set} over its limit {limit}"
        );
    }
    let covered = psql(
        "node_scale",
        "SELECT count(*) FILTER (WHERE n >= 4) || ' of ' || count(*) \
         FROM (SELECT count(*) AS n FROM pg_inherits GROUP BY inhparent) AS t",
    );
    assert_eq!(
        covered.trim(),
        format!("{SCALE} of {SCALE}"),
        "tables with today and 3 days ahead"
    );

    // --- helm uninstall: the CRD and policies stay (crds.keep), the database is untouched --
    let before = (partitions("node_demo"), log_len());
    helm_ok(&["uninstall", "pgpart", "-n", NS, "--wait", "--timeout=120s"]);
    wait_for("the pods gone", Duration::from_secs(90), || {
        pods(NS).is_empty().then_some(())
    });
    kubectl(&["get", "crd", "partitionpolicies.pgpart.io"]);
    let kept = kubectl_json(&["-n", APP_NS, "get", "partitionpolicies"]);
    assert_eq!(
        kept["items"].as_array().expect("items").len(),
        examples.len() + 1,
        "policies kept"
    );
    assert_eq!(
        partitions("node_demo"),
        before.0,
        "no partition added or removed by uninstall"
    );
    let (after, _) = ddl_since(before.1);
    assert!(after.is_empty(), "no DDL after uninstall: {after:?}");

    // --- Flux: gitops/flux from git installs the release again -------------------------------
    // The steps' namespaces go first: the new pods start with only gitops/policies to serve.
    for ns in [APP_NS, SCALE_NS] {
        kubectl(&["delete", "namespace", ns, "--wait=false"]);
    }
    wait_for(
        "the steps' namespaces gone",
        Duration::from_secs(180),
        || {
            [APP_NS, SCALE_NS]
                .iter()
                .all(|ns| {
                    !Command::new(env("PGPART_TEST_KUBECTL"))
                        .args(["get", "namespace", ns])
                        .output()
                        .expect("kubectl")
                        .status
                        .success()
                })
                .then_some(())
        },
    );
    let flux_seen = flux_installs_the_release_from_git(&uri, &now, &schema);

    eprintln!(
        "node: {} partitions, takeover {:.1}s after the leader's pod was deleted ({leader} -> {next}), \
         upgraded leader {holder}; {SCALE} policies Ready in {:.0}s, then (pod, working set MiB, \
         limit MiB): {:?}; {flux_seen}",
        before.0,
        takeover.as_secs_f64(),
        scaled.as_secs_f64(),
        memory
            .iter()
            .map(|(pod, ws, limit)| (pod, *ws >> 20, *limit >> 20))
            .collect::<Vec<_>>()
    );
}

const FLUX_NS: &str = "flux-system";
/// Where gitops/flux/controller/helmrelease.yaml installs the release.
const FLUX_TARGET_NS: &str = "pgpart-system";

/// Waits until Flux object `kind/name` (in flux-system) is Ready=True, printing each new
/// set of its conditions; returns it.
#[track_caller]
fn wait_flux_ready(kind: &str, name: &str, limit: Duration) -> Value {
    let mut seen = String::new();
    wait_for(&format!("{kind}/{name} Ready"), limit, || {
        // Not there yet (the HelmRelease comes from git): no conditions.
        let out = kubectl(&[
            "-n",
            FLUX_NS,
            "get",
            kind,
            name,
            "--ignore-not-found",
            "-o",
            "json",
        ]);
        let obj: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let now = flux::conditions(&obj);
        if now != seen {
            eprintln!("node: flux {kind}/{name}:\n{now}");
            seen = now;
        }
        flux::condition(&obj, "Ready")
            .is_some_and(|(s, _, _)| s == "True")
            .then_some(obj)
    })
}

/// All of gitops/flux as a user applies it, from a git repository holding this checkout's
/// charts/ and gitops/ (the HelmRelease's values naming the image built here and the test's
/// clock), reconciled by source-, kustomize- and helm-controller: the chart's pods run on
/// the node, then the policies of gitops/policies are Ready. Deleting the Kustomizations
/// uninstalls it again. Returns a line of what it saw.
fn flux_installs_the_release_from_git(uri: &str, now: &str, schema: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("node-flux");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    flux::install_crds();

    // gitops/policies' tables in a database of their own, and their Secret.
    psql("postgres", "DROP DATABASE IF EXISTS node_flux WITH (FORCE)");
    psql("postgres", "CREATE DATABASE node_flux OWNER node_app");
    psql("node_flux", &format!("SET ROLE node_app;\n{schema}"));
    for ns in [FLUX_NS, "billing"] {
        let _ = Command::new(env("PGPART_TEST_KUBECTL"))
            .args(["create", "namespace", ns])
            .output();
    }
    let billing_uri = uri.replace("/node_demo?", "/node_flux?");
    kubectl(&[
        "-n",
        "billing",
        "create",
        "secret",
        "generic",
        "billing-db",
        "--from-literal",
        &billing_uri,
    ]);
    // The CRD kept by the uninstall is handed to the new release, as charts/pgpart/README.md
    // says; without that the install stops on its ownership metadata.
    kubectl(&[
        "annotate",
        "crd",
        "partitionpolicies.pgpart.io",
        "--overwrite",
        "meta.helm.sh/release-name=pgpart",
        &format!("meta.helm.sh/release-namespace={FLUX_TARGET_NS}"),
    ]);

    let repo = flux::Repo::new(&work, &["charts", "gitops"]);
    let release_file = repo.work.join("gitops/flux/controller/helmrelease.yaml");
    let mut release = flux::yaml_file(&release_file);
    release["spec"]["values"]["image"] =
        json!({"repository": "pgpart.local/pgpart", "tag": "node-test-2"});
    release["spec"]["values"]["extraArgs"] = json!([format!("--now={now}")]);
    std::fs::write(&release_file, release.to_string()).expect("write helmrelease.yaml");
    let commit = repo.commit("pgpart's chart and gitops/, the image of this node");
    let (_gitserve, url) = flux::gitserve(&work);
    let controllers: Vec<flux::Proc> = [
        "source-controller",
        "kustomize-controller",
        "helm-controller",
    ]
    .into_iter()
    .map(|name| flux::controller(name, FLUX_NS, &work))
    .collect();

    let started = Instant::now();
    let mut source = flux::yaml_file(&root.join("gitops/flux/source.yaml"));
    source["spec"]["url"] = json!(url);
    flux::kubectl_apply(&source);
    for file in ["controller.yaml", "policies.yaml"] {
        flux::kubectl_apply(&flux::yaml_file(&root.join("gitops/flux").join(file)));
    }

    let limit = Duration::from_secs(300);
    let helm_release = wait_flux_ready("helmrelease", "pgpart", limit);
    let installed = started.elapsed();
    let (_, reason, message) = flux::condition(&helm_release, "Ready").expect("Ready");
    assert_eq!(reason, "InstallSucceeded", "{message}");
    let running = wait_pods_ready(FLUX_TARGET_NS, 2, "pgpart.local/pgpart:node-test-2");
    let deployment = kubectl_json(&["-n", FLUX_TARGET_NS, "get", "deployment", "pgpart"]);
    assert_eq!(
        deployment["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"], "pgpart",
        "helm-controller installed the Deployment"
    );
    let crd = kubectl_json(&["get", "crd", "partitionpolicies.pgpart.io"]);
    assert_eq!(
        crd["metadata"]["annotations"]["meta.helm.sh/release-namespace"], FLUX_TARGET_NS,
        "the new release owns the kept CRD"
    );
    wait_flux_ready("kustomization", "pgpart-controller", limit);
    let policies = wait_flux_ready("kustomization", "pgpart-policies", limit);
    let applied = started.elapsed();
    assert!(
        policies["status"]["lastAppliedRevision"]
            .as_str()
            .is_some_and(|r| r.ends_with(&commit)),
        "the policies of commit {commit} applied: {}",
        policies["status"]
    );
    let count = kubectl_json(&["-n", "billing", "get", "partitionpolicies"])["items"]
        .as_array()
        .expect("items")
        .len();
    assert_eq!(count, 2, "gitops/policies has two policies");
    wait_policies_ready("billing", count, Duration::from_secs(10));
    let partitions = psql("node_flux", "SELECT count(*) FROM pg_inherits");
    assert!(
        partitions.trim().parse::<u64>().expect("count") > 2,
        "the pods made the policies' partitions: {partitions}"
    );

    // Removing the Kustomizations prunes what they applied: the policies, then the release.
    kubectl(&[
        "-n",
        FLUX_NS,
        "delete",
        "kustomization",
        "pgpart-policies",
        "pgpart-controller",
        "--timeout=120s",
    ]);
    wait_for("the release's pods gone", Duration::from_secs(120), || {
        pods(FLUX_TARGET_NS).is_empty().then_some(())
    });
    let left = kubectl(&["-n", FLUX_NS, "get", "helmreleases", "-o", "name"]);
    assert!(left.trim().is_empty(), "HelmRelease pruned: {left}");
    kubectl(&["-n", FLUX_NS, "delete", "gitrepository", "pgpart"]);
    drop(controllers);
    format!(
        "flux: HelmRelease Ready in {:.0}s (pods {running:?}), the policies' Kustomization Ready \
         in {:.0}s, {} partitions in node_flux",
        installed.as_secs_f64(),
        applied.as_secs_f64(),
        partitions.trim()
    )
}
