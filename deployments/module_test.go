package deployments

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const productModule = "github.com/runner-spawner/runner-spawner"

// TestEveryPackageHasADocComment is the root module's deps_test.go check for this
// module: deployments/ has its own go.mod, so the root's `go list ./...` no longer sees
// it, and its package must still say what it is for.
func TestEveryPackageHasADocComment(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	n := 0
	for dec.More() {
		var p struct{ ImportPath, Doc string }
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		n++
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package doc comment saying what it is for", p.ImportPath)
		}
	}
	if n == 0 {
		t.Fatal("go list ./... found no package")
	}
}

// TestProductVersions: every module the product builds with has the same version here.
// This module's go.mod can require newer libraries than the product's (a `go get -u`
// here, say); those would then be linked into config.Parse and the other product code
// these tests run, which would no longer be the code that ships.
func TestProductVersions(t *testing.T) {
	const format = "{{with .Module}}{{.Path}} {{.Version}}{{end}}"
	product := exec.Command("go", "list", "-deps", "-f", format, "./...")
	product.Dir = repoRoot
	shipped, err := product.Output()
	if err != nil {
		t.Fatalf("go list in %s: %v", repoRoot, err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(shipped)), "\n") {
		if path, version, ok := strings.Cut(line, " "); ok && path != productModule {
			want[path] = version
		}
	}
	tested, err := exec.Command("go", "list", "-deps", "-test", "-f", format, ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(tested)), "\n") {
		path, version, _ := strings.Cut(line, " ")
		w, ok := want[path]
		if !ok || seen[path] {
			continue
		}
		seen[path] = true
		if version != w {
			t.Errorf("%s: %s in deployments/go.mod, %s in the product's go.mod: make both require the same version", path, version, w)
		}
	}
	if len(seen) == 0 {
		t.Fatal("no module in common with the product: the go list output was not understood")
	}
}
