// Package argolua runs gitops/argocd/health.lua through Argo CD's own Lua package
// (github.com/argoproj/argo-cd/v3/util/lua: the VM Argo CD's controller evaluates custom
// health checks with) on every case of gitops/argocd/health_test.yaml.
//
// A module of its own: argo-cd/v3 pulls in most of Kubernetes, and its k8s.io/* replaces
// (copied from argo-cd's go.mod) must not leak into tools/kstatus. Run by tests/gitops.rs,
// or directly with `go test ./...`.
package argolua

import (
	"os"
	"path/filepath"
	"testing"

	argolua "github.com/argoproj/argo-cd/v3/util/lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const argocd = "../../gitops/argocd"

type cases struct {
	Tests []struct {
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

func TestHealthLuaInArgoCDsVM(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(argocd, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(argocd, "health_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var all cases
	if err := yaml.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	if len(all.Tests) == 0 {
		t.Fatal("no cases in health_test.yaml")
	}
	vm := argolua.VM{}
	for _, c := range all.Tests {
		input, err := os.ReadFile(filepath.Join(argocd, c.InputPath))
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(input, &obj.Object); err != nil {
			t.Fatalf("%s: %v", c.InputPath, err)
		}
		got, err := vm.ExecuteHealthLua(obj, string(script))
		if err != nil {
			t.Fatalf("%s: %v", c.InputPath, err)
		}
		if string(got.Status) != c.HealthStatus.Status || got.Message != c.HealthStatus.Message {
			t.Errorf("%s: got %s %q, want %s %q", c.InputPath, got.Status, got.Message, c.HealthStatus.Status, c.HealthStatus.Message)
		}
		t.Logf("argo cd util/lua: %s -> %s", c.InputPath, got.Status)
	}
}
