package kstatus

import (
	"fmt"
	"os"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/ext"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// fluxPoliciesFile holds the Flux Kustomization whose healthCheckExprs judge policies.
const fluxPoliciesFile = "../../gitops/flux/policies.yaml"

// healthExprs are one entry of a Flux Kustomization's spec.healthCheckExprs.
type healthExprs struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	InProgress string `json:"inProgress"`
	Failed     string `json:"failed"`
	Current    string `json:"current"`
}

// partitionPolicyExprs reads the PartitionPolicy entry of gitops/flux/policies.yaml.
func partitionPolicyExprs() (*healthExprs, error) {
	raw, err := os.ReadFile(fluxPoliciesFile)
	if err != nil {
		return nil, err
	}
	var k struct {
		Kind string `json:"kind"`
		Spec struct {
			Wait             bool          `json:"wait"`
			HealthCheckExprs []healthExprs `json:"healthCheckExprs"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return nil, fmt.Errorf("parse %s: %w", fluxPoliciesFile, err)
	}
	for _, e := range k.Spec.HealthCheckExprs {
		if e.APIVersion == "pgpart.io/v1alpha1" && e.Kind == "PartitionPolicy" {
			if e.Current == "" {
				return nil, fmt.Errorf("%s: the PartitionPolicy entry has no current expression", fluxPoliciesFile)
			}
			return &e, nil
		}
	}
	return nil, fmt.Errorf("%s has no healthCheckExprs entry for pgpart.io/v1alpha1 PartitionPolicy", fluxPoliciesFile)
}

// celBool evaluates one expression the way Flux's kustomize-controller does: parsed (not
// type-checked, since the object's fields are not declared) in an environment with the
// same options, the object's top-level fields as variables.
func celBool(expr string, obj map[string]any) (bool, error) {
	env, err := cel.NewEnv(
		cel.HomogeneousAggregateLiterals(),
		cel.EagerlyValidateDeclarations(true),
		cel.DefaultUTCTimeZone(true),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		ext.Sets(),
		ext.Encoders(),
	)
	if err != nil {
		return false, err
	}
	ast, issues := env.Parse(expr)
	if issues != nil && issues.Err() != nil {
		return false, fmt.Errorf("parse %q: %w", expr, issues.Err())
	}
	prog, err := env.Program(ast, cel.EvalOptions(cel.OptOptimize), cel.InterruptCheckFrequency(100))
	if err != nil {
		return false, fmt.Errorf("program %q: %w", expr, err)
	}
	val, _, err := prog.Eval(obj)
	if err != nil {
		return false, fmt.Errorf("evaluate %q: %w", expr, err)
	}
	b, ok := val.(types.Bool)
	if !ok {
		return false, fmt.Errorf("%q does not give a boolean (%v)", expr, val)
	}
	return bool(b), nil
}

// fluxStatus is the health Flux gives an object with healthCheckExprs (Flux RFC 0009):
// InProgress while status.observedGeneration (if present) differs from
// metadata.generation; then the first of inProgress, failed, current that is true;
// InProgress when none is. An expression that can't be evaluated (e.g. no status yet)
// is an error, and Flux keeps polling until its timeout.
func fluxStatus(e *healthExprs, u *unstructured.Unstructured) (status.Status, error) {
	obj := u.UnstructuredContent()
	if og, found, err := unstructured.NestedInt64(obj, "status", "observedGeneration"); err != nil {
		return "", err
	} else if found {
		gen, ok, err := unstructured.NestedInt64(obj, "metadata", "generation")
		if err != nil {
			return "", err
		}
		if ok && gen != og {
			return status.InProgressStatus, nil
		}
	}
	for _, step := range []struct {
		expr string
		st   status.Status
	}{
		{e.InProgress, status.InProgressStatus},
		{e.Failed, status.FailedStatus},
		{e.Current, status.CurrentStatus},
	} {
		if step.expr == "" {
			continue
		}
		ok, err := celBool(step.expr, obj)
		if err != nil {
			return "", err
		}
		if ok {
			return step.st, nil
		}
	}
	return status.InProgressStatus, nil
}
