package helm

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The install guide's commands name objects the chart makes: every
// Secret, Service, Deployment and Job a kubectl or tollgatectl command in
// docs/kubernetes.md refers to exists in a default install of the release
// "tollgate" in the namespace "tollgate", as the guide has it (a Secret the
// guide creates is one the default install reads, or one it passes with
// --set).
func TestInstallGuideMatchesTheChart(t *testing.T) {
	doc, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runHelm(t, "template", "tollgate", chartDir, "--namespace", "tollgate", "--kube-version", kubeVersion)
	if err != nil {
		t.Fatal(err)
	}
	objs := decodeIn(t, out, "tollgate")

	names := map[string][]string{}
	for _, o := range objs {
		names[o.Kind] = append(names[o.Kind], o.Name)
	}
	// Secrets the pods read exist at run time: the chart's own, the
	// operator's (database.existingSecret) and cert-manager's.
	secrets := slices.Clone(names["Secret"])
	for _, spec := range podSpecs(objs) {
		for _, v := range spec.Volumes {
			if v.Secret != nil {
				secrets = append(secrets, v.Secret.SecretName)
			}
		}
		for _, c := range slices.Concat(spec.Containers, spec.InitContainers) {
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					secrets = append(secrets, e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
	var serverNames []string
	for _, c := range all[*certificate](objs) {
		serverNames = append(serverNames, c.Spec.DNSNames...)
	}

	refs := []struct {
		re    *regexp.Regexp
		known []string
		what  string
	}{
		{regexp.MustCompile(`kubectl -n tollgate get secret ([a-z0-9-]+)`), secrets, "Secret"},
		{regexp.MustCompile(`kubectl -n tollgate create secret generic ([a-z0-9-]+)`), append(secrets, givenSecrets(string(doc))...), "Secret"},
		{regexp.MustCompile(`port-forward svc/([a-z0-9-]+)`), names["Service"], "Service"},
		{regexp.MustCompile(`deployment/([a-z0-9-]+)`), names["Deployment"], "Deployment"},
		{regexp.MustCompile(`job/([a-z0-9-]+)`), names["Job"], "Job"},
		{regexp.MustCompile(`--tls-server-name ([a-z0-9.-]+)`), serverNames, "name in the server certificate"},
	}
	found := 0
	for _, r := range refs {
		for _, m := range r.re.FindAllStringSubmatch(string(doc), -1) {
			found++
			if !slices.Contains(r.known, m[1]) {
				t.Errorf("docs/kubernetes.md refers to the %s %q, which a default install does not have (it has %v)", r.what, m[1], r.known)
			}
		}
	}
	if found < 8 {
		t.Errorf("found %d references in docs/kubernetes.md; the patterns no longer match the guide", found)
	}
	// The guide's port-forward and client port are the chart's.
	if !strings.Contains(string(doc), "svc/tollgate-admin 7070:7070") {
		t.Error("docs/kubernetes.md does not port-forward the admin API's port")
	}
	svc := find[*corev1.Service](t, objs, "tollgate")
	if svc.Spec.Ports[0].Port != 80 || !strings.Contains(string(doc), "svc/tollgate 8080:80") {
		t.Errorf("the client-traffic Service's port is %d; the guide says 80", svc.Spec.Ports[0].Port)
	}
}

// givenSecrets returns the Secret names the guide hands to the chart with
// --set (e.g. --set notifications.smtp.passwordSecret=tollgate-smtp): the
// operator creates those, and a default install does not refer to them.
func givenSecrets(doc string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`--set [a-zA-Z.]*[sS]ecret=([a-z0-9-]+)`).FindAllStringSubmatch(doc, -1) {
		out = append(out, m[1])
	}
	return out
}
