// Command chart-readme writes a chart's README.md from its values.yaml
// comments and README.md.gotmpl: go run ./test/helm/valuesdoc/chart-readme charts/tollgate
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tollgate-dev/tollgate/test/helm/valuesdoc"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: chart-readme CHART_DIR")
		os.Exit(2)
	}
	out, err := valuesdoc.README(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart-readme:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(filepath.Join(os.Args[1], "README.md"), out, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chart-readme:", err)
		os.Exit(1)
	}
}
