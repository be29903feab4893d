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
//! its Kustomization is left out here (so is `dependsOn`, which names it): tests/node.rs
//! reconciles all of `gitops/flux`, helm-controller included, on the node.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::controller::{self as ctl, Controller, apply, eventually, uri_secret};
use support::flux::{
    self, Repo, condition, conditions, get, kubectl_apply, request_reconcile, yaml_file,
};
use support::kube::{self as testkube, TestNamespace};
use support::pg;

const WAIT: Duration = Duration::from_secs(120);

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
    let client = testkube::client().await;
    ctl::install_crd(&client).await;
    flux::install_crds();
    let ns_guard = TestNamespace::new(&client, "flux").await;
    let ns = ns_guard.name().to_owned();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(&ns);
    std::fs::create_dir_all(&work).expect("work dir");

    // The repository: this checkout's gitops/policies, on branch main.
    let repo = Repo::new(&work, &["gitops/policies"]);
    let first = repo.commit("the policies of gitops/policies");
    let (_gitserve, url) = flux::gitserve(&work);

    // The controllers, watching this namespace only.
    let source_controller = flux::controller("source-controller", &ns, &work);
    let kustomize_controller = flux::controller("kustomize-controller", &ns, &work);

    // gitops/flux's objects, in this namespace: the source at the local server; the
    // policies' Kustomization without dependsOn, its policies put in this namespace.
    let mut source = yaml_file(&root.join("gitops/flux/source.yaml"));
    source["metadata"]["namespace"] = json!(ns);
    source["spec"]["url"] = json!(url);
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
    flux::drop_finalizers(
        &ns,
        &[
            ("kustomization", "pgpart-policies"),
            ("gitrepository", "pgpart"),
        ],
    );
    ns_guard.cleanup().await;
    db.drop_db().await;
}
