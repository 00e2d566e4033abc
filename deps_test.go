// Package runnerspawner_test checks the shape of the module: which of our packages may
// import which (STYLE.md §1), and that every package says what it is for.
package runnerspawner_test

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/runner-spawner/runner-spawner"

type pkgInfo struct {
	ImportPath string
	Name       string
	Doc        string
	Deps       []string
	Imports    []string
}

func listPackages(t *testing.T) []pkgInfo {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkgInfo
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p pkgInfo
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

// forbidden lists, per package prefix, imports it must not have and why.
var forbidden = []struct {
	pkg, dep, why string
}{
	{"backends", "github.com/nats-io/", "backends must not need NATS: a backend is tested without a broker"},
	{"backends", module + "/queue", "backends must not know the queue's records"},
	{"backends", module + "/github", "backends must not talk to GitHub"},
	{"backends", module + "/config", "only cmd/spawner reads the config"},
	{"queue", module + "/backends", "the queue is tested without a cloud"},
	{"queue", module + "/github", "the queue must not talk to GitHub"},
	{"queue", module + "/config", "only cmd/spawner reads the config"},
	{"github", module + "/queue", "the GitHub client is a leaf"},
	{"github", module + "/backends", "the GitHub client is a leaf"},
	{"github", module + "/config", "only cmd/spawner reads the config"},
	{"config", module + "/queue", "config is a leaf"},
	{"config", module + "/backends", "config is a leaf"},
	{"config", module + "/github", "config is a leaf"},
	{"webhook", module + "/backends", "the receiver's only side effect is a publish"},
	{"webhook", module + "/github", "the receiver never calls GitHub"},
	{"webhook", module + "/consumer", "the receiver is stateless"},
	{"webhook", module + "/config", "only cmd/spawner reads the config"},
	{"bootstrap", module + "/backends", "bootstrap gets cleanup passed in"},
	{"bootstrap", module + "/github", "bootstrap gets minting passed in (internal/mint)"},
	{"bootstrap", module + "/config", "only cmd/spawner reads the config"},
	{"consumer", module + "/config", "only cmd/spawner reads the config"},
	{"consumer", module + "/webhook", "the consumer does not receive webhooks"},
	{"consumer", module + "/janitor", "the consumer and the janitor meet only in the queue"},
	{"janitor", module + "/config", "only cmd/spawner reads the config"},
	{"janitor", module + "/consumer", "the consumer and the janitor meet only in the queue"},
	{"janitor", module + "/webhook", "routing is passed to the janitor's poller as a function"},
	{"internal/secret", module + "/", "a leaf"},
	{"internal/logkey", module + "/", "a leaf"},
	{"internal/untrusted", module + "/", "a leaf: every package that prints outside input uses it"},
	{"internal/ghname", module + "/", "a leaf: the receiver and the GitHub client both check names with it"},
	{"internal/runnername", module + "/", "a leaf: backends and bootstrap share its rule"},
	{"internal/bootstrapendpoint", module + "/", "a leaf: config and bootstrap share its rules"},
}

// testTools may only be imported by tests and by cmd/spawner's dev commands.
var testTools = []string{"/queue/queuetest", "/github/githubtest", "/backends/backendtest", "/internal/systemtest", "/internal/testcert", "/internal/realservice"}

func TestImportArrows(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		for _, f := range forbidden {
			if rel != f.pkg && !strings.HasPrefix(rel, f.pkg+"/") {
				continue
			}
			for _, d := range p.Deps {
				if strings.HasPrefix(d, f.dep) && !(strings.HasPrefix(f.dep, module+"/") && strings.HasSuffix(f.dep, "/") && d == p.ImportPath) {
					if isTestTool(rel) {
						continue
					}
					t.Errorf("%s imports %s: %s", rel, d, f.why)
				}
			}
		}
		if rel == "cmd/spawner" || isTestTool(rel) {
			continue
		}
		for _, d := range p.Deps {
			for _, tool := range testTools {
				if d == module+tool || strings.HasPrefix(d, module+tool+"/") {
					t.Errorf("%s imports the test tool %s: only tests and cmd/spawner's dev commands may", rel, d)
				}
			}
		}
	}
}

func isTestTool(rel string) bool {
	for _, tool := range testTools {
		if "/"+rel == tool || strings.HasPrefix("/"+rel, tool+"/") {
			return true
		}
	}
	return false
}

func TestEveryPackageHasADocComment(t *testing.T) {
	for _, p := range listPackages(t) {
		if p.ImportPath == module {
			continue // this test-only directory
		}
		if strings.TrimSpace(p.Doc) == "" {
			t.Errorf("package %s has no package doc comment saying what it is for", p.ImportPath)
		}
	}
}
