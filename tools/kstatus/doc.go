// Package kstatus checks that the status pgpart writes on a PartitionPolicy reads the
// way Flux (kustomize-controller health checks, helm-controller wait) and kpt read it:
// through sigs.k8s.io/cli-utils' kstatus, on objects stored and served by a real
// kube-apiserver. The test is run by `cargo test --test gitops`.
package kstatus
