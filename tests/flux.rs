//! Flux for real: source-controller and kustomize-controller, built from their Go modules
//! (tools/testenv/flux), reconcile `gitops/flux/source.yaml` and `gitops/flux/policies.yaml`
//! from a git repository served on 127.0.0.1 (gitserve: `git http-backend`), against the
//! test apiserver, with pgpart's controller as a process. The Kustomization reports what
//! its health checks (pgpart's `healthCheckExprs`) make of the policies:
//!
//! * no pgpart running: progressing (the policies have no status yet);
//! * pgpart running: Ready=True, healthy;
//! * a committed policy whose table does not exist: Ready=False, failed early on the
//!   stalled policy (not after the timeout);
//! * that policy removed in the next commit: Ready=True again, the policy pruned.
//!
//! Each test has its own namespace: the Flux objects, the controllers' watch
//! (`RUNTIME_NAMESPACE`, not all namespaces) and, through `spec.targetNamespace`, the
//! policies. The HelmRelease of `gitops/flux/controller.yaml` needs a node to become Ready;
//! its Kustomization is left out here (so is `dependsOn`, which names it).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use support::controller::{self as ctl, Controller, apply, eventually, uri_secret};
use support::kube::{self as testkube, TestNamespace};
use support::pg;

const WAIT: Duration = Duration::from_secs(120);

fn flux_dir() -> PathBuf {
    PathBuf::from(std::env::var("PGPART_TEST_FLUX_DIR").unwrap_or_else(|_| {
        panic!("PGPART_TEST_FLUX_DIR is not set: run in the test environment (scripts/testenv up)")
    }))
}

fn kubectl() -> Command {
    Command::new(std::env::var("PGPART_TEST_KUBECTL").unwrap_or_else(|_| "kubectl".into()))
}

#[track_caller]
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} exited {}:\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kubectl apply` of one object (JSON is YAML).
fn kubectl_apply(obj: &Value) {
    let mut child = kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("kubectl apply");
    std::io::Write::write_all(
        child.stdin.as_mut().expect("stdin"),
        obj.to_string().as_bytes(),
    )
    .expect("write");
    assert!(child.wait().expect("kubectl").success(), "apply {obj}");
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A child process killed (and reaped) on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(bin: &Path, args: &[String], ns: &str, log: &Path) -> Proc {
    let log = std::fs::File::create(log).expect("log file");
    Proc(
        Command::new(bin)
            .args(args)
            .env("KUBECONFIG", testkube::kubeconfig_path())
            .env("RUNTIME_NAMESPACE", ns)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
    )
}

/// Flux controller `name` out of cluster, on free loopback ports, watching only `ns`;
/// its log is WORK/NAME.log.
fn flux_controller(flux: &Path, name: &str, extra: &[String], ns: &str, work: &Path) -> Proc {
    let mut args = vec![
        format!("--metrics-addr=127.0.0.1:{}", ctl::free_port()),
        format!("--health-addr=127.0.0.1:{}", ctl::free_port()),
        "--enable-leader-election=false".into(),
        "--watch-all-namespaces=false".into(),
        "--log-encoding=console".into(),
    ];
    args.extend_from_slice(extra);
    spawn(
        &flux.join(name),
        &args,
        ns,
        &work.join(format!("{name}.log")),
    )
}

/// A working copy whose commits are pushed to a bare repository that gitserve serves.
struct Repo {
    work: PathBuf,
    bare: PathBuf,
}

impl Repo {
    fn git(&self, args: &[&str]) -> String {
        run(Command::new("git")
            .arg("-C")
            .arg(&self.work)
            .args([
                "-c",
                "user.name=pgpart-tests",
                "-c",
                "user.email=tests@pgpart.invalid",
            ])
            .args(args))
    }

    /// Commits everything and pushes it; returns the commit.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["push", "-q", self.bare.to_str().expect("path"), "main"]);
        self.git(&["rev-parse", "HEAD"]).trim().to_owned()
    }
}

/// `kubectl get` in `ns` as JSON: one object (`kind name`) or a list (`kind`).
fn get(ns: &str, what: &[&str]) -> Value {
    let out = run(kubectl()
        .args(["-n", ns, "get"])
        .args(what)
        .args(["-o", "json"]));
    serde_json::from_str(&out).expect("kubectl JSON")
}

/// (status, reason, message) of condition `type_`.
fn condition(obj: &Value, type_: &str) -> Option<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
            (s("status"), s("reason"), s("message"))
        })
}

fn conditions(obj: &Value) -> String {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}={} {}: {}",
                c["type"], c["status"], c["reason"], c["message"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What `flux reconcile source git` does: ask for a reconcile now.
fn request_reconcile(ns: &str, kind: &str, name: &str) {
    let nanos = std::time::UNIX_EPOCH.elapsed().expect("clock").as_nanos();
    let at = format!("reconcile.fluxcd.io/requestedAt={nanos}");
    run(kubectl().args(["-n", ns, "annotate", "--overwrite", kind, name, &at]));
}

/// Waits until the Kustomization has tried `revision` and `accept` holds; returns it.
async fn wait_kustomization(
    ns: &str,
    revision: &str,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let accept = &accept;
    eventually(what, WAIT, || async move {
        let k = get(ns, &["kustomization", "pgpart-policies"]);
        let tried = k["status"]["lastAttemptedRevision"]
            .as_str()
            .unwrap_or_default();
        if tried.ends_with(revision) && accept(&k) {
            Ok(k)
        } else {
            Err(format!("tried {tried}:\n{}", conditions(&k)))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_reports_the_policies_from_git_progressing_healthy_and_failed() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let flux = flux_dir();
    let client = testkube::client().await;
    ctl::install_crd(&client).await;
    run(kubectl()
        .args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(flux.join("crds")));
    run(kubectl().args([
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gitrepositories.source.toolkit.fluxcd.io",
        "crd/kustomizations.kustomize.toolkit.fluxcd.io",
    ]));
    let ns_guard = TestNamespace::new(&client, "flux").await;
    let ns = ns_guard.name().to_owned();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&ns);
    std::fs::create_dir_all(&work).expect("work dir");

    // The repository: this checkout's gitops/policies, on branch main.
    let repo = Repo {
        work: work.join("checkout"),
        bare: work.join("git/pgpart.git"),
    };
    run(Command::new("git")
        .args(["init", "-q", "--bare", "-b", "main"])
        .arg(&repo.bare));
    run(Command::new("git")
        .args(["init", "-q", "-b", "main"])
        .arg(&repo.work));
    std::fs::create_dir_all(repo.work.join("gitops")).expect("mkdir");
    run(Command::new("cp")
        .arg("-r")
        .arg(root.join("gitops/policies"))
        .arg(repo.work.join("gitops/")));
    let first = repo.commit("the policies of gitops/policies");
    let addr_file = work.join("git.addr");
    let _gitserve = spawn(
        &flux.join("gitserve"),
        &[
            "-root".into(),
            work.join("git").display().to_string(),
            "-addr-file".into(),
            addr_file.display().to_string(),
        ],
        &ns,
        &work.join("gitserve.log"),
    );
    let addr = eventually("gitserve listening", WAIT, || {
        let addr_file = &addr_file;
        async move {
            std::fs::read_to_string(addr_file)
                .map(|a| a.trim().to_owned())
                .map_err(|e| e.to_string())
        }
    })
    .await;

    // The controllers, watching this namespace only.
    std::fs::create_dir_all(work.join("storage")).expect("storage dir");
    let storage = ctl::free_port();
    let source_controller = flux_controller(
        &flux,
        "source-controller",
        &[
            format!("--storage-path={}", work.join("storage").display()),
            format!("--storage-addr=127.0.0.1:{storage}"),
            format!("--storage-adv-addr=127.0.0.1:{storage}"),
        ],
        &ns,
        &work,
    );
    let kustomize_controller = flux_controller(&flux, "kustomize-controller", &[], &ns, &work);

    // gitops/flux's objects, in this namespace: the source at the local server; the
    // policies' Kustomization without dependsOn, its policies put in this namespace.
    let mut source = yaml_file(&root.join("gitops/flux/source.yaml"));
    source["metadata"]["namespace"] = json!(ns);
    source["spec"]["url"] = json!(format!("http://{addr}/pgpart.git"));
    kubectl_apply(&source);
    let mut kustomization = yaml_file(&root.join("gitops/flux/policies.yaml"));
    kustomization["metadata"]["namespace"] = json!(ns);
    kustomization["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("dependsOn");
    kustomization["spec"]["targetNamespace"] = json!(ns);
    kubectl_apply(&kustomization);

    // 1. No pgpart: the policies are applied and have no status; the Kustomization waits.
    let k = wait_kustomization(&ns, &first, "progressing: health checks running", |k| {
        condition(k, "Reconciling")
            .is_some_and(|(s, _, m)| s == "True" && m.contains("health checks"))
            && condition(k, "Ready").is_some_and(|(s, _, _)| s == "Unknown")
    })
    .await;
    eprintln!("flux, no pgpart:\n{}", conditions(&k));
    let policies = get(&ns, &["partitionpolicies"]);
    let items = policies["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "gitops/policies has two policies");
    assert!(
        items.iter().all(|p| p["status"].is_null()),
        "no status yet: {policies}"
    );

    // 2. pgpart runs (its tables and Secret exist): healthy.
    let db = pg::TestDb::create(&pg::server(17)).await;
    db.client
        .batch_execute(&std::fs::read_to_string(root.join("examples/schema.sql")).expect("schema"))
        .await
        .expect("examples/schema.sql");
    let secrets = ns_guard.api::<k8s_openapi::api::core::v1::Secret>();
    apply(&secrets, &uri_secret("billing-db", &db.url))
        .await
        .expect("the Secret");
    let controller = Controller::start(&ns).await;
    let k = wait_kustomization(&ns, &first, "Ready=True, healthy", |k| {
        condition(k, "Ready").is_some_and(|(s, _, _)| s == "True")
            && condition(k, "Healthy").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    eprintln!("flux, pgpart running:\n{}", conditions(&k));

    // 3. A commit adds a policy whose table does not exist: failed, before the timeout.
    std::fs::write(
        repo.work.join("gitops/policies/broken.yaml"),
        "apiVersion: pgpart.io/v1alpha1\nkind: PartitionPolicy\nmetadata:\n  name: broken\n  namespace: billing\nspec:\n  database:\n    secretRef:\n      name: billing-db\n  table: public.no_such_table\n  range:\n    interval: 1 day\n",
    )
    .expect("write broken.yaml");
    let list = repo.work.join("gitops/policies/kustomization.yaml");
    let text = std::fs::read_to_string(&list).expect("kustomization.yaml");
    let with_broken = text.replacen("  - events.yaml\n", "  - events.yaml\n  - broken.yaml\n", 1);
    assert_ne!(with_broken, text, "kustomization.yaml lists events.yaml");
    std::fs::write(&list, with_broken).expect("write kustomization.yaml");
    let second = repo.commit("a policy for a table that does not exist");
    request_reconcile(&ns, "gitrepository", "pgpart");
    let k = wait_kustomization(&ns, &second, "Ready=False, the stalled policy named", |k| {
        condition(k, "Ready").is_some_and(|(s, r, m)| {
            s == "False"
                && r == "HealthCheckFailed"
                && m.contains("stalled")
                && m.contains("broken")
        })
    })
    .await;
    eprintln!("flux, a broken policy committed:\n{}", conditions(&k));
    let broken = get(&ns, &["partitionpolicy", "broken"]);
    assert!(
        condition(&broken, "Stalled").is_some_and(|(s, r, _)| s == "True" && r == "TableMissing"),
        "{}",
        conditions(&broken)
    );

    // 4. The next commit removes it: healthy again, the policy pruned.
    std::fs::remove_file(repo.work.join("gitops/policies/broken.yaml")).expect("rm");
    std::fs::write(&list, text).expect("write kustomization.yaml");
    let third = repo.commit("remove the broken policy");
    request_reconcile(&ns, "gitrepository", "pgpart");
    wait_kustomization(&ns, &third, "Ready=True after the removal", |k| {
        condition(k, "Ready").is_some_and(|(s, _, _)| s == "True")
    })
    .await;
    let left = get(&ns, &["partitionpolicies"]);
    assert_eq!(
        left["items"].as_array().expect("items").len(),
        2,
        "broken pruned: {left}"
    );

    let mut controller = controller;
    controller.assert_running();
    drop((controller, source_controller, kustomize_controller));
    // Without the controllers, nothing removes Flux's finalizers: drop them so the namespace goes.
    for (kind, name) in [
        ("kustomization", "pgpart-policies"),
        ("gitrepository", "pgpart"),
    ] {
        run(kubectl().args([
            "-n",
            &ns,
            "patch",
            kind,
            name,
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ]));
    }
    ns_guard.cleanup().await;
    db.drop_db().await;
}
