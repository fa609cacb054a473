// Command crdcheck validates the generated CRDs and the fixtures with the Kubernetes 1.35
// apiextensions-apiserver code itself: CRD validation (structural schema, CEL compilation
// and cost estimation) and, per object, pruning, defaulting, OpenAPI and CEL validation in
// the order the API server applies them. It prints every error and exits 1 when a CRD is
// refused, a valid fixture is rejected, or an invalid fixture is not rejected with the
// message its `# expect:` line names.
//
// Usage: go run . <crd dir> <fixtures dir>   (from crds/tools/crdcheck)
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	crdvalidation "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"
)

type kindCheck struct {
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

func main() {
	crdDir, fixtureDir := os.Args[1], os.Args[2]
	ctx := context.Background()
	failed := false
	kinds := map[string]kindCheck{}
	crdFiles, _ := filepath.Glob(filepath.Join(crdDir, "*.yaml"))
	for _, file := range crdFiles {
		data, err := os.ReadFile(file)
		must(err)
		var v1 apiextensionsv1.CustomResourceDefinition
		must(yaml.UnmarshalStrict(data, &v1))
		apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(&v1)
		var internal apiextensions.CustomResourceDefinition
		must(apiextensionsv1.Convert_v1_CustomResourceDefinition_To_apiextensions_CustomResourceDefinition(&v1, &internal, nil))
		errs := crdvalidation.ValidateCustomResourceDefinition(ctx, &internal)
		fmt.Printf("CRD %s: %d errors\n", filepath.Base(file), len(errs))
		for _, e := range errs {
			failed = true
			fmt.Printf("  CRDERR %s\n", e.Error())
		}
		var schema *apiextensions.JSONSchemaProps
		if internal.Spec.Validation != nil {
			schema = internal.Spec.Validation.OpenAPIV3Schema
		} else {
			schema = internal.Spec.Versions[0].Schema.OpenAPIV3Schema
		}
		ss, err := structuralschema.NewStructural(schema)
		must(err)
		validator, _, err := apiservervalidation.NewSchemaValidator(schema)
		must(err)
		kinds[internal.Spec.Names.Kind] = kindCheck{ss, validator, cel.NewValidator(ss, true, celconfig.PerCallLimit)}
	}
	for _, sub := range []string{"valid", "invalid"} {
		files, _ := filepath.Glob(filepath.Join(fixtureDir, sub, "*.yaml"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			must(err)
			var obj map[string]interface{}
			must(yaml.Unmarshal(data, &obj))
			check, ok := kinds[obj["kind"].(string)]
			if !ok {
				failed = true
				fmt.Printf("FIXTURE %s/%s: unknown kind\n", sub, filepath.Base(file))
				continue
			}
			unknown := pruning.PruneWithOptions(obj, check.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
			structuraldefaulting.Default(obj, check.structural)
			var msgs []string
			for _, p := range unknown {
				msgs = append(msgs, "unknown field \""+p+"\"")
			}
			for _, e := range apiservervalidation.ValidateCustomResource(nil, obj, check.validator) {
				msgs = append(msgs, e.Error())
			}
			celErrs, _ := check.cel.Validate(ctx, nil, check.structural, obj, nil, celconfig.RuntimeCELCostBudget)
			for _, e := range celErrs {
				msgs = append(msgs, e.Error())
			}
			expect := ""
			first := strings.SplitN(string(data), "\n", 2)[0]
			if strings.HasPrefix(first, "# expect: ") {
				expect = strings.TrimPrefix(first, "# expect: ")
			}
			status := "OK"
			switch {
			case sub == "valid" && len(msgs) > 0:
				status = "FAIL(valid rejected)"
			case sub == "invalid" && len(msgs) == 0:
				status = "FAIL(invalid accepted)"
			case sub == "invalid" && !anyContains(msgs, expect):
				status = "FAIL(expect not found)"
			}
			if status != "OK" {
				failed = true
			}
			fmt.Printf("FIXTURE %s/%s: %s\n", sub, filepath.Base(file), status)
			for _, m := range msgs {
				fmt.Printf("    %s\n", m)
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}

func anyContains(msgs []string, s string) bool {
	for _, m := range msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
