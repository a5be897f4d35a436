package helm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/controlplane/keyring"
	"github.com/tollgate-dev/tollgate/controlplane/secret"
	"github.com/tollgate-dev/tollgate/envoy"
	"github.com/tollgate-dev/tollgate/test/helm/valuesdoc"
)

// The chart renders Envoy's bootstrap from a byte-for-byte copy of
// envoy/bootstrap.yaml.tmpl (Helm can only read files inside the chart).
func TestBootstrapTemplateIsEnvoys(t *testing.T) {
	path := filepath.Join(chartDir, "files", "envoy-bootstrap.yaml.tmpl")
	if *update {
		if err := os.WriteFile(path, []byte(envoy.BootstrapTemplate()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != envoy.BootstrapTemplate() {
		t.Errorf("%s differs from envoy/bootstrap.yaml.tmpl: go test ./test/helm -update copies it", path)
	}
}

func TestLint(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"lint", chartDir, "--strict", "--namespace", namespace, "--kube-version", kubeVersion}, c.valuesArgs()...)
			if out, err := runHelm(t, args...); err != nil {
				t.Errorf("%v\n%s", err, out)
			}
		})
	}
}

// The README is generated from values.yaml's comments; every field has one.
func TestREADMEIsCurrent(t *testing.T) {
	want, err := valuesdoc.README(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Error("charts/tollgate/README.md is stale: make generate rewrites it from values.yaml")
	}
}

// Without existing Secrets the chart generates a master keyring and an
// operator token tollgate accepts, different on every install, and marks
// them to outlive an uninstall.
func TestGeneratedSecrets(t *testing.T) {
	first := generated(t)
	second := generated(t)
	ring, ok := first["master-key"]
	if !ok {
		t.Fatal("no generated master key")
	}
	if _, err := keyring.Parse(ring); err != nil {
		t.Errorf("the generated master key: %v", err)
	}
	if err := secret.Check(secret.OperatorToken, first["operator-token"]); err != nil {
		t.Errorf("the generated operator token: %v", err)
	}
	for k, v := range first {
		if second[k] == v {
			t.Errorf("two installs generated the same %s", k)
		}
	}
}

func generated(t *testing.T) map[string]string {
	t.Helper()
	objs := decode(t, render(t))
	out := map[string]string{}
	for _, s := range all[*corev1.Secret](objs) {
		if !strings.HasSuffix(s.Name, "-master-key") && !strings.HasSuffix(s.Name, "-operator-token") {
			continue
		}
		if s.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Errorf("Secret %s would be deleted on uninstall", s.Name)
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	}
	return out
}

// Every field values.schema.json lists is in values.yaml, where it is
// documented: the schema admits no field a reader of the README cannot
// find, short of the optional parts of a field documented whole (a
// resources map). The other direction, values.yaml fields the schema
// rejects, is helm lint's.
func TestSchemaListsOnlyValuesFields(t *testing.T) {
	var schema map[string]any
	b, err := os.ReadFile(filepath.Join(chartDir, "values.schema.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &schema); err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if b, err = os.ReadFile(filepath.Join(chartDir, "values.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	rows, err := valuesdoc.Rows(b)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{} // fields documented whole, like resources
	for _, r := range rows {
		documented[r.Key] = true
	}
	var walk func(path string, s map[string]any, v any)
	walk = func(path string, s map[string]any, v any) {
		if allowsOthers, ok := s["additionalProperties"].(bool); !ok || allowsOthers {
			return // a free-form map (annotations, resources lists, affinity)
		}
		vm, _ := v.(map[string]any)
		props, _ := s["properties"].(map[string]any)
		for name, sub := range props {
			val, ok := vm[name]
			if !ok {
				t.Errorf("values.schema.json lists %s%s, which values.yaml lacks", path, name)
				continue
			}
			if subSchema, ok := sub.(map[string]any); ok && !documented[path+name] {
				walk(path+name+".", subSchema, val)
			}
		}
	}
	walk("", schema, values)
}
