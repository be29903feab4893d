// Package kstatus checks that the status pgpart writes on a PartitionPolicy reads the
// way Flux (kustomize-controller health checks, helm-controller wait) and kpt read it,
// on objects stored and served by a real kube-apiserver (PGPART_TEST_KUBECONFIG):
//
//   - through sigs.k8s.io/cli-utils' kstatus, what Flux uses by default;
//   - through the healthCheckExprs of gitops/flux/policies.yaml, evaluated with CEL in the
//     order Flux's RFC 0009 gives (generation check, inProgress, failed, current).
//
// The tests run with `cargo test --test gitops` (tests/gitops.rs runs `go test ./...`
// here with GOTOOLCHAIN=local), or directly with `go test ./...`.
package kstatus
