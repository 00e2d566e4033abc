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

// The layering, from the bottom up (docs/architecture.md draws it):
//
//	internal leaves, config, github, backends, queue     know none of the above them
//	fleet (the lifecycle: records, moves, verbs)          on queue's storage
//	webhook, consumer, bootstrap, janitor, control        the roles, and operator control
//	internal/assemble                                     config → components
//	cmd/spawner                                           the binary
//	dev/ (fake GitHub, fake runner, sandbox)               beside it, never under it
//
// forbidden lists, per package prefix, imports it must not have and why.
var forbidden = []struct {
	pkg, dep, why string
}{
	{"backends", "github.com/nats-io/", "backends must not need NATS: a backend is tested without a broker"},
	{"backends", module + "/queue", "backends must not know the queue"},
	{"backends", module + "/fleet", "backends must not know the records: a backend is tested alone"},
	{"backends", module + "/github", "backends must not talk to GitHub"},
	{"backends", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"queue", module + "/backends", "the queue is tested without a cloud"},
	{"queue", module + "/github", "the queue must not talk to GitHub"},
	{"queue", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"queue", module + "/fleet", "the queue is transport and storage: it knows no record"},
	{"queue", module + "/control", "the queue is transport: control's commands ride on it"},
	{"github", module + "/queue", "the GitHub client is a leaf"},
	{"github", module + "/backends", "the GitHub client is a leaf"},
	{"github", module + "/fleet", "the GitHub client is a leaf"},
	{"github", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"config", module + "/queue", "config is a leaf"},
	{"config", module + "/backends", "config is a leaf"},
	{"config", module + "/github", "config is a leaf"},
	{"config", module + "/fleet", "config is a leaf"},
	{"fleet", module + "/consumer", "the lifecycle sits below the roles that move it"},
	{"fleet", module + "/bootstrap", "the lifecycle sits below the roles that move it"},
	{"fleet", module + "/janitor", "the lifecycle sits below the roles that move it"},
	{"fleet", module + "/webhook", "the lifecycle sits below the roles that move it"},
	{"fleet", module + "/control", "the lifecycle sits below operator control"},
	{"fleet", module + "/backends", "the records say what an instance did; the backends are the roles' to call"},
	{"fleet", module + "/github", "the records say what GitHub said; the roles ask it"},
	{"fleet", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"webhook", module + "/backends", "the receiver's only side effect is a publish"},
	{"webhook", module + "/github", "the receiver never calls GitHub"},
	{"webhook", module + "/consumer", "the receiver is stateless"},
	{"webhook", module + "/fleet", "the receiver is stateless: it never reads or writes a record"},
	{"webhook", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"bootstrap", module + "/backends", "bootstrap gets cleanup passed in"},
	{"bootstrap", module + "/github", "bootstrap gets minting passed in (internal/mint)"},
	{"bootstrap", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"consumer", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"consumer", module + "/webhook", "the consumer does not receive webhooks"},
	{"consumer", module + "/janitor", "the consumer and the janitor meet only in the records"},
	{"consumer", module + "/control", "operator commands go to the janitor, never to a consumer"},
	{"janitor", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"janitor", module + "/consumer", "the consumer and the janitor meet only in the records"},
	{"janitor", module + "/webhook", "routing is passed to the janitor's poller as a function"},
	{"control", module + "/janitor", "the janitor carries commands out by implementing control.Responder"},
	{"control", module + "/consumer", "control speaks to a fleet through NATS and the records only"},
	{"control", module + "/bootstrap", "control speaks to a fleet through NATS and the records only"},
	{"control", module + "/config", "only cmd/spawner and internal/assemble read the config"},
	{"internal/secret", module + "/", "a leaf"},
	{"internal/logkey", module + "/", "a leaf"},
	{"internal/untrusted", module + "/", "a leaf: every package that prints outside input uses it"},
	{"internal/ghname", module + "/", "a leaf: the receiver and the GitHub client both check names with it"},
	{"internal/runnername", module + "/", "a leaf: backends and bootstrap share its rule"},
	{"internal/bootstrapendpoint", module + "/", "a leaf: config and bootstrap share its rules"},
	{"internal/repopolicy", module + "/fleet", "a leaf: minting a policy token knows no records"},
	{"internal/repopolicy", module + "/config", "only cmd/spawner and internal/assemble read the config"},
}

// testTools may only be imported by tests (and by the other test tools).
var testTools = []string{"/queue/queuetest", "/fleet/fleettest", "/backends/backendtest", "/internal/systemtest", "/internal/testcert", "/internal/realservice"}

// devTree is the dev tools: a fake GitHub, a fake runner, the sandbox. Only
// cmd/spawner (for `spawner dev` and `serve --sandbox`), the dev tree itself, test
// tools and tests may import it: the product ends where it begins.
const devTree = "/dev"

func TestImportArrows(t *testing.T) {
	for _, p := range listPackages(t) {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if isTestTool(rel) || inDevTree(rel) {
			continue
		}
		for _, f := range forbidden {
			if rel != f.pkg && !strings.HasPrefix(rel, f.pkg+"/") {
				continue
			}
			for _, d := range p.Deps {
				if strings.HasPrefix(d, f.dep) && !(strings.HasPrefix(f.dep, module+"/") && strings.HasSuffix(f.dep, "/") && d == p.ImportPath) {
					t.Errorf("%s imports %s: %s", rel, d, f.why)
				}
			}
		}
		for _, d := range p.Deps {
			for _, tool := range testTools {
				if d == module+tool || strings.HasPrefix(d, module+tool+"/") {
					t.Errorf("%s imports the test tool %s: only tests may", rel, d)
				}
			}
			if rel != "cmd/spawner" && inDevTree(strings.TrimPrefix(d, module+"/")) && strings.HasPrefix(d, module+"/") {
				t.Errorf("%s imports %s: product packages never import the dev tree", rel, d)
			}
			if d == module+"/internal/assemble" && rel != "cmd/spawner" {
				t.Errorf("%s imports internal/assemble: only cmd/spawner and the system tests assemble", rel)
			}
		}
	}
}

// TestNodevBinaryHasNoDevTree: built with -tags nodev, the binary links nothing of
// the dev tree, so an operator can ship a product-only spawner.
func TestNodevBinaryHasNoDevTree(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "nodev", "./cmd/spawner").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if inDevTree(strings.TrimPrefix(d, module+"/")) && strings.HasPrefix(d, module+"/") {
			t.Errorf("the nodev binary links %s", d)
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

func inDevTree(rel string) bool {
	return "/"+rel == devTree || strings.HasPrefix("/"+rel, devTree+"/")
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
