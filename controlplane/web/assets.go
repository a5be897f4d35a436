package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"path"
	"strings"
)

//go:embed templates static
var assets embed.FS

// assetVersion is a hash of the static files, added to their URLs so that
// browsers may cache them for good and still fetch a new build's at once.
var assetVersion = func() string {
	h := sha256.New()
	err := fs.WalkDir(assets, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(h, "%s %d\n", p, len(b)) // a hash never fails to write
		h.Write(b)
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}()

// parsePages parses every page with the layout and shared partials. Each
// page template defines "title" and "main".
func parsePages() (map[string]*template.Template, error) {
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, fmt.Errorf("web: parsing the layout: %w", err)
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || name == "partials" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(assets, n)
		if err != nil {
			return nil, fmt.Errorf("web: parsing %s: %w", n, err)
		}
		pages[name] = t
	}
	return pages, nil
}
