// Package helm pins helm.sh/helm/v3 for the test tooling. The binary is the
// upstream main package, built with `go build helm.sh/helm/v3/cmd/helm` from
// this module (see the `tool` line in go.mod and tools/testenv/build.sh).
package helm
