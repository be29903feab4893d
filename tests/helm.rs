//! The Helm chart `charts/pgpart`: it lints, renders both RBAC shapes, ships the CRD that
//! `pgpart crd` prints, installs into the real test apiserver, and its ServiceAccount is
//! enough for `pgpart controller` (run locally with that account's token and the chart's
//! own args) to reconcile a policy end to end, and nothing more.
//!
//! Needs the helm binary (`KUBE_TESTENV_HELM_BIN`, or `~/.cache/pgpart/bin/helm-*`),
//! `PGPART_TEST_KUBECONFIG` and `PGPART_TEST_PG17_URL`. A missing one fails the test.

mod support;

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use pgpart::policy::PartitionPolicy;
use serde_json::json;
use serde_yaml_ng::Value;
use support::controller::{self as ctl, PGPART, WAIT, apply, uri_secret};
use support::helm::{
    self, Release, SaController, controller_args, controller_container, one, release_name,
    service_account_token, template, template_text, token_kubeconfig,
};
use support::kube::{self as testkube, TestNamespace};
use support::pg::{self, TestDb};

const CRD_COPY: &str = "charts/pgpart/files/crd.yaml";

fn pgpart_crd() -> String {
    let out = std::process::Command::new(PGPART)
        .arg("crd")
        .output()
        .expect("run pgpart crd");
    assert!(
        out.status.success(),
        "pgpart crd exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("pgpart crd prints UTF-8")
}

/// Panic naming the first differing line of two texts.
#[track_caller]
fn assert_same_text(got: &str, want: &str, what: &str, fix: &str) {
    if got == want {
        return;
    }
    let first = got
        .lines()
        .zip(want.lines())
        .position(|(a, b)| a != b)
        .unwrap_or(got.lines().count().min(want.lines().count()));
    panic!(
        "{what} differs from `pgpart crd` from line {} (got {:?}, `pgpart crd` prints {:?}). {fix}",
        first + 1,
        got.lines().nth(first).unwrap_or("<end>"),
        want.lines().nth(first).unwrap_or("<end>"),
    );
}

/// One RBAC rule: (apiGroups, resources, resourceNames, verbs), each sorted.
type Rule = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

/// The rules of a Role or ClusterRole as (apiGroups, resources, resourceNames, verbs),
/// sorted, for exact comparison.
fn rules(doc: &Value) -> Vec<Rule> {
    let strings = |v: &Value| -> Vec<String> {
        let mut s: Vec<String> = v
            .as_sequence()
            .map(|s| s.iter().map(|x| x.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default();
        s.sort();
        s
    };
    let mut out: Vec<_> = doc["rules"]
        .as_sequence()
        .expect("rules")
        .iter()
        .map(|r| {
            (
                strings(&r["apiGroups"]),
                strings(&r["resources"]),
                strings(&r["resourceNames"]),
                strings(&r["verbs"]),
            )
        })
        .collect();
    out.sort();
    out
}

fn rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Rule {
    let v = |s: &[&str]| {
        let mut v: Vec<String> = s.iter().map(|x| x.to_string()).collect();
        v.sort();
        v
    };
    (v(groups), v(resources), v(names), v(verbs))
}

/// Exactly what the controller does in a watched namespace, with Secrets `get` only or
/// (`watched`) also listed and watched for `--secret-watch`.
fn watch_rules(watched: bool) -> Vec<Rule> {
    let secrets: &[&str] = if watched {
        &["get", "list", "watch"]
    } else {
        &["get"]
    };
    let mut r = vec![
        rule(
            &["pgpart.io"],
            &["partitionpolicies"],
            &[],
            &["get", "list", "watch"],
        ),
        rule(
            &["pgpart.io"],
            &["partitionpolicies/status"],
            &[],
            &["patch"],
        ),
        rule(&[""], &["secrets"], &[], secrets),
        rule(&["events.k8s.io"], &["events"], &[], &["create", "patch"]),
    ];
    r.sort();
    r
}

fn lease_rules(lease: &str) -> Vec<Rule> {
    let mut r = vec![
        rule(&["coordination.k8s.io"], &["leases"], &[], &["create"]),
        rule(
            &["coordination.k8s.io"],
            &["leases"],
            &[lease],
            &["get", "patch", "update"],
        ),
    ];
    r.sort();
    r
}

/// The value of `--flag=value` in `args`, if present.
fn flag<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let prefix = format!("{flag}=");
    args.iter().find_map(|a| a.strip_prefix(&prefix))
}

fn flag_all<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    let prefix = format!("{flag}=");
    args.iter()
        .filter_map(|a| a.strip_prefix(&prefix))
        .collect()
}

// Rendering -----------------------------------------------------------------------------------

#[test]
fn helm_lint_passes_with_defaults_and_with_every_option() {
    let chart = helm::chart_dir();
    let chart = chart.to_str().unwrap();
    helm::helm_ok(&["lint", chart, "--strict"]);
    helm::helm_ok(&[
        "lint",
        chart,
        "--strict",
        "--set",
        "watchNamespaces={billing,telemetry}",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "crds.install=false",
        "--set",
        "replicas=1",
        "--set",
        "leaderElection.enabled=false",
    ]);
}

#[test]
fn template_without_watch_namespaces_grants_a_cluster_role() {
    let docs = template("ops", "pgpart-system", &[]);
    let name = "pgpart-system-ops-pgpart";

    // RBAC: one ClusterRole with exactly what the controller uses, bound to the chart's SA;
    // the only Role is the leader-election one in the release namespace.
    let cr = one(&docs, "ClusterRole");
    assert_eq!(helm::name(cr), name);
    assert_eq!(
        rules(cr),
        watch_rules(false),
        "Secrets: get only by default"
    );
    let crb = one(&docs, "ClusterRoleBinding");
    assert_eq!(crb["roleRef"]["name"].as_str(), Some(name));
    assert_eq!(crb["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    let subjects = crb["subjects"].as_sequence().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"].as_str(), Some("ServiceAccount"));
    assert_eq!(subjects[0]["name"].as_str(), Some("ops-pgpart"));
    assert_eq!(subjects[0]["namespace"].as_str(), Some("pgpart-system"));
    let role = one(&docs, "Role");
    assert_eq!(helm::namespace(role), "pgpart-system");
    assert_eq!(rules(role), lease_rules("ops-pgpart"));
    let sa = one(&docs, "ServiceAccount");
    assert_eq!(helm::name(sa), "ops-pgpart");

    // The CRD is in by default, kept on uninstall.
    let crd = one(&docs, "CustomResourceDefinition");
    assert_eq!(helm::name(crd), "partitionpolicies.pgpart.io");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"].as_str(),
        Some("keep")
    );

    // The Deployment: two replicas with leader election, all namespaces.
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"].as_u64(), Some(2));
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"].as_str(), Some("ops-pgpart"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(pod["securityContext"]["runAsUser"].as_u64(), Some(65532));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    let c = controller_container(&docs);
    assert_eq!(
        c["image"].as_str(),
        Some("pgpart:0.1.0"),
        "tag defaults to appVersion"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"].as_bool(), Some(true));
    assert_eq!(sc["runAsUser"].as_u64(), Some(65532));
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    assert_eq!(
        sc["seccompProfile"]["type"].as_str(),
        Some("RuntimeDefault")
    );
    assert!(
        c["resources"]["requests"]["memory"].is_string(),
        "resources: {c:?}"
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/healthz")
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"]["port"].as_str(),
        Some("metrics")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/readyz")
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"]["port"].as_str(),
        Some("metrics")
    );
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(8080));
    let env: Vec<(&str, &str)> = c["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .unwrap_or(""),
            )
        })
        .collect();
    assert!(env.contains(&("POD_NAME", "metadata.name")), "{env:?}");
    assert!(
        env.contains(&("POD_NAMESPACE", "metadata.namespace")),
        "{env:?}"
    );

    let args = controller_args(&docs);
    assert_eq!(args[0], "controller");
    assert!(flag_all(&args, "--namespace").is_empty(), "{args:?}");
    assert_eq!(flag(&args, "--leader-elect"), Some("true"));
    assert_eq!(flag(&args, "--lease-namespace"), Some("pgpart-system"));
    assert_eq!(flag(&args, "--lease-name"), Some("ops-pgpart"));
    assert_eq!(flag(&args, "--metrics-addr"), Some("0.0.0.0:8080"));
    assert_eq!(flag(&args, "--pool-size"), Some("2"));
    assert_eq!(flag(&args, "--reconcile-concurrency"), Some("16"));
    assert_eq!(flag(&args, "--log-format"), Some("json"));
    assert_eq!(flag(&args, "--log-level"), Some("info"));

    // The metrics Service selects the pods by port name.
    let svc = one(&docs, "Service");
    assert_eq!(
        svc["spec"]["ports"][0]["targetPort"].as_str(),
        Some("metrics")
    );
    assert_eq!(
        svc["spec"]["selector"]["app.kubernetes.io/instance"].as_str(),
        Some("ops")
    );

    // Nothing for the Prometheus Operator unless asked.
    assert!(helm::of_kind(&docs, "ServiceMonitor").is_empty());
    assert!(helm::of_kind(&docs, "PrometheusRule").is_empty());
}

#[test]
fn template_with_watch_namespaces_grants_roles_in_those_namespaces_only() {
    let docs = template(
        "ops",
        "pgpart-system",
        &[
            "watchNamespaces={billing,telemetry}",
            "logLevel=debug",
            "logFormat=text",
            "poolSize=4",
            "image.repository=registry.example/pgpart",
            "image.tag=v9",
            "nodeSelector.disk=ssd",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "resources.limits.memory=512Mi",
        ],
    );
    assert!(helm::of_kind(&docs, "ClusterRole").is_empty());
    assert!(helm::of_kind(&docs, "ClusterRoleBinding").is_empty());

    let roles = helm::of_kind(&docs, "Role");
    let mut where_: Vec<&str> = roles.iter().map(|r| helm::namespace(r)).collect();
    where_.sort();
    assert_eq!(where_, ["billing", "pgpart-system", "telemetry"]);
    for r in &roles {
        match helm::namespace(r) {
            "pgpart-system" => assert_eq!(rules(r), lease_rules("ops-pgpart")),
            _ => assert_eq!(
                rules(r),
                watch_rules(true),
                "Role in {}",
                helm::namespace(r)
            ),
        }
    }
    for b in helm::of_kind(&docs, "RoleBinding") {
        assert!(
            roles.iter().any(|r| {
                helm::namespace(r) == helm::namespace(b)
                    && Some(helm::name(r)) == b["roleRef"]["name"].as_str()
            }),
            "RoleBinding {}/{} names no rendered Role",
            helm::namespace(b),
            helm::name(b)
        );
        assert_eq!(b["subjects"][0]["name"].as_str(), Some("ops-pgpart"));
        assert_eq!(
            b["subjects"][0]["namespace"].as_str(),
            Some("pgpart-system")
        );
    }
    assert_eq!(helm::of_kind(&docs, "RoleBinding").len(), 3);

    let args = controller_args(&docs);
    assert_eq!(flag_all(&args, "--namespace"), ["billing", "telemetry"]);
    assert_eq!(flag(&args, "--secret-watch"), Some("all"));
    assert_eq!(flag(&args, "--log-level"), Some("debug"));
    assert_eq!(flag(&args, "--log-format"), Some("text"));
    assert_eq!(flag(&args, "--pool-size"), Some("4"));
    let c = controller_container(&docs);
    assert_eq!(c["image"].as_str(), Some("registry.example/pgpart:v9"));
    assert_eq!(c["resources"]["limits"]["memory"].as_str(), Some("512Mi"));
    let pod = &one(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["disk"].as_str(), Some("ssd"));
    assert_eq!(pod["tolerations"][0]["key"].as_str(), Some("dedicated"));
}

#[test]
fn template_secret_watch_sets_the_flag_and_the_secret_verbs() {
    for (sets, watch, watched) in [
        (&[][..], "none", false),
        (&["secretWatch=labeled"][..], "labeled", true),
        (&["secretWatch=all"][..], "all", true),
        (
            &["watchNamespaces={billing}", "secretWatch=none"][..],
            "none",
            false,
        ),
        (
            &["watchNamespaces={billing}", "secretWatch=labeled"][..],
            "labeled",
            true,
        ),
    ] {
        let docs = template("ops", "pgpart-system", sets);
        assert_eq!(
            flag(&controller_args(&docs), "--secret-watch"),
            Some(watch),
            "{sets:?}"
        );
        let role = match helm::of_kind(&docs, "ClusterRole").first() {
            Some(cr) => *cr,
            None => *helm::of_kind(&docs, "Role")
                .iter()
                .find(|r| helm::namespace(r) == "billing")
                .expect("a Role in billing"),
        };
        assert_eq!(rules(role), watch_rules(watched), "{sets:?}");
    }
}

#[test]
fn template_without_leader_election_runs_one_replica_and_no_lease_role() {
    let docs = template("ops", "ns", &["leaderElection.enabled=false", "replicas=1"]);
    assert_eq!(
        one(&docs, "Deployment")["spec"]["replicas"].as_u64(),
        Some(1)
    );
    let args = controller_args(&docs);
    assert_eq!(flag(&args, "--leader-elect"), Some("false"));
    assert!(flag(&args, "--lease-name").is_none(), "{args:?}");
    assert!(helm::of_kind(&docs, "Role").is_empty());
}

#[test]
fn template_refuses_bad_values() {
    let chart = helm::chart_dir();
    let chart = chart.to_str().unwrap();
    let refused = |sets: &[&str], says: &str| {
        let mut args = vec!["template", "x", chart];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = helm::helm(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm template {sets:?} should fail");
        assert!(stderr.contains(says), "helm template {sets:?}: {stderr}");
    };
    refused(
        &["leaderElection.enabled=false"],
        "replicas > 1 needs leaderElection.enabled=true",
    );
    refused(&["logFormat=xml"], "logFormat");
    refused(&["poolSize=0"], "poolSize");
    refused(&["watchNamespaces={Not_A_Namespace}"], "watchNamespaces");
    refused(&["replica=3"], "replica");
    refused(&["secretWatch=sometimes"], "secretWatch");
}

#[test]
fn monitoring_templates_render_a_service_monitor_and_the_three_alerts() {
    let docs = template(
        "ops",
        "mon",
        &[
            "serviceMonitor.enabled=true",
            "prometheusRule.enabled=true",
            "prometheusRule.coverageAheadSeconds=2678400",
        ],
    );
    let sm = one(&docs, "ServiceMonitor");
    assert_eq!(sm["spec"]["endpoints"][0]["port"].as_str(), Some("metrics"));
    assert_eq!(
        sm["spec"]["endpoints"][0]["path"].as_str(),
        Some("/metrics")
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"].as_str(),
        Some("ops")
    );
    let rule = one(&docs, "PrometheusRule");
    let rules = rule["spec"]["groups"][0]["rules"].as_sequence().unwrap();
    let expr = |alert: &str| -> String {
        rules
            .iter()
            .find(|r| r["alert"].as_str() == Some(alert))
            .unwrap_or_else(|| panic!("no alert {alert}"))["expr"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let coverage = expr("PgpartPartitionCoverageLow");
    assert!(
        coverage.contains("pgpart_coverage_ahead_seconds") && coverage.ends_with("< 2678400"),
        "{coverage}"
    );
    let default_rows = expr("PgpartDefaultPartitionHasRows");
    assert!(
        default_rows.contains("pgpart_default_partition_rows") && default_rows.ends_with("> 0"),
        "{default_rows}"
    );
    let errors = expr("PgpartReconcileFailing");
    assert!(
        errors.contains("increase(pgpart_reconcile_errors_total[15m])") && errors.ends_with("> 0"),
        "{errors}"
    );
    // Prometheus templates reach Prometheus unexpanded.
    let text = serde_yaml_ng::to_string(rule).unwrap();
    assert!(text.contains("{{ $labels.namespace }}"), "{text}");
}

// The CRD ---------------------------------------------------------------------------------------

#[test]
fn chart_crd_copy_is_what_pgpart_crd_prints() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_COPY);
    let copy =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert_same_text(
        &copy,
        &pgpart_crd(),
        CRD_COPY,
        &format!("Regenerate it with: cargo run -- crd > {CRD_COPY}"),
    );
}

#[test]
fn crd_template_is_the_generated_crd_plus_helm_metadata() {
    let printed = pgpart_crd();
    let rendered = template_text("ops", "ns", &[]);
    // The CRD document, as rendered (after its `# Source:` line).
    let doc = rendered
        .split("\n---\n")
        .find(|d| d.contains("# Source: pgpart/templates/crd.yaml"))
        .expect("a rendered templates/crd.yaml");
    let body = doc
        .split_once("# Source: pgpart/templates/crd.yaml\n")
        .unwrap()
        .1;

    // Byte for byte: everything but the metadata the chart adds.
    let (head, spec) = body
        .split_once("\nspec:\n")
        .expect("spec: in the rendered CRD");
    let (phead, pspec) = printed
        .split_once("\nspec:\n")
        .expect("spec: in pgpart crd");
    assert_same_text(
        spec.trim_end(),
        pspec.trim_end(),
        "the chart's CRD spec",
        &format!("Regenerate {CRD_COPY} with: cargo run -- crd > {CRD_COPY}"),
    );
    assert!(
        head.starts_with(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n"
        ),
        "{head}"
    );
    assert!(
        phead.ends_with("metadata:\n  name: partitionpolicies.pgpart.io"),
        "{phead}"
    );

    // As data: the same object once the chart's labels and annotations are taken away.
    let mut chart: Value = serde_yaml_ng::from_str(body).expect("rendered CRD is YAML");
    let meta = chart["metadata"].as_mapping_mut().unwrap();
    let annotations = meta.remove("annotations").expect("annotations");
    assert_eq!(
        annotations["helm.sh/resource-policy"].as_str(),
        Some("keep")
    );
    let labels = meta.remove("labels").expect("labels");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"].as_str(),
        Some("Helm")
    );
    let generated: Value = serde_yaml_ng::from_str(&printed).unwrap();
    assert_eq!(chart, generated, "the chart's CRD is not the generated one");

    // crds.keep=false: no keep policy; crds.install=false: no CRD at all.
    let docs = template("ops", "ns", &["crds.keep=false"]);
    let crd = one(&docs, "CustomResourceDefinition");
    assert!(crd["metadata"]["annotations"].is_null(), "{crd:?}");
    let docs = template("ops", "ns", &["crds.install=false"]);
    assert!(helm::of_kind(&docs, "CustomResourceDefinition").is_empty());
}

// Installed -------------------------------------------------------------------------------------

/// Can the caller of `client` do `verb` on `group`/`resource`(`/sub`) in `ns` (cluster-wide
/// when `None`), on `name`? Asked of the apiserver (SelfSubjectAccessReview).
async fn can(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    ns: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (resource, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_owned())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: sub,
                namespace: ns.map(Into::into),
                name: name.map(Into::into),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview")
        .status
        .map(|s| s.allowed)
        .unwrap_or(false)
}

/// Panic unless `result` is a 403 from the apiserver.
#[track_caller]
fn assert_forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

fn kubeconfig_file(release: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{release}.kubeconfig"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaced_install_is_enough_for_the_controller_and_no_more() {
    let admin = testkube::client().await;
    // The CRD is cluster-wide and shared by parallel tests: the test suite owns it, so the
    // release does not install it (crd_template_is_the_generated_crd_plus_helm_metadata
    // checks the chart's copy).
    ctl::install_crd(&admin).await;
    let rel_ns = TestNamespace::new(&admin, "helm-rel").await;
    let app_ns = TestNamespace::new(&admin, "helm-app").await;
    let other_ns = TestNamespace::new(&admin, "helm-other").await;
    let (rel, app, other) = (rel_ns.name(), app_ns.name(), other_ns.name());

    let release = Release::install(
        &release_name("pgpart", rel),
        rel,
        &[
            "crds.install=false",
            &format!("watchNamespaces={{{app}}}"),
            "image.tag=test",
        ],
    );

    // What the release holds: RBAC in the watched namespace and a lease Role at home.
    let docs = release.manifest();
    assert!(
        helm::of_kind(&docs, "ClusterRole").is_empty(),
        "no ClusterRole"
    );
    assert!(helm::of_kind(&docs, "CustomResourceDefinition").is_empty());
    let args = controller_args(&docs);
    assert_eq!(flag_all(&args, "--namespace"), [app]);
    assert_eq!(flag(&args, "--leader-elect"), Some("true"));
    assert_eq!(flag(&args, "--lease-namespace"), Some(rel));
    let lease_name = flag(&args, "--lease-name")
        .expect("--lease-name")
        .to_owned();
    let deployment = one(&docs, "Deployment");
    let sa_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName")
        .to_owned();
    // Installed objects exist (no pods: there is no kubelet).
    Api::<Deployment>::namespaced(admin.clone(), rel)
        .get(helm::name(deployment))
        .await
        .expect("the Deployment was installed");
    Api::<ServiceAccount>::namespaced(admin.clone(), rel)
        .get(&sa_name)
        .await
        .expect("the ServiceAccount was installed");

    // A database with a monthly table, and its Secret in the watched namespace.
    let db = TestDb::create(&pg::server(17)).await;
    db.client
        .batch_execute(
            "CREATE TABLE public.readings (id bigint GENERATED ALWAYS AS IDENTITY, \
             at timestamptz NOT NULL, v double precision) PARTITION BY RANGE (at)",
        )
        .await
        .expect("create the partitioned table");
    let secrets_app: Api<Secret> = Api::namespaced(admin.clone(), app);
    apply(&secrets_app, &uri_secret("db", &db.url))
        .await
        .expect("apply the Secret");
    for ns in [rel, other] {
        apply(
            &Api::<Secret>::namespaced(admin.clone(), ns),
            &uri_secret("db", &db.url),
        )
        .await
        .expect("apply a Secret elsewhere");
    }
    let policies: Api<PartitionPolicy> = Api::namespaced(admin.clone(), app);
    apply(
        &policies,
        &json!({
            "apiVersion": "pgpart.io/v1alpha1",
            "kind": "PartitionPolicy",
            "metadata": { "name": "readings" },
            "spec": {
                "database": { "secretRef": { "name": "db" } },
                "table": "public.readings",
                "range": { "interval": "1 month", "premake": 3 },
            },
        }),
    )
    .await
    .expect("apply the policy");

    // The controller, as the chart's ServiceAccount, with the chart's args.
    let token = service_account_token(&admin, rel, &sa_name).await;
    let kubeconfig = token_kubeconfig(&token, &kubeconfig_file(&release.name));
    let identity = format!("{}-6f7c9d-x2kq", release.name);
    let mut controller = SaController::spawn(
        &args,
        &kubeconfig,
        &[("POD_NAME", identity.as_str()), ("POD_NAMESPACE", rel)],
        &release.name,
    );
    controller.wait_ready().await;

    let p = ctl::wait_ready(&policies, "readings", WAIT).await;
    controller.assert_running();
    let want = support::clock::monthly("readings", ctl::last_pass_time(&p), 3);
    let names = support::cli::partition_names(&db.client, "public.readings").await;
    assert_eq!(names, want, "partitions of public.readings");
    let status = p.status.as_ref().unwrap();
    assert_eq!(status.partitions, Some(4), "status.partitions: {status:?}");

    // It led through the release's Lease, and recorded events in the watched namespace.
    let lease = Api::<Lease>::namespaced(admin.clone(), rel)
        .get(&lease_name)
        .await
        .expect("the controller's Lease in the release namespace");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(identity.as_str())
    );
    let events = ctl::eventually("events about the policy", WAIT, || {
        let admin = admin.clone();
        async move {
            let events: Vec<Event> = Api::<Event>::namespaced(admin, app)
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .into_iter()
                .filter(|e| {
                    e.regarding
                        .as_ref()
                        .is_some_and(|r| r.name.as_deref() == Some("readings"))
                })
                .collect();
            if events.is_empty() {
                Err("no events yet".into())
            } else {
                Ok(events)
            }
        }
    })
    .await;
    assert!(
        events
            .iter()
            .all(|e| e.reporting_controller.as_deref() == Some("pgpart")),
        "{events:?}"
    );
    // It watches the Secrets of its namespace: a changed Secret starts a pass at once.
    let mut changed = uri_secret("db", &db.url);
    changed["metadata"]["annotations"] = json!({ "rotated": "1" });
    apply(&secrets_app, &changed)
        .await
        .expect("change the Secret");
    let said = format!("Secret {app}/db changed");
    ctl::eventually("the controller saw the Secret change", WAIT, || {
        let logs = controller.logs();
        let said = said.clone();
        async move {
            if logs.contains(&said) {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        }
    })
    .await;
    // Nothing it tried was refused.
    let logs = controller.logs().to_ascii_lowercase();
    assert!(
        !logs.contains("forbidden"),
        "the controller was refused something:\n{}",
        controller.logs()
    );

    // The same token gets nothing more.
    let sa = testkube::client_with_token(&token).await;
    Api::<Secret>::namespaced(sa.clone(), app)
        .get("db")
        .await
        .expect("the ServiceAccount reads the Secret a policy names");
    assert_forbidden(
        Api::<Secret>::namespaced(sa.clone(), other).get("db").await,
        "get a Secret in another namespace",
    );
    assert_forbidden(
        Api::<Secret>::namespaced(sa.clone(), rel).get("db").await,
        "get a Secret in the release namespace (not watched)",
    );
    Api::<Secret>::namespaced(sa.clone(), app)
        .list(&ListParams::default())
        .await
        .expect("list Secrets in the watched namespace (secretWatch defaults to all there)");
    assert_forbidden(
        Api::<Secret>::namespaced(sa.clone(), other)
            .list(&ListParams::default())
            .await,
        "list Secrets in another namespace",
    );
    assert_forbidden(
        Api::<PartitionPolicy>::namespaced(sa.clone(), app)
            .delete("readings", &DeleteParams::default())
            .await,
        "delete a PartitionPolicy",
    );
    assert_forbidden(
        Api::<PartitionPolicy>::namespaced(sa.clone(), app)
            .patch(
                "readings",
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": { "suspend": true } })),
            )
            .await,
        "change a PartitionPolicy's spec",
    );
    assert_forbidden(
        Api::<PartitionPolicy>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "list PartitionPolicies in every namespace",
    );
    assert_forbidden(
        Api::<Deployment>::namespaced(sa.clone(), rel)
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": { "name": "intruder" },
                    "spec": {
                        "selector": { "matchLabels": { "a": "b" } },
                        "template": {
                            "metadata": { "labels": { "a": "b" } },
                            "spec": { "containers": [{ "name": "c", "image": "busybox" }] },
                        },
                    },
                }))
                .unwrap(),
            )
            .await,
        "create a Deployment",
    );
    assert_forbidden(
        Api::<Lease>::namespaced(sa.clone(), other)
            .get(&lease_name)
            .await,
        "get a Lease in another namespace",
    );
    for (verb, group, resource, ns, name, allowed) in [
        (
            "watch",
            "pgpart.io",
            "partitionpolicies",
            Some(app),
            None,
            true,
        ),
        (
            "patch",
            "pgpart.io",
            "partitionpolicies/status",
            Some(app),
            None,
            true,
        ),
        ("create", "events.k8s.io", "events", Some(app), None, true),
        ("patch", "events.k8s.io", "events", Some(app), None, true),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some(rel),
            Some(lease_name.as_str()),
            true,
        ),
        (
            "update",
            "coordination.k8s.io",
            "leases",
            Some(rel),
            Some("someone-else"),
            false,
        ),
        (
            "delete",
            "coordination.k8s.io",
            "leases",
            Some(rel),
            Some(lease_name.as_str()),
            false,
        ),
        (
            "update",
            "pgpart.io",
            "partitionpolicies/status",
            Some(app),
            None,
            false,
        ),
        (
            "create",
            "pgpart.io",
            "partitionpolicies",
            Some(app),
            None,
            false,
        ),
        ("watch", "", "secrets", Some(app), None, true),
        ("watch", "", "secrets", Some(rel), None, false),
        ("get", "", "configmaps", Some(app), None, false),
        ("create", "", "pods", Some(rel), None, false),
        ("delete", "events.k8s.io", "events", Some(app), None, false),
        (
            "watch",
            "pgpart.io",
            "partitionpolicies",
            Some(other),
            None,
            false,
        ),
        (
            "create",
            "events.k8s.io",
            "events",
            Some(other),
            None,
            false,
        ),
    ] {
        assert_eq!(
            can(&sa, verb, group, resource, ns, name).await,
            allowed,
            "may the ServiceAccount {verb} {resource} in {ns:?} (name {name:?})?"
        );
    }

    // Uninstall: the chart's objects go.
    drop(controller);
    release.uninstall();
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), rel);
    assert!(
        sas.get_opt(&sa_name).await.unwrap().is_none(),
        "ServiceAccount left behind"
    );
    let roles: Api<Role> = Api::namespaced(admin.clone(), app);
    assert!(
        roles
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "Role left behind in {app}"
    );

    rel_ns.cleanup().await;
    app_ns.cleanup().await;
    other_ns.cleanup().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_wide_install_grants_only_what_the_controller_uses() {
    let admin = testkube::client().await;
    ctl::install_crd(&admin).await;
    let rel_ns = TestNamespace::new(&admin, "helm-cluster").await;
    let other_ns = TestNamespace::new(&admin, "helm-cluster-other").await;
    let (rel, other) = (rel_ns.name(), other_ns.name());
    let release = Release::install(&release_name("pgpart", rel), rel, &["crds.install=false"]);

    let docs = release.manifest();
    let cr = one(&docs, "ClusterRole");
    let cr_name = helm::name(cr).to_owned();
    let args = controller_args(&docs);
    assert!(flag_all(&args, "--namespace").is_empty(), "{args:?}");
    let lease_name = flag(&args, "--lease-name").unwrap().to_owned();
    let sa_name = one(&docs, "ServiceAccount")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();

    let token = service_account_token(&admin, rel, &sa_name).await;
    let sa = testkube::client_with_token(&token).await;

    // What the controller does works everywhere ...
    Api::<PartitionPolicy>::all(sa.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("list PartitionPolicies in every namespace (the controller's start-up check)");
    match Api::<Secret>::namespaced(sa.clone(), other)
        .get("absent")
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        other => panic!("get a Secret by name in any namespace: expected 404, got {other:?}"),
    }
    // ... and nothing else does.
    assert_forbidden(
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
        "list Secrets in every namespace",
    );
    assert_forbidden(
        Api::<Secret>::namespaced(sa.clone(), other)
            .list(&ListParams::default())
            .await,
        "list Secrets in a namespace",
    );
    for (verb, group, resource, ns, name, allowed) in [
        ("list", "pgpart.io", "partitionpolicies", None, None, true),
        ("watch", "pgpart.io", "partitionpolicies", None, None, true),
        (
            "patch",
            "pgpart.io",
            "partitionpolicies/status",
            Some(other),
            None,
            true,
        ),
        ("get", "", "secrets", Some(other), Some("db"), true),
        ("create", "events.k8s.io", "events", Some(other), None, true),
        ("patch", "events.k8s.io", "events", Some(other), None, true),
        (
            "create",
            "coordination.k8s.io",
            "leases",
            Some(rel),
            None,
            true,
        ),
        (
            "get",
            "coordination.k8s.io",
            "leases",
            Some(rel),
            Some(lease_name.as_str()),
            true,
        ),
        (
            "patch",
            "coordination.k8s.io",
            "leases",
            Some(rel),
            Some(lease_name.as_str()),
            true,
        ),
        (
            "create",
            "coordination.k8s.io",
            "leases",
            Some(other),
            None,
            false,
        ),
        ("list", "", "secrets", None, None, false),
        ("watch", "", "secrets", Some(other), None, false),
        (
            "delete",
            "pgpart.io",
            "partitionpolicies",
            Some(other),
            None,
            false,
        ),
        (
            "update",
            "pgpart.io",
            "partitionpolicies",
            Some(other),
            None,
            false,
        ),
        ("create", "apps", "deployments", Some(rel), None, false),
        (
            "get",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            None,
            None,
            false,
        ),
        ("list", "", "namespaces", None, None, false),
    ] {
        assert_eq!(
            can(&sa, verb, group, resource, ns, name).await,
            allowed,
            "may the ServiceAccount {verb} {resource} in {ns:?} (name {name:?})?"
        );
    }

    release.uninstall();
    assert!(
        Api::<ClusterRole>::all(admin.clone())
            .get_opt(&cr_name)
            .await
            .unwrap()
            .is_none(),
        "ClusterRole {cr_name} left behind"
    );
    rel_ns.cleanup().await;
    other_ns.cleanup().await;
}
