// Package helm tests the Helm chart in charts/tollgate without a cluster:
// helm lint, helm template for several values files against golden renders
// (-update rewrites them), every rendered object decoded strictly into its
// Kubernetes type, and checks of what a cluster would only reveal later: a
// secret in a ConfigMap, a container without probes or limits, an Envoy
// bootstrap that is not envoy/'s, a flag tollgate does not have.
//
// The helm binary is bin/helm (`make helm`, pinned in tools/go.mod);
// `make test` passes it in TOLLGATE_HELM. Without one the tests skip,
// unless TOLLGATE_TEST_REQUIRE_HELM=1 (.ci/run sets it), when they fail.
package helm

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3" // the bootstrap's typed_config
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"        // the bootstrap's typed_config
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tollgate-dev/tollgate/envoy"
)

var update = flag.Bool("update", false, "rewrite the golden renders and the chart's copy of envoy/bootstrap.yaml.tmpl")

const (
	chartDir    = "../../charts/tollgate"
	release     = "tollgate"
	namespace   = "gateway"
	kubeVersion = "1.30.0" // the oldest the chart supports (Chart.yaml kubeVersion)

	// generatedMark replaces generated secret values in golden renders:
	// they are random on every render.
	generatedMark = "GENERATED-BY-HELM"
)

// renderCase is one values file and what its render must hold.
type renderCase struct {
	// name is the golden file's name, and the values file's under
	// testdata/values ("default" has none).
	name string
	// bootstrap is what envoy.Render must be given to produce the Envoy
	// ConfigMap's bootstrap.
	bootstrap envoy.Params
}

func tlsParams() *envoy.TLSFiles {
	return &envoy.TLSFiles{
		CertFile: "/etc/tollgate/xds-tls/tls.crt", KeyFile: "/etc/tollgate/xds-tls/tls.key",
		CAFile: "/etc/tollgate/xds-tls/ca.crt", ServerName: "tollgate-xds.gateway.svc",
	}
}

func bootstrapParams(tls *envoy.TLSFiles) envoy.Params {
	return envoy.Params{
		NodeID: "tollgate-envoy", AdminPort: 9901,
		XDSHost: "tollgate-xds.gateway.svc", XDSPort: 7071, XDSTLS: tls,
		ExtProcHost: "127.0.0.1", ExtProcPort: 7072,
	}
}

var cases = []renderCase{
	{name: "default", bootstrap: bootstrapParams(tlsParams())},
	{name: "external-dsn", bootstrap: bootstrapParams(tlsParams())},
	{name: "inline-dsn", bootstrap: bootstrapParams(tlsParams())},
	{name: "cockroachdb", bootstrap: bootstrapParams(nil)},
	{name: "cert-manager", bootstrap: bootstrapParams(tlsParams())},
	{name: "hpa-off", bootstrap: bootstrapParams(tlsParams())},
	{name: "notifications", bootstrap: bootstrapParams(tlsParams())},
	{name: "web-sso", bootstrap: bootstrapParams(tlsParams())},
	{name: "telemetry", bootstrap: bootstrapParams(tlsParams())},
}

func (c renderCase) valuesArgs() []string {
	if c.name == "default" {
		return nil
	}
	return []string{"-f", filepath.Join("testdata", "values", c.name+".yaml")}
}

// helmBin returns the helm binary to test with.
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("TOLLGATE_HELM"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("TOLLGATE_HELM: %v (make helm builds it)", err)
		}
		return p
	}
	if p, err := filepath.Abs("../../bin/helm"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("helm"); err == nil {
		return p
	}
	if os.Getenv("TOLLGATE_TEST_REQUIRE_HELM") == "1" {
		t.Fatal("TOLLGATE_TEST_REQUIRE_HELM=1 but no helm: run make helm or set TOLLGATE_HELM")
	}
	t.Skip("no helm binary: make helm builds the pinned one (make test does)")
	return ""
}

// runHelm runs helm and returns its stdout, or its stderr as the error.
func runHelm(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Helm must not read the developer's repositories or plugins.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("helm %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.Bytes(), nil
}

func render(t *testing.T, extra ...string) []byte {
	t.Helper()
	args := append([]string{"template", release, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}, extra...)
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// object is one rendered Kubernetes object.
type object struct {
	Kind, Name string
	Raw        []byte // its YAML as rendered
	Obj        any    // decoded into its Go type
}

// kinds maps apiVersion/kind to a new value of the object's Go type. The
// cert-manager and Prometheus Operator kinds have no k8s.io/api type: the
// structs in crds_test.go mirror the fields of their v1 APIs that the
// chart uses.
var kinds = map[string]func() any{
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                              func() any { return &corev1.Secret{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                      func() any { return &corev1.ServiceAccount{} },
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                    func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                           func() any { return &batchv1.Job{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":     func() any { return &networkingv1.NetworkPolicy{} },
	"cert-manager.io/v1/Certificate":         func() any { return &certificate{} },
	"cert-manager.io/v1/Issuer":              func() any { return &issuer{} },
	"monitoring.coreos.com/v1/ServiceMonitor": func() any {
		return &serviceMonitor{}
	},
}

// decode splits a render into objects, each decoded strictly: a field its
// Go type does not have (a misspelt or misplaced one) is an error.
func decode(t *testing.T, rendered []byte) []object {
	t.Helper()
	return decodeIn(t, rendered, namespace)
}

// decodeIn is decode for a render into namespace ns.
func decodeIn(t *testing.T, rendered []byte, ns string) []object {
	t.Helper()
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(rendered)))
	var objs []object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		if meta.Kind == "" {
			continue // only comments
		}
		newObj, ok := kinds[meta.APIVersion+"/"+meta.Kind]
		if !ok {
			t.Errorf("%s %s: no Go type to check it against (add it to kinds)", meta.APIVersion+"/"+meta.Kind, meta.Metadata.Name)
			continue
		}
		o := newObj()
		if err := yaml.UnmarshalStrict(doc, o); err != nil {
			t.Errorf("%s %s does not decode strictly: %v", meta.Kind, meta.Metadata.Name, err)
			continue
		}
		if meta.Metadata.Namespace != ns {
			t.Errorf("%s %s: namespace %q, want the release's (%q)", meta.Kind, meta.Metadata.Name, meta.Metadata.Namespace, ns)
		}
		objs = append(objs, object{Kind: meta.Kind, Name: meta.Metadata.Name, Raw: doc, Obj: o})
	}
	if len(objs) == 0 {
		t.Fatal("the render holds no object")
	}
	return objs
}

func find[T any](t *testing.T, objs []object, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok && o.Name == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %s in the render", zero, name)
	return zero
}

func all[T any](objs []object) []T {
	var out []T
	for _, o := range objs {
		if v, ok := o.Obj.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// generatedSecrets returns the values of the Secrets the chart generates
// (kept across upgrades with lookup), which differ on every render.
func generatedSecrets(objs []object) map[string]string {
	out := map[string]string{}
	for _, s := range all[*corev1.Secret](objs) {
		if s.Annotations["helm.sh/resource-policy"] != "keep" {
			continue
		}
		for k, v := range s.Data {
			out[s.Name+"/"+k] = string(v)
		}
	}
	return out
}

// TestRender renders the chart for every case, compares the render with
// its golden file and checks it.
func TestRender(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := render(t, c.valuesArgs()...)
			objs := decode(t, out)
			golden := out
			for _, v := range generatedSecrets(objs) {
				golden = bytes.ReplaceAll(golden, []byte(base64.StdEncoding.EncodeToString([]byte(v))), []byte(generatedMark))
			}
			compareGolden(t, filepath.Join("testdata", "golden", c.name+".yaml"), golden)

			checkSecretsStayInSecrets(t, objs)
			checkWorkloads(t, objs)
			checkBootstrap(t, objs, c.bootstrap)
			checkMigration(t, objs)
			checkTollgateFlags(t, objs)
		})
	}
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./test/helm -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Errorf("the render differs from %s at line %d:\n got: %q\nwant: %q\n(go test ./test/helm -update rewrites the golden files; review the diff)", path, i+1, g, w)
				return
			}
		}
	}
}

// Secret values appear in Secrets only: not in a ConfigMap, an argument,
// an environment value or an annotation.
func checkSecretsStayInSecrets(t *testing.T, objs []object) {
	t.Helper()
	var values []string
	for _, s := range all[*corev1.Secret](objs) {
		for _, v := range s.Data {
			values = append(values, string(v))
		}
		for _, v := range s.StringData {
			values = append(values, v)
		}
	}
	for _, o := range objs {
		if o.Kind == "Secret" {
			continue
		}
		for _, v := range values {
			for _, line := range strings.Split(v, "\n") {
				if line = strings.TrimSpace(line); line != "" && bytes.Contains(o.Raw, []byte(line)) {
					t.Errorf("%s %s holds a Secret's value", o.Kind, o.Name)
				}
			}
		}
	}
}

// podSpecs returns every pod template in the render, by workload.
func podSpecs(objs []object) map[string]corev1.PodSpec {
	specs := map[string]corev1.PodSpec{}
	for _, d := range all[*appsv1.Deployment](objs) {
		specs["Deployment "+d.Name] = d.Spec.Template.Spec
	}
	for _, s := range all[*appsv1.StatefulSet](objs) {
		specs["StatefulSet "+s.Name] = s.Spec.Template.Spec
	}
	for _, j := range all[*batchv1.Job](objs) {
		specs["Job "+j.Name] = j.Spec.Template.Spec
	}
	return specs
}

// Every container has requests and limits and a restrictive security
// context; every container that runs for the pod's lifetime (not a Job's)
// has startup, readiness and liveness probes. No pod gets an API token.
func checkWorkloads(t *testing.T, objs []object) {
	t.Helper()
	for workload, spec := range podSpecs(objs) {
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s: automountServiceAccountToken is not false", workload)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: the pod's securityContext must set runAsNonRoot and seccomp RuntimeDefault: %+v", workload, psc)
		}
		longRunning := !strings.HasPrefix(workload, "Job ")
		containers := slices.Clone(spec.Containers)
		for _, c := range spec.InitContainers {
			if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Errorf("%s: init container %s is not a sidecar; check it like the others before allowing it", workload, c.Name)
			}
			containers = append(containers, c)
		}
		for _, c := range containers {
			where := workload + " container " + c.Name
			if longRunning && (c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil) {
				t.Errorf("%s: needs startup, readiness and liveness probes", where)
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, ok := c.Resources.Requests[r]; !ok {
					t.Errorf("%s: no %s request", where, r)
				}
				if _, ok := c.Resources.Limits[r]; !ok {
					t.Errorf("%s: no %s limit", where, r)
				}
			}
			sc := c.SecurityContext
			switch {
			case sc == nil:
				t.Errorf("%s: no securityContext", where)
			case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation,
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem,
				sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot,
				sc.Privileged != nil && *sc.Privileged,
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0,
				sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
				t.Errorf("%s: securityContext must be non-root, read-only root, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault: %+v", where, sc)
			}
		}
	}
}

// The Envoy ConfigMap's bootstrap is envoy.Render's (the template the
// end-to-end tests run), and the Envoy pod is wired to what it names: the
// ConfigMap mounted where Envoy reads it, the client certificate where the
// bootstrap looks, ext_proc listening where the bootstrap sends requests,
// the xDS Service where it connects, and its admin port kept in the pod.
func checkBootstrap(t *testing.T, objs []object, p envoy.Params) {
	t.Helper()
	want, err := envoy.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	cm := find[*corev1.ConfigMap](t, objs, release+"-envoy")
	if got := cm.Data["bootstrap.yaml"]; got != string(want) {
		t.Errorf("the Envoy ConfigMap's bootstrap is not envoy.Render(%+v):\n%s", p, got)
	}
	d := find[*appsv1.Deployment](t, objs, release+"-envoy")
	spec := d.Spec.Template.Spec
	var envoyC, extproc *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == "envoy" {
			envoyC = &spec.Containers[i]
		}
	}
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == "extproc" {
			extproc = &spec.InitContainers[i]
		}
	}
	if envoyC == nil || extproc == nil {
		t.Fatalf("the Envoy pod needs an envoy container and an extproc sidecar: %+v", spec)
	}
	checkEnvoyLoads(t, cm.Data["bootstrap.yaml"], argAfter(envoyC.Args, "--config-yaml"))
	configPath := argAfter(envoyC.Args, "--config-path")
	if !mountsVolume(spec, *envoyC, filepath.Dir(configPath), func(v corev1.Volume) bool {
		return v.ConfigMap != nil && v.ConfigMap.Name == cm.Name
	}) || filepath.Base(configPath) != "bootstrap.yaml" {
		t.Errorf("envoy reads %q, which is not the ConfigMap %s's bootstrap.yaml", configPath, cm.Name)
	}
	if p.XDSTLS != nil {
		for _, c := range []corev1.Container{*envoyC, *extproc} {
			if !mountsVolume(spec, c, filepath.Dir(p.XDSTLS.CertFile), func(v corev1.Volume) bool { return v.Secret != nil }) {
				t.Errorf("container %s does not mount the client certificate's Secret at %s", c.Name, filepath.Dir(p.XDSTLS.CertFile))
			}
		}
	}
	if p.XDSTLS != nil {
		checkCertificates(t, objs, spec, p.XDSTLS.ServerName)
	}
	if got, want := flagValue(extproc.Args, "--listen"), fmt.Sprintf("%s:%d", p.ExtProcHost, p.ExtProcPort); got != want {
		t.Errorf("ext_proc listens on %q, the bootstrap sends requests to %q", got, want)
	}
	if got, want := flagValue(extproc.Args, "--xds-addr"), fmt.Sprintf("%s:%d", p.XDSHost, p.XDSPort); got != want {
		t.Errorf("ext_proc dials xDS at %q, Envoy at %q", got, want)
	}
	svcName, _, _ := strings.Cut(p.XDSHost, ".")
	svc := find[*corev1.Service](t, objs, svcName)
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != int32(p.XDSPort) || svc.Spec.Ports[0].TargetPort.String() != "xds" {
		t.Errorf("Service %s does not serve xDS on %d: %+v", svcName, p.XDSPort, svc.Spec.Ports)
	}
	for _, c := range append(slices.Clone(spec.Containers), spec.InitContainers...) {
		for _, port := range c.Ports {
			if port.ContainerPort == int32(p.AdminPort) {
				t.Errorf("container %s exposes Envoy's admin port %d", c.Name, p.AdminPort)
			}
		}
	}
}

func argAfter(args []string, name string) string {
	if i := slices.Index(args, name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// flagValue returns the value of --name=value in args.
func flagValue(args []string, name string) string {
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

func mountsVolume(spec corev1.PodSpec, c corev1.Container, path string, is func(corev1.Volume) bool) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && is(v) {
				return true
			}
		}
	}
	return false
}

// The schema is migrated before the control plane needs it: when the
// migration Job runs before install, the control plane does not migrate
// (--no-migrate) and the DSN Secret the Job reads exists before it (a hook
// of lower weight, or the operator's own Secret); when it runs before
// upgrades only (the in-chart CockroachDB, which only exists after
// install), the control plane migrates at start-up.
func checkMigration(t *testing.T, objs []object) {
	t.Helper()
	job := find[*batchv1.Job](t, objs, release+"-migrate")
	hooks := strings.Split(job.Annotations["helm.sh/hook"], ",")
	if !slices.Contains(hooks, "pre-upgrade") {
		t.Errorf("the migration Job does not run before upgrades: %v", hooks)
	}
	cp := find[*appsv1.Deployment](t, objs, release+"-controlplane")
	if *cp.Spec.Replicas < 2 {
		t.Errorf("the control plane runs %d replica(s), want 2 or more", *cp.Spec.Replicas)
	}
	noMigrate := slices.Contains(cp.Spec.Template.Spec.Containers[0].Args, "--no-migrate")
	if slices.Contains(hooks, "pre-install") != noMigrate {
		t.Errorf("migration hooks %v with --no-migrate=%v: either the Job migrates before install or the control plane does", hooks, noMigrate)
	}
	ref := job.Spec.Template.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef
	for _, s := range all[*corev1.Secret](objs) {
		if s.Name != ref.Name {
			continue
		}
		if s.Annotations["helm.sh/hook"] != job.Annotations["helm.sh/hook"] && s.Annotations["helm.sh/hook"] != "pre-install,pre-upgrade" {
			t.Errorf("the DSN Secret %s is not created before the migration Job (hooks %q)", s.Name, s.Annotations["helm.sh/hook"])
		}
		sw, err1 := strconv.Atoi(s.Annotations["helm.sh/hook-weight"])
		jw, err2 := strconv.Atoi(job.Annotations["helm.sh/hook-weight"])
		if err1 != nil || err2 != nil || sw >= jw {
			t.Errorf("the DSN Secret's hook weight %s is not below the Job's %s", s.Annotations["helm.sh/hook-weight"], job.Annotations["helm.sh/hook-weight"])
		}
	}
}

// With cert-manager, the server certificate names the xDS host Envoy and
// ext_proc verify and lands in the Secret the control plane mounts; the
// client certificate lands in the Secret the Envoy pod mounts.
func checkCertificates(t *testing.T, objs []object, envoyPod corev1.PodSpec, xdsServerName string) {
	t.Helper()
	certs := all[*certificate](objs)
	if len(certs) == 0 {
		return // tls.mode=secret: the operator's certificates
	}
	server := find[*certificate](t, objs, release+"-server")
	client := find[*certificate](t, objs, release+"-dataplane")
	if !slices.Contains(server.Spec.DNSNames, xdsServerName) {
		t.Errorf("the server certificate's names %v lack %q, which Envoy and ext_proc verify", server.Spec.DNSNames, xdsServerName)
	}
	if !slices.Equal(server.Spec.Usages, []string{"server auth"}) || !slices.Equal(client.Spec.Usages, []string{"client auth"}) {
		t.Errorf("certificate usages: server %v, client %v", server.Spec.Usages, client.Spec.Usages)
	}
	cp := find[*appsv1.Deployment](t, objs, release+"-controlplane").Spec.Template.Spec
	if !slices.ContainsFunc(cp.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == server.Spec.SecretName }) {
		t.Errorf("the control plane does not mount the server certificate's Secret %s", server.Spec.SecretName)
	}
	if !slices.ContainsFunc(envoyPod.Volumes, func(v corev1.Volume) bool { return v.Secret != nil && v.Secret.SecretName == client.Spec.SecretName }) {
		t.Errorf("the Envoy pod does not mount the client certificate's Secret %s", client.Spec.SecretName)
	}
}

// checkEnvoyLoads does what Envoy does with the pod's arguments: it reads
// the bootstrap file, merges the --config-yaml override over it (the pod
// name as node id) and validates the result.
func checkEnvoyLoads(t *testing.T, bootstrap, override string) {
	t.Helper()
	parse := func(what, text string) *bootstrapv3.Bootstrap {
		js, err := yaml.YAMLToJSON([]byte(text))
		if err != nil {
			t.Fatalf("%s is not YAML: %v", what, err)
		}
		b := &bootstrapv3.Bootstrap{}
		if err := protojson.Unmarshal(js, b); err != nil {
			t.Fatalf("%s is not an Envoy Bootstrap: %v", what, err)
		}
		return b
	}
	b := parse("the bootstrap", bootstrap)
	proto.Merge(b, parse("--config-yaml", override))
	if err := b.ValidateAll(); err != nil {
		t.Errorf("the bootstrap with the --config-yaml override is invalid: %v", err)
	}
	if got := b.GetNode().GetId(); got != "$(POD_NAME)" {
		t.Errorf("Envoy's node id is %q, want the pod name ($(POD_NAME), which the kubelet expands)", got)
	}
	if got := b.GetNode().GetCluster(); got != "tollgate" {
		t.Errorf("the override lost node.cluster: %q", got)
	}
}
