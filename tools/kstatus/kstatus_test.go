package kstatus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const (
	// kubeconfigEnv names the admin kubeconfig of the test control plane (the Rust tests
	// use the same variable). Unset is a failure, never a skip.
	kubeconfigEnv = "PGPART_TEST_KUBECONFIG"
	// crdFile is the CRD users apply; the Rust tests check it is what `pgpart crd` prints.
	crdFile = "../../crds/pgpart.io_partitionpolicies.yaml"
	crdName = "partitionpolicies.pgpart.io"
	// testsManager is the field manager the Rust tests apply the CRD with: the same one,
	// forced, keeps concurrent applies idempotent.
	testsManager = "pgpart-tests"
	// controllerManager is the field manager pgpart's controller writes status with.
	controllerManager = "pgpart"
	testLabel         = "pgpart.io/test"
	holdFinalizer     = "pgpart.io/kstatus-test-hold"
)

var (
	crdGVR    = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	nsGVR     = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	policyGVR = schema.GroupVersionResource{Group: "pgpart.io", Version: "v1alpha1", Resource: "partitionpolicies"}
)

// cond is one condition as pgpart's build_status (src/controller/reconcile.rs) writes it.
type cond struct {
	Type, Status, Reason, Message string
}

// Condition sets pgpart writes in each state (src/controller/reconcile.rs, build_status).
var (
	healthy = []cond{
		{"Ready", "True", "Reconciled", "7 partitions, covered until 2027-06-01T00:00:00Z"},
		{"Reconciling", "False", "Reconciled", "up to date"},
		{"Stalled", "False", "Reconciled", "up to date"},
		{"DefaultPartitionEmpty", "True", "Empty", "no rows in the default partition (or no default partition)"},
	}
	progressing = []cond{
		{"Ready", "False", "Progressing", "3 actions pending (more to do in the next pass)"},
		{"Reconciling", "True", "Progressing", "3 actions pending (more to do in the next pass)"},
		{"Stalled", "False", "Progressing", "more to do in the next pass"},
		{"DefaultPartitionEmpty", "True", "Empty", "no rows in the default partition (or no default partition)"},
	}
	retrying = []cond{
		{"Ready", "False", "DatabaseUnavailable", "cannot connect to the database: connection refused"},
		{"Reconciling", "True", "RetryingAfterError", "will retry: cannot connect to the database: connection refused"},
		{"Stalled", "False", "Retrying", "the cause may clear by itself; retrying with back-off"},
	}
	stalled = []cond{
		{"Ready", "False", "TableMissing", "table public.events does not exist: create it PARTITION BY RANGE/LIST/HASH first, or fix spec.table"},
		{"Reconciling", "False", "TableMissing", "waiting for a person to fix the cause"},
		{"Stalled", "True", "TableMissing", "table public.events does not exist: create it PARTITION BY RANGE/LIST/HASH first, or fix spec.table"},
	}
	blockedByDefaultRows = []cond{
		{"Ready", "False", "RowsInDefault", "events_p20270101 for [2027-01-01T00:00:00Z, 2027-02-01T00:00:00Z) can't be created while the default partition holds rows in that range; set spec.defaultPartition.onRows: Repair to move them"},
		{"Reconciling", "False", "RowsInDefault", "waiting for a person: rows in the default partition"},
		{"Stalled", "True", "RowsInDefault", "events_p20270101 for [2027-01-01T00:00:00Z, 2027-02-01T00:00:00Z) can't be created while the default partition holds rows in that range; set spec.defaultPartition.onRows: Repair to move them"},
		{"DefaultPartitionEmpty", "False", "RowsInDefault", "1200 rows in the default partition"},
	}
	suspended = []cond{
		{"Ready", "False", "Suspended", "2 actions pending (suspended: observing only)"},
		{"Reconciling", "False", "Suspended", "2 actions pending (suspended: observing only)"},
		{"Stalled", "False", "Suspended", "suspended: observing only"},
		{"DefaultPartitionEmpty", "True", "Empty", "no rows in the default partition (or no default partition)"},
	}
)

type testCase struct {
	name string
	// conditions to write through the status subresource; nil: write no status at all.
	conditions []cond
	// stale: after writing status for generation 1, change the spec (generation 2).
	stale bool
	// deleting: hold the object with a finalizer and delete it.
	deleting bool
	// specPatch is merged into the base spec at creation.
	specPatch map[string]any
	want      status.Status
	// wantMessage is a substring of kstatus' message.
	wantMessage string
	// wantFlux is what Flux gives with the healthCheckExprs of gitops/flux/policies.yaml.
	wantFlux status.Status
}

var cases = []testCase{
	// The four states the Flux docs promise.
	{name: "healthy", conditions: healthy, want: status.CurrentStatus, wantFlux: status.CurrentStatus},
	{name: "progressing", conditions: progressing, want: status.InProgressStatus, wantMessage: "3 actions pending",
		wantFlux: status.InProgressStatus},
	{name: "stalled", conditions: stalled, want: status.FailedStatus, wantMessage: "does not exist",
		wantFlux: status.FailedStatus},
	{name: "stale-generation", conditions: healthy, stale: true, want: status.InProgressStatus,
		wantMessage: "generation is 2, but latest observed generation is 1", wantFlux: status.InProgressStatus},
	// More of what pgpart writes.
	{name: "retrying", conditions: retrying, want: status.InProgressStatus, wantMessage: "will retry",
		wantFlux: status.InProgressStatus},
	{name: "blocked-by-default-rows", conditions: blockedByDefaultRows, want: status.FailedStatus,
		wantMessage: "can't be created while the default partition holds rows", wantFlux: status.FailedStatus},
	// Suspended (or dry run) with actions pending: Ready=False and neither Reconciling nor
	// Stalled, so kstatus falls back to the Ready condition: InProgress. A Flux
	// healthCheck or `wait: true` on such a policy waits until its timeout (docs/gitops.md).
	{name: "suspended-pending", conditions: suspended, specPatch: map[string]any{"suspend": true},
		want: status.InProgressStatus, wantMessage: "suspended: observing only",
		// healthCheckExprs count a policy held back on purpose as applied.
		wantFlux: status.CurrentStatus},
	// Setting deletionTimestamp bumps metadata.generation, so the status is stale for
	// Flux's generation check too.
	{name: "deleting", conditions: healthy, deleting: true, want: status.TerminatingStatus,
		wantFlux: status.InProgressStatus},
}

func TestKstatusReadsPartitionPolicyStatus(t *testing.T) {
	dyn := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	applyCRD(ctx, t, dyn)
	ns := createNamespace(ctx, t, dyn)
	exprs, err := partitionPolicyExprs()
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			api := dyn.Resource(policyGVR).Namespace(ns)
			name := "ppol-" + tc.name
			createPolicy(ctx, t, api, name, tc.specPatch, tc.deleting)
			if tc.conditions != nil {
				writeStatus(ctx, t, api, name, tc.conditions, 1)
			}
			if tc.stale {
				patch := []byte(`{"spec":{"range":{"premake":6}}}`)
				if _, err := api.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
					t.Fatalf("change spec of %s: %v", name, err)
				}
			}
			if tc.deleting {
				t.Cleanup(func() { release(t, api, name) })
				if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
					t.Fatalf("delete %s: %v", name, err)
				}
			}

			// What Flux sees: the object as the apiserver serves it.
			u, err := api.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("get %s: %v", name, err)
			}
			if tc.stale && u.GetGeneration() != 2 {
				t.Fatalf("a spec change must bump metadata.generation to 2, got %d", u.GetGeneration())
			}
			if tc.conditions != nil {
				og, found, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
				if !found || og != 1 {
					t.Fatalf("status.observedGeneration read back as %d (found %v), want 1; status: %v",
						og, found, u.Object["status"])
				}
			}
			res, err := status.Compute(u)
			if err != nil {
				t.Fatalf("kstatus Compute: %v", err)
			}
			if res.Status != tc.want || !strings.Contains(res.Message, tc.wantMessage) {
				t.Fatalf("kstatus reads %s as %s (%q), want %s (message containing %q)\nobject status: %s",
					tc.name, res.Status, res.Message, tc.want, tc.wantMessage, dump(u.Object["status"]))
			}
			t.Logf("%s -> %s: %s", tc.name, res.Status, res.Message)

			// What Flux sees with gitops/flux/policies.yaml's healthCheckExprs.
			flux, err := fluxStatus(exprs, u)
			if err != nil {
				t.Fatalf("healthCheckExprs on %s: %v", tc.name, err)
			}
			if flux != tc.wantFlux {
				t.Fatalf("Flux healthCheckExprs read %s as %s, want %s\nobject status: %s",
					tc.name, flux, tc.wantFlux, dump(u.Object["status"]))
			}
			t.Logf("%s -> flux healthCheckExprs %s", tc.name, flux)
		})
	}
}

// A brand-new policy has no status until pgpart's first pass. kstatus reads an object
// without conditions or observedGeneration as Current, so a plain Flux health check can
// pass before pgpart has looked at the policy. This pins the behaviour docs/gitops.md
// warns about (if the CRD comes to default status.observedGeneration, e.g. to -1, kstatus
// reads InProgress instead), and checks that the healthCheckExprs of
// gitops/flux/policies.yaml close the gap.
func TestKstatusNewPolicyWithoutStatus(t *testing.T) {
	dyn := client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	applyCRD(ctx, t, dyn)
	ns := createNamespace(ctx, t, dyn)
	api := dyn.Resource(policyGVR).Namespace(ns)
	createPolicy(ctx, t, api, "ppol-new", nil, false)
	u, err := api.Get(ctx, "ppol-new", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	res, err := status.Compute(u)
	if err != nil {
		t.Fatalf("kstatus Compute: %v", err)
	}
	_, hasOG, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration")
	want := status.CurrentStatus
	if hasOG {
		want = status.InProgressStatus
	}
	if res.Status != want {
		t.Fatalf("new policy (status %s) reads as %s (%q), want %s", dump(u.Object["status"]), res.Status, res.Message, want)
	}
	t.Logf("new policy without status -> %s: %s", res.Status, res.Message)

	// With healthCheckExprs there is no status to read yet: Flux can't call it Current
	// and keeps polling until pgpart writes one (or the Kustomization's timeout).
	exprs, err := partitionPolicyExprs()
	if err != nil {
		t.Fatal(err)
	}
	if flux, err := fluxStatus(exprs, u); err == nil && flux == status.CurrentStatus {
		t.Fatalf("healthCheckExprs read a policy without status as Current")
	} else {
		t.Logf("new policy without status -> flux healthCheckExprs %s (%v)", flux, err)
	}
}

func client(t *testing.T) *dynamic.DynamicClient {
	t.Helper()
	path := strings.TrimSpace(os.Getenv(kubeconfigEnv))
	if path == "" {
		t.Fatalf("%s is not set: this test needs a real kube-apiserver. Start one with "+
			"`source scripts/lib/kube.sh && kube_up \"$DIR\"` (it exports %s), or run scripts/test",
			kubeconfigEnv, kubeconfigEnv)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s=%s: %v (was the control plane stopped?)", kubeconfigEnv, path, err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", path, err)
	}
	cfg.QPS, cfg.Burst = 50, 100
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("dynamic client: %v", err)
	}
	return dyn
}

// applyCRD server-side applies crds/ (forced, the Rust tests' field manager: idempotent
// when other tests apply it too) and waits until the API serves PartitionPolicies.
func applyCRD(ctx context.Context, t *testing.T, dyn *dynamic.DynamicClient) {
	t.Helper()
	raw, err := os.ReadFile(crdFile)
	if err != nil {
		t.Fatalf("read %s: %v", crdFile, err)
	}
	var crd unstructured.Unstructured
	if err := yaml.Unmarshal(raw, &crd.Object); err != nil {
		t.Fatalf("parse %s: %v", crdFile, err)
	}
	if crd.GetName() != crdName {
		t.Fatalf("%s holds %q, want %q", crdFile, crd.GetName(), crdName)
	}
	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		_, lastErr = dyn.Resource(crdGVR).Apply(ctx, crdName, &crd,
			metav1.ApplyOptions{FieldManager: testsManager, Force: true})
		if lastErr == nil || !apierrors.IsConflict(lastErr) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("server-side apply of %s: %v", crdFile, lastErr)
	}
	poll(ctx, t, "CRD "+crdName+" Established", func() (bool, string) {
		u, err := dyn.Resource(crdGVR).Get(ctx, crdName, metav1.GetOptions{})
		if err != nil {
			return false, err.Error()
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, ""
			}
		}
		return false, dump(conds)
	})
}

func createNamespace(ctx context.Context, t *testing.T, dyn *dynamic.DynamicClient) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	name := "pgpart-kstatus-" + hex.EncodeToString(b)
	ns := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Namespace",
		"metadata": map[string]any{
			"name":   name,
			"labels": map[string]any{testLabel: "true"},
		},
	}}
	if _, err := dyn.Resource(nsGVR).Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := dyn.Resource(nsGVR).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete namespace %s: %v", name, err)
		}
	})
	return name
}

func createPolicy(ctx context.Context, t *testing.T, api dynamic.ResourceInterface, name string, specPatch map[string]any, hold bool) {
	t.Helper()
	spec := map[string]any{
		"database": map[string]any{"secretRef": map[string]any{"name": "events-db"}},
		"table":    "public.events",
		"range":    map[string]any{"interval": "1 month", "premake": int64(4)},
		"defaultPartition": map[string]any{
			"create": true,
			"onRows": "Report",
		},
	}
	for k, v := range specPatch {
		spec[k] = v
	}
	meta := map[string]any{"name": name}
	if hold {
		meta["finalizers"] = []any{holdFinalizer}
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "pgpart.io/v1alpha1",
		"kind":       "PartitionPolicy",
		"metadata":   meta,
		"spec":       spec,
	}}
	// Right after the CRD is Established, the resource may take a moment to be served.
	poll(ctx, t, "create PartitionPolicy "+name, func() (bool, string) {
		_, err := api.Create(ctx, obj, metav1.CreateOptions{})
		switch {
		case err == nil:
			return true, ""
		case apierrors.IsNotFound(err) || strings.Contains(err.Error(), "the server could not find the requested resource"):
			return false, err.Error()
		default:
			t.Fatalf("create PartitionPolicy %s: %v", name, err)
			return false, ""
		}
	})
}

// writeStatus writes status the way the controller does: server-side apply to the status
// subresource, as field manager "pgpart", forced; every condition carries observedGeneration.
func writeStatus(ctx context.Context, t *testing.T, api dynamic.ResourceInterface, name string, conds []cond, generation int64) {
	t.Helper()
	now := time.Now().UTC().Format(time.RFC3339)
	var list []any
	for _, c := range conds {
		list = append(list, map[string]any{
			"type":               c.Type,
			"status":             c.Status,
			"reason":             c.Reason,
			"message":            c.Message,
			"observedGeneration": generation,
			"lastTransitionTime": now,
		})
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "pgpart.io/v1alpha1",
		"kind":       "PartitionPolicy",
		"metadata":   map[string]any{"name": name},
		"status": map[string]any{
			"observedGeneration":   generation,
			"conditions":           list,
			"partitions":           int64(7),
			"coveredUntil":         "2027-06-01T00:00:00Z",
			"defaultPartitionRows": int64(0),
			"pendingActions":       []any{},
		},
	}}
	if _, err := api.ApplyStatus(ctx, name, obj, metav1.ApplyOptions{FieldManager: controllerManager, Force: true}); err != nil {
		t.Fatalf("apply status of %s: %v", name, err)
	}
}

// release removes the test finalizer so the deleted object goes away.
func release(t *testing.T, api dynamic.ResourceInterface, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	patch := []byte(`{"metadata":{"finalizers":null}}`)
	if _, err := api.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("remove finalizer of %s: %v", name, err)
	}
}

func poll(ctx context.Context, t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for {
		ok, msg := f()
		if ok {
			return
		}
		last = msg
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func dump(v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}
