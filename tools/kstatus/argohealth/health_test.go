// Package argohealth runs gitops/argocd/health.lua in gopher-lua, the interpreter Argo CD
// embeds (Lua 5.1 with its own quirks, not Lua 5.4), on every case of
// gitops/argocd/health_test.yaml. Argo CD's own lua package cannot be built here (its
// gitops-engine module does not resolve), so the test sets the script up the way Argo CD
// does: a fresh state with only the safe base libraries open, the object as the global `obj`
// (decoded from JSON: objects and arrays become tables), the script run as a chunk whose
// returned table holds status and message.
package argohealth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

const argocd = "../../../gitops/argocd"

type cases struct {
	Tests []struct {
		HealthStatus struct {
			Status  string `json:"status"`
			Message string `json:"message"`
		} `json:"healthStatus"`
		InputPath string `json:"inputPath"`
	} `json:"tests"`
}

// toLua turns a decoded JSON value into the Lua value Argo CD hands the script.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := L.NewTable()
		for _, item := range v {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, item := range v {
			t.RawSetString(k, toLua(L, item))
		}
		return t
	}
	panic("unexpected JSON value")
}

func health(t *testing.T, script string, obj any) (string, string) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	for name, open := range map[string]lua.LGFunction{
		lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable,
		lua.StringLibName: lua.OpenString, lua.MathLibName: lua.OpenMath,
	} {
		L.Push(L.NewFunction(open))
		L.Push(lua.LString(name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		t.Fatalf("health.lua failed in gopher-lua: %v", err)
	}
	hs, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		t.Fatalf("health.lua returned %s, not a table", L.Get(-1).Type())
	}
	return lua.LVAsString(hs.RawGetString("status")), lua.LVAsString(hs.RawGetString("message"))
}

func TestHealthLuaInGopherLua(t *testing.T) {
	script, err := os.ReadFile(filepath.Join(argocd, "health.lua"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(argocd, "health_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c cases
	if err := yaml.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Tests) < 10 {
		t.Fatalf("only %d cases in health_test.yaml", len(c.Tests))
	}
	for _, tc := range c.Tests {
		input, err := os.ReadFile(filepath.Join(argocd, tc.InputPath))
		if err != nil {
			t.Fatal(err)
		}
		js, err := yaml.YAMLToJSON(input)
		if err != nil {
			t.Fatal(err)
		}
		var obj any
		if err := json.Unmarshal(js, &obj); err != nil {
			t.Fatal(err)
		}
		status, message := health(t, string(script), obj)
		if status != tc.HealthStatus.Status || message != tc.HealthStatus.Message {
			t.Errorf("%s: gopher-lua gives %q %q, want %q %q", tc.InputPath, status, message,
				tc.HealthStatus.Status, tc.HealthStatus.Message)
			continue
		}
		t.Logf("argo gopher-lua: %s -> %s", tc.InputPath, status)
	}
}
