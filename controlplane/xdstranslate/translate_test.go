package xdstranslate

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/controlplane/ir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/out")

// fakeOpen "opens" credentials stored as "sealed:<plaintext>".
func fakeOpen(sealed []byte, _ uuid.UUID) ([]byte, error) {
	plain, ok := bytes.CutPrefix(sealed, []byte("sealed:"))
	if !ok {
		return nil, errors.New("unknown key id")
	}
	return plain, nil
}

func testOptions() Options {
	o := DefaultOptions()
	o.ListenAddress = "127.0.0.1"
	return o
}

// TestGolden translates every testdata/in/*.yaml gateway and compares each
// kind of output with testdata/out/<name>.<kind>.yaml. Run with -update to
// rewrite them after an intended change, and review the diff.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/in/*.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no inputs: %v", err)
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".yaml")
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var g ir.Gateway
			if err := yaml.UnmarshalStrict(raw, &g); err != nil {
				t.Fatalf("reading %s: %v", in, err)
			}
			g.Sort()
			envoy, envoyErr := TranslateEnvoy(&g, testOptions())
			if envoy == nil {
				t.Fatalf("no Envoy configuration: %v", envoyErr)
			}
			cfg, cfgErr := TranslateConfig(&g, fakeOpen)
			outputs := map[string]any{
				"listeners": asMessages(envoy.Listeners),
				"routes":    asMessages(envoy.Routes),
				"clusters":  asMessages(envoy.Clusters),
				"config":    cfg,
				"errors":    errorLines(envoyErr, cfgErr),
			}
			for kind, v := range outputs {
				golden(t, filepath.Join("testdata", "out", name+"."+kind+".yaml"), toYAML(t, v))
			}
		})
	}
}

func errorLines(errs ...error) []string {
	lines := []string{}
	for _, err := range errs {
		if err != nil {
			lines = append(lines, strings.Split(err.Error(), "\n")...)
		}
	}
	sort.Strings(lines)
	return lines
}

// toYAML renders protobuf messages with their proto field names, the form
// Envoy's documentation and config dumps use.
func toYAML(t *testing.T, v any) []byte {
	t.Helper()
	var doc any
	switch v := v.(type) {
	case *Config:
		doc = map[string]any{
			"keys": msgMap(t, v.Keys), "tenants": msgMap(t, v.Tenants),
			"providers": msgMap(t, v.Providers), "models": msgMap(t, v.Models),
		}
	case []proto.Message:
		list := []any{}
		for _, m := range v {
			list = append(list, msgValue(t, m))
		}
		doc = list
	default:
		doc = v
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.JSONToYAML(b)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func msgValue(t *testing.T, m proto.Message) any {
	t.Helper()
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func msgMap[M proto.Message](t *testing.T, m map[string]M) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = msgValue(t, v)
	}
	return out
}

func asMessages[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the translation (run go test -update and review the diff):\n%s", path, firstDiff(want, got))
	}
}

func firstDiff(want, got []byte) string {
	wl, gl := strings.Split(string(want), "\n"), strings.Split(string(got), "\n")
	for i := 0; i < len(wl) || i < len(gl); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d:\n  want %q\n  got  %q", i+1, w, g)
		}
	}
	return ""
}
