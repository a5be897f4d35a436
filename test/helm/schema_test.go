package helm

import (
	"strings"
	"testing"
)

// values.schema.json rejects misspelt fields and wrong types, and the
// chart refuses combinations of values it cannot deploy, each with a
// message that names the field.
func TestBadValuesAreRejected(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"misspelt top-level field", []string{"--set", "replicas=3"}, "additional properties 'replicas' not allowed"},
		{"misspelt nested field", []string{"--set", "envoy.autoscalling.enabled=false"}, "at '/envoy': additional properties 'autoscalling' not allowed"},
		{"misspelt field in a values file", []string{"-f", "testdata/bad/typo.yaml"}, "at '/controlplane/pdb': additional properties 'maxUnavaliable' not allowed"},
		{"string for an integer", []string{"--set-json", `controlplane.replicas="2"`}, "at '/controlplane/replicas': got string, want integer"},
		{"string for a boolean", []string{"--set", "envoy.autoscaling.enabled=yes"}, "at '/envoy/autoscaling/enabled': got string, want boolean"},
		{"string for a list", []string{"--set", "networkPolicy.trafficFrom=everyone"}, "at '/networkPolicy/trafficFrom': got string, want array"},
		{"port out of range", []string{"--set", "envoy.port=70000"}, "at '/envoy/port': maximum"},
		{"unknown TLS mode", []string{"--set", "tls.mode=mtls"}, "at '/tls/mode': value must be one of"},
		{"not a quantity", []string{"--set", "controlplane.resources.limits.cpu=lots"}, "at '/controlplane/resources/limits/cpu'"},
		{"extra argument that is not a flag", []string{"--set", "controlplane.extraArgs[0]=route-timeout"}, "at '/controlplane/extraArgs/0'"},
		{"SQLite DSN", []string{"--set", "database.dsn=sqlite:///var/lib/tollgate/db"}, "at '/database/dsn'"},
		{"no database", []string{"--set", "database.existingSecret="}, "no database: set database.existingSecret"},
		{"in-chart CockroachDB and a DSN", []string{"--set", "cockroachdb.enabled=true,database.dsn=postgres://h/db"}, "leave database.dsn empty"},
		{"grace period shorter than the preStop sleep", []string{"--set", "envoy.preStopSleepSeconds=60"}, "must exceed envoy.preStopSleepSeconds"},
		{"TLS from Secrets without their names", []string{"--set", "tls.mode=secret"}, "tls.mode=secret needs tls.serverSecret and tls.clientSecret"},
		{"single sign-on without its client secret", []string{"--set", "web.sso.issuer=https://id.example.com,web.sso.clientID=c,web.baseURL=https://console.example.com"}, "web.sso.issuer needs"},
		{"single sign-on over plain HTTP", []string{"--set", "web.sso.issuer=http://id.example.com"}, "at '/web/sso/issuer'"},
		{"sample ratio above one", []string{"--set", "otlp.traceSampleRatio=2"}, "at '/otlp/traceSampleRatio': maximum"},
		{"collector given as a URL", []string{"--set", "otlp.endpoint=http://collector:4317"}, "at '/otlp/endpoint'"},
		{"client address header that is not a header name", []string{"--set", "web.clientIPHeader=X-Forwarded-For: 1.2.3.4"}, "at '/web/clientIPHeader'"},
		{"unknown console Service type", []string{"--set", "web.service.type=NodePort"}, "at '/web/service/type': value must be one of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, tc.args...)
			_, err := runHelm(t, args...)
			if err == nil {
				t.Fatalf("helm template %v succeeded; want an error with %q", tc.args, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v\nwant one with %q", err, tc.want)
			}
		})
	}
}
