//! Smoke tests of the local test control plane (scripts/lib/kube.sh): it must be a real
//! API server with RBAC, service-account tokens and the Kubernetes version we built.
//! Needs `PGPART_TEST_KUBECONFIG`; without it every test fails.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use support::kube::{self as testkube, TestNamespace};

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        ..ObjectMeta::default()
    }
}

#[tokio::test]
async fn lists_namespaces_and_creates_a_configmap() {
    let client = testkube::client().await;
    let ns = TestNamespace::new(&client, "smoke-cm").await;

    let names: Vec<String> = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system", ns.name()] {
        assert!(
            names.iter().any(|n| n == want),
            "namespace {want} missing from {names:?}"
        );
    }

    let cms: Api<ConfigMap> = ns.api();
    let cm = ConfigMap {
        metadata: meta("smoke"),
        data: Some(BTreeMap::from([("answer".to_owned(), "42".to_owned())])),
        ..ConfigMap::default()
    };
    let created = cms
        .create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    assert_eq!(created.metadata.namespace.as_deref(), Some(ns.name()));
    assert!(created.metadata.uid.is_some(), "server must assign a uid");
    let got = cms.get("smoke").await.expect("get configmap");
    assert_eq!(
        got.data.unwrap().get("answer").map(String::as_str),
        Some("42")
    );

    ns.cleanup().await;
}

#[tokio::test]
async fn service_account_without_rbac_is_forbidden() {
    let admin = testkube::client().await;
    let ns = TestNamespace::new(&admin, "smoke-rbac").await;
    let sas: Api<ServiceAccount> = ns.api();
    let sa = ServiceAccount {
        metadata: meta("no-rbac"),
        ..ServiceAccount::default()
    };
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("create service account");

    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request("no-rbac", &PostParams::default(), &request)
        .await
        .expect("TokenRequest for the service account")
        .status
        .expect("TokenRequest status")
        .token;
    assert!(!token.is_empty());
    let sa_client = testkube::client_with_token(&token).await;

    // The token authenticates (everyone may ask who they are) ...
    let review = Api::<SelfSubjectReview>::all(sa_client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview with the service account token");
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username);
    let want_user = format!("system:serviceaccount:{}:no-rbac", ns.name());
    assert_eq!(user.as_deref(), Some(want_user.as_str()));

    // ... but without a RoleBinding RBAC refuses it, while the admin may list the same.
    let pods: Api<Pod> = Api::namespaced(sa_client.clone(), ns.name());
    assert_forbidden(
        pods.list(&ListParams::default()).await.map(|_| ()),
        &want_user,
        "pods",
    );
    let secrets: Api<Secret> = Api::namespaced(sa_client.clone(), ns.name());
    assert_forbidden(
        secrets.list(&ListParams::default()).await.map(|_| ()),
        &want_user,
        "secrets",
    );
    ns.api::<Pod>()
        .list(&ListParams::default())
        .await
        .expect("admin lists pods");
    ns.api::<Secret>()
        .list(&ListParams::default())
        .await
        .expect("admin lists secrets");

    ns.cleanup().await;
}

fn assert_forbidden(result: Result<(), kube::Error>, user: &str, resource: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "listing {resource} as {user}: {status:?}");
            assert_eq!(status.reason, "Forbidden");
            assert!(
                status.message.contains(user),
                "403 should name {user}: {}",
                status.message
            );
        }
        Err(e) => panic!("listing {resource} as {user}: expected 403 Forbidden, got {e}"),
        Ok(()) => panic!("listing {resource} as {user} succeeded; RBAC is not enforced"),
    }
}

#[tokio::test]
async fn version_is_the_release_we_built() {
    let info = testkube::client()
        .await
        .apiserver_version()
        .await
        .expect("GET /version");
    assert_eq!(info.major, "1", "{info:?}");
    assert!(
        info.git_version.starts_with("v1.3"),
        "unexpected gitVersion in {info:?}"
    );
    assert!(
        info.git_version
            .starts_with(&format!("v{}.{}.", info.major, info.minor)),
        "gitVersion and major/minor disagree: {info:?}"
    );
    if let Some(want) = testkube::expected_version() {
        assert_eq!(info.git_version, want, "{info:?}");
    }
}
