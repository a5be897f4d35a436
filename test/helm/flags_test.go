package helm

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

var tollgateBin = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "tollgate-helm-test-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tollgate")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tollgate-dev/tollgate/cmd/tollgate")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", errors.New("building tollgate: " + err.Error() + ": " + string(out))
	}
	return bin, nil
})

func TestMain(m *testing.M) {
	code := m.Run()
	if bin, err := tollgateBin(); err == nil && bin != "" {
		_ = os.RemoveAll(filepath.Dir(bin)) // a temporary directory; nothing else to do if it stays
	}
	os.Exit(code)
}

// Every flag the chart passes to tollgate exists, with a value it accepts,
// and every TOLLGATE_ variable it sets is one the command reads: the real
// binary parses the rendered arguments (then -h stops it before it runs).
func checkTollgateFlags(t *testing.T, objs []object) {
	t.Helper()
	bin, err := tollgateBin()
	if err != nil {
		t.Fatal(err)
	}
	var containers []corev1.Container
	for _, d := range all[*appsv1.Deployment](objs) {
		containers = append(containers, d.Spec.Template.Spec.Containers...)
		containers = append(containers, d.Spec.Template.Spec.InitContainers...)
	}
	for _, j := range all[*batchv1.Job](objs) {
		containers = append(containers, j.Spec.Template.Spec.Containers...)
	}
	checked := 0
	for _, c := range containers {
		if !strings.Contains(c.Image, "/tollgate:") {
			continue
		}
		checked++
		if len(c.Command) > 0 || len(c.Args) == 0 {
			t.Errorf("container %s: want the image's entrypoint and a subcommand in args, got command %q args %q", c.Name, c.Command, c.Args)
			continue
		}
		cmd := exec.Command(bin, append(append([]string{}, c.Args...), "-h")...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			reason, _, _ := strings.Cut(stderr.String(), "\n") // the rest is the usage
			t.Errorf("container %s: tollgate %s rejects its arguments: %v: %s", c.Name, strings.Join(c.Args, " "), err, reason)
			continue
		}
		for _, e := range c.Env {
			if strings.HasPrefix(e.Name, "TOLLGATE_") && !strings.Contains(stderr.String(), e.Name) {
				t.Errorf("container %s sets %s, which `tollgate %s -h` does not mention", c.Name, e.Name, c.Args[0])
			}
		}
	}
	if checked < 3 {
		t.Errorf("checked %d tollgate containers, want the control plane, ext_proc and the migration", checked)
	}
}
