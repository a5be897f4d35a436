// Package valuesdoc writes a Helm chart's README from its values.yaml: the
// comment above each field is that field's documentation, so the README
// cannot drift from the values (`make generate` rewrites it, and test/helm
// fails when the committed one is stale).
//
// A field with a comment is one row of the table, whatever its value (a
// documented map, like resources, is shown whole). A field without one
// must be a map whose own fields are documented; anything else is an
// undocumented field and an error.
package valuesdoc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/template"

	"gopkg.in/yaml.v3"
)

// Row is one documented field.
type Row struct {
	Key, Type, Default, Description string
}

// Rows returns the documented fields of values.yaml, in file order.
func Rows(values []byte) ([]Row, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(values, &doc); err != nil {
		return nil, fmt.Errorf("values.yaml: %w", err)
	}
	if len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, errors.New("values.yaml: want a map at the top")
	}
	var rows []Row
	var errs []error
	walk(doc.Content[0], "", &rows, &errs)
	return rows, errors.Join(errs...)
}

func walk(m *yaml.Node, prefix string, rows *[]Row, errs *[]error) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		key := prefix + k.Value
		desc := comment(k.HeadComment)
		switch {
		case desc != "":
			def, typ, err := describe(v)
			if err != nil {
				*errs = append(*errs, fmt.Errorf("values.yaml line %d: %s: %w", k.Line, key, err))
				continue
			}
			*rows = append(*rows, Row{Key: key, Type: typ, Default: def, Description: desc})
		case v.Kind == yaml.MappingNode && len(v.Content) > 0:
			walk(v, key+".", rows, errs)
		default:
			*errs = append(*errs, fmt.Errorf("values.yaml line %d: %s has no comment documenting it", k.Line, key))
		}
	}
}

// comment returns the last paragraph of a head comment, without the '#'s,
// as one line: a comment block separated by a blank line belongs to what
// comes before it (the file's header).
func comment(head string) string {
	if i := strings.LastIndex(head, "\n\n"); i >= 0 {
		head = head[i+2:]
	}
	var words []string
	for _, line := range strings.Split(head, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "#"))
		if line != "" {
			words = append(words, line)
		}
	}
	return strings.Join(words, " ")
}

// describe returns a value's default, as compact JSON, and its type.
func describe(v *yaml.Node) (def, typ string, err error) {
	var x any
	if err := v.Decode(&x); err != nil {
		return "", "", err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(x); err != nil {
		return "", "", err
	}
	switch x.(type) {
	case string:
		typ = "string"
	case int, int64, uint64:
		typ = "int"
	case float64:
		typ = "number"
	case bool:
		typ = "bool"
	case []any:
		typ = "list"
	case map[string]any:
		typ = "object"
	default:
		typ = "null"
	}
	return strings.TrimSuffix(b.String(), "\n"), typ, nil
}

// README renders the chart's README: README.md.gotmpl in chartDir, with
// .Chart (Chart.yaml's name, version, appVersion, description) and .Values
// (the table of documented fields).
func README(chartDir string) ([]byte, error) {
	values, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	rows, err := Rows(values)
	if err != nil {
		return nil, err
	}
	chartYAML, err := os.ReadFile(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return nil, err
	}
	var chart struct {
		Name        string `yaml:"name"`
		Version     string `yaml:"version"`
		AppVersion  string `yaml:"appVersion"`
		Description string `yaml:"description"`
		KubeVersion string `yaml:"kubeVersion"`
	}
	if err := yaml.Unmarshal(chartYAML, &chart); err != nil {
		return nil, fmt.Errorf("reading Chart.yaml: %w", err)
	}
	tmplText, err := os.ReadFile(filepath.Join(chartDir, "README.md.gotmpl"))
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New("README.md.gotmpl").Option("missingkey=error").Parse(string(tmplText))
	if err != nil {
		return nil, err
	}
	var table strings.Builder
	table.WriteString("| Key | Type | Default | Description |\n|-----|------|---------|-------------|\n")
	for _, r := range rows {
		fmt.Fprintf(&table, "| `%s` | %s | %s | %s |\n", r.Key, r.Type, cell("`"+r.Default+"`"), cell(r.Description))
	}
	var out bytes.Buffer
	if err := tmpl.Execute(&out, map[string]any{"Chart": chart, "Values": table.String()}); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// cell escapes what would break a Markdown table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
