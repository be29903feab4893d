//! Table-driven bad input: every `tests/corpus/*.yaml` is a malformed PartitionPolicy
//! (wrong shapes and values of each field, hostile table names, contradictions, policies
//! that do not match their table), with a first line `# expect: <field>`.
//!
//! * `pgpart plan` and `pgpart apply` exit 2 and name the field, on PostgreSQL 15 and 17.
//! * `kubectl apply` (strict field validation) refuses it naming the field, or, if the
//!   apiserver accepts it, the controller sets Stalled=True with a message naming the field.
//! * The database catalog (with OIDs) is unchanged in all cases.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use pgpart::policy::PartitionPolicy;
use support::cli::{self, PolicyFile};
use support::clock;
use support::controller::{self as ctl, Controller, apply, condition, uri_secret};
use support::kube::{self as testkube, TestNamespace};
use support::pg::{self, TestDb};

struct Case {
    name: String,
    expect: String,
    yaml: String,
}

fn corpus() -> Vec<Case> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus"));
    let mut cases: Vec<Case> = std::fs::read_dir(&dir)
        .expect("read tests/corpus")
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| {
            let yaml = std::fs::read_to_string(&p).expect("read corpus file");
            let expect = yaml
                .lines()
                .find_map(|l| l.strip_prefix("# expect:"))
                .unwrap_or_else(|| panic!("{} has no `# expect: <field>` line", p.display()))
                .trim()
                .to_owned();
            Case {
                name: p.file_stem().unwrap().to_string_lossy().into_owned(),
                expect,
                yaml,
            }
        })
        .collect();
    cases.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(cases.len() >= 30, "only {} corpus cases", cases.len());
    cases
}

/// Tables the corpus points at.
async fn fixtures(db: &TestDb) {
    let month = clock::month_start(clock::now());
    let this_month = clock::month_partition_sql("public", "events", month);
    db.client
        .batch_execute(&format!(
            "CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, payload text)
                 PARTITION BY RANGE (at);
             {this_month}
             INSERT INTO public.events (at, payload) VALUES ('{month} 00:00:00+00', 'x');
             CREATE TABLE public.regions (id bigint NOT NULL, region text NOT NULL) PARTITION BY LIST (region);
             CREATE TABLE public.regions_eu PARTITION OF public.regions FOR VALUES IN ('de', 'fr');
             CREATE TABLE public.items (id bigint NOT NULL, name text) PARTITION BY RANGE (id);
             CREATE TABLE public.hashed (id bigint NOT NULL) PARTITION BY HASH (id);
             CREATE TABLE public.hashed_0 PARTITION OF public.hashed FOR VALUES WITH (MODULUS 4, REMAINDER 0);
             CREATE TABLE public.hashed_1 PARTITION OF public.hashed FOR VALUES WITH (MODULUS 4, REMAINDER 1);
             CREATE TABLE public.hashed_2 PARTITION OF public.hashed FOR VALUES WITH (MODULUS 4, REMAINDER 2);
             CREATE TABLE public.hashed_3 PARTITION OF public.hashed FOR VALUES WITH (MODULUS 4, REMAINDER 3);
             CREATE TABLE public.plain (id bigint NOT NULL, at timestamptz NOT NULL);
             CREATE TABLE public.shipments (id uuid NOT NULL) PARTITION BY RANGE (id);",
        ))
        .await
        .expect("corpus fixtures");
}

async fn cli_corpus(major: u32) {
    let db = TestDb::create(&pg::server(major)).await;
    fixtures(&db).await;
    let before = cli::snapshot(&db.client, true).await;
    let mut failures = Vec::new();
    for case in corpus() {
        let file = PolicyFile::new(&case.yaml);
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
            if run.code != 2 || !run.both().contains(&case.expect) || run.panicked() {
                failures.push(format!(
                    "{} ({cmd}): expected exit 2 naming {:?}, got {}\n{}",
                    case.name,
                    case.expect,
                    run.code,
                    run.both()
                ));
            }
        }
        let now = cli::snapshot(&db.client, true).await;
        if now != before {
            let new: Vec<_> = now.iter().filter(|l| !before.contains(l)).collect();
            let gone: Vec<_> = before.iter().filter(|l| !now.contains(l)).collect();
            failures.push(format!(
                "{}: the catalog changed: new {new:#?} gone {gone:#?}",
                case.name
            ));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_refuses_every_corpus_case_pg15() {
    cli_corpus(15).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_refuses_every_corpus_case_pg17() {
    cli_corpus(17).await
}

/// `kubectl apply -f -` of `doc` (JSON) in `ns`: Ok(output) or Err(output).
async fn kubectl_apply(ns: &str, doc: &serde_json::Value) -> Result<String, String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("kubectl")
        .args(["--kubeconfig"])
        .arg(testkube::kubeconfig_path())
        .args(["-n", ns, "apply", "--validate=strict", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run kubectl");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(serde_json::to_string(doc).unwrap().as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_refuses_or_controller_stalls_every_corpus_case() {
    let client = testkube::client().await;
    ctl::install_crd(&client).await;
    let ns = TestNamespace::new(&client, "corpus").await;
    let db = TestDb::create(&pg::server(17)).await;
    fixtures(&db).await;
    let before = cli::snapshot(&db.client, true).await;
    apply(&ns.api::<Secret>(), &uri_secret("db", &db.url))
        .await
        .expect("apply the Secret");

    // One policy at a time: two policies on one table would only show Conflict.
    let controller = Controller::start(ns.name()).await;
    let policies = ns.api::<PartitionPolicy>();
    let mut failures = Vec::new();
    let (mut refused, mut accepted) = (0, 0);
    for case in corpus() {
        let mut doc: serde_json::Value =
            serde_yaml_ng::from_str(&case.yaml).expect("corpus file is YAML");
        if doc["spec"].is_object() {
            doc["spec"]["database"] = serde_json::json!({ "secretRef": { "name": "db" } });
        }
        if let Err(msg) = kubectl_apply(ns.name(), &doc).await {
            refused += 1;
            if !msg.contains(&case.expect) {
                failures.push(format!(
                    "{}: refused without naming {:?}: {msg}",
                    case.name, case.expect
                ));
            }
            continue;
        }
        accepted += 1;
        let name = case.name.replace('_', "-");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let last = match policies.get(&name).await {
                Ok(p) => match condition(&p, "Stalled") {
                    Some(c) if c.status == "True" && c.message.contains(&case.expect) => break,
                    _ => ctl::conditions_summary(&p),
                },
                Err(e) => e.to_string(),
            };
            if std::time::Instant::now() > deadline {
                failures.push(format!(
                    "{}: accepted by the apiserver, but not Stalled=True naming {:?}: {last}",
                    case.name, case.expect
                ));
                break;
            }
            tokio::time::sleep(ctl::POLL).await;
        }
        policies
            .delete(&name, &Default::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while policies.get_opt(&name).await.unwrap().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} is not deleted"
            );
            tokio::time::sleep(ctl::POLL).await;
        }
    }
    drop(controller);
    cli::assert_same_snapshot(
        &before,
        &cli::snapshot(&db.client, true).await,
        "kube corpus",
    );
    eprintln!(
        "corpus through the apiserver: {refused} refused, {accepted} accepted and left to the controller"
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ns.cleanup().await;
    db.drop_db().await;
}
