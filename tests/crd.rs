//! The CRD in `crds/` is the one the binary generates, and the real apiserver accepts it.
//! Needs `PGPART_TEST_KUBECONFIG` for the apiserver tests.

mod support;

use std::path::Path;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use support::controller::{CRD_NAME, MANAGER, PGPART, crd_condition, install_crd};

const CRD_FILE: &str = "crds/pgpart.io_partitionpolicies.yaml";

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

#[test]
fn crds_dir_holds_what_pgpart_crd_prints() {
    let printed = pgpart_crd();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let stored =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    if printed != stored {
        let first = printed
            .lines()
            .zip(stored.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(printed.lines().count().min(stored.lines().count()));
        panic!(
            "{CRD_FILE} is stale: it differs from `pgpart crd` from line {} \
             (printed: {:?}, file: {:?}).\n\
             Regenerate it with: cargo run -- crd > {CRD_FILE}",
            first + 1,
            printed.lines().nth(first).unwrap_or("<end>"),
            stored.lines().nth(first).unwrap_or("<end>"),
        );
    }
}

#[test]
fn printed_crd_is_the_partitionpolicy_crd() {
    let crd: CustomResourceDefinition = serde_yaml_ng::from_str(&pgpart_crd())
        .expect("pgpart crd prints a CustomResourceDefinition");
    assert_eq!(crd.metadata.name.as_deref(), Some(CRD_NAME));
    assert_eq!(crd.spec.group, "pgpart.io");
    assert_eq!(crd.spec.names.kind, "PartitionPolicy");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert!(
        crd.spec
            .names
            .short_names
            .as_ref()
            .is_some_and(|s| s.iter().any(|n| n == "ppol")),
        "short name ppol missing: {:?}",
        crd.spec.names.short_names
    );
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .expect("version v1alpha1");
    assert!(v.served && v.storage);
    assert!(
        v.subresources.as_ref().is_some_and(|s| s.status.is_some()),
        "the status subresource must be on"
    );
    let columns: Vec<&str> = v
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    for want in ["Table", "Interval", "Partitions", "Covered Until", "Ready"] {
        assert!(
            columns.contains(&want),
            "printer column {want} missing: {columns:?}"
        );
    }
}

#[tokio::test]
async fn crd_applies_to_the_apiserver_and_is_established() {
    let client = support::kube::client().await;
    // Twice: server-side apply of the same CRD is idempotent.
    let first = install_crd(&client).await;
    let second = install_crd(&client).await;
    assert_eq!(crd_condition(&second, "Established"), Some("True"));
    assert_eq!(crd_condition(&second, "NamesAccepted"), Some("True"));
    // A structural schema (required for CEL rules, defaults and pruning): this apiserver
    // release reports no NonStructuralSchema problem.
    assert_ne!(
        crd_condition(&second, "NonStructuralSchema"),
        Some("True"),
        "{:?}",
        second.status
    );
    assert_eq!(
        first.metadata.generation, second.metadata.generation,
        "re-applying the same CRD must not change its spec"
    );

    // The file in crds/ (what users apply) is accepted as well: a server-side dry run.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(CRD_FILE);
    let from_file: serde_json::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&path).expect("read CRD file"))
            .expect("CRD file is YAML");
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        CRD_NAME,
        &PatchParams::apply(MANAGER).force().dry_run(),
        &Patch::Apply(&from_file),
    )
    .await
    .unwrap_or_else(|e| panic!("the apiserver refuses {CRD_FILE}: {e}"));

    // Served: the discovery of the group lists the resource with its short name.
    let stored = api.get(CRD_NAME).await.expect("get CRD");
    let accepted = stored
        .status
        .as_ref()
        .and_then(|s| s.accepted_names.as_ref())
        .expect("acceptedNames");
    assert_eq!(accepted.plural, "partitionpolicies");
    assert!(
        accepted
            .short_names
            .as_ref()
            .is_some_and(|s| s.iter().any(|n| n == "ppol"))
    );
    let discovery = kube::discovery::Discovery::new(client.clone())
        .filter(&["pgpart.io"])
        .run()
        .await
        .expect("discovery of pgpart.io");
    let found = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .any(|(ar, _)| ar.kind == "PartitionPolicy" && ar.version == "v1alpha1");
    assert!(found, "pgpart.io/v1alpha1 PartitionPolicy is not served");
}
