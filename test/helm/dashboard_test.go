package helm

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// With metrics.grafanaDashboard.enabled the chart ships dashboards/tollgate.json
// as it is, in a ConfigMap labelled for Grafana's sidecar; by default it
// ships none.
func TestGrafanaDashboardConfigMap(t *testing.T) {
	want, err := os.ReadFile(filepath.Join(chartDir, "dashboards", "tollgate.json"))
	if err != nil {
		t.Fatal(err)
	}
	objs := decode(t, render(t, "--set", "metrics.grafanaDashboard.enabled=true"))
	cm := find[*corev1.ConfigMap](t, objs, release+"-dashboard")
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("labels %v: want the sidecar's grafana_dashboard=1", cm.Labels)
	}
	if got := cm.Data["tollgate.json"]; !bytes.Equal([]byte(got), bytes.TrimRight(want, "\n")) {
		t.Errorf("the ConfigMap's tollgate.json differs from dashboards/tollgate.json (%d bytes, want %d)", len(got), len(want))
	}
	for _, o := range decode(t, render(t)) {
		if o.Kind == "ConfigMap" && o.Name == release+"-dashboard" {
			t.Error("the dashboard ConfigMap is rendered by default")
		}
	}
	for _, o := range decode(t, render(t, "--set", "metrics.grafanaDashboard.enabled=true", "--set", "metrics.enabled=false")) {
		if o.Kind == "ConfigMap" && o.Name == release+"-dashboard" {
			t.Error("the dashboard ConfigMap is rendered without metrics")
		}
	}
}
