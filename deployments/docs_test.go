package deployments

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

const operationsDoc = "docs/operations.md"

// repoRefRE matches a repository path written in the guide: `deployments/…`,
// `docs/…`, a root file such as `docker-compose.yml`.
var spawnerCommandRE = regexp.MustCompile(`^[a-z][a-z-]*$`)

var repoRefRE = regexp.MustCompile("`((?:deployments|docs|scripts|cmd|janitor|github|config)/[A-Za-z0-9_./@-]+|docker-compose\\.yml|Dockerfile|\\.dockerignore)`")

// TestOperationsGuideReferences: every file the guide names exists, and every
// spawner command it shows in a shell block is one the binary has.
func TestOperationsGuideReferences(t *testing.T) {
	doc := string(readRepoFile(t, operationsDoc))
	for _, m := range repoRefRE.FindAllStringSubmatch(doc, -1) {
		if _, err := os.Stat(repoPath(strings.TrimSuffix(m[1], "/"))); err != nil {
			t.Errorf("%s names %s, which does not exist", operationsDoc, m[1])
		}
	}
	inShell, checked := false, 0
	for i, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inShell = line == "```sh"
			continue
		}
		if !inShell {
			continue
		}
		for _, cmd := range strings.Split(line, "&&") {
			f := strings.Fields(cmd)
			for j, w := range f {
				if w == "#" {
					f = f[:j]
					break
				}
			}
			// `spawner …`, also after `docker compose exec SERVICE` or `kubectl exec … --`
			// (but not `-g spawner`, `-n spawner` or `spawner /usr/local/bin/`).
			for at, w := range f {
				if w != "spawner" || at+1 >= len(f) || (at > 0 && strings.HasPrefix(f[at-1], "-") && f[at-1] != "--") || !spawnerCommandRE.MatchString(f[at+1]) {
					continue
				}
				args := f[at+1:]
				// Placeholders and positional arguments the guide shows.
				for k, a := range args {
					if strings.HasPrefix(a, "SEQ") || a == "..." {
						args = args[:k]
						break
					}
				}
				if _, err := checkSpawnerArgs(args); err != nil {
					t.Errorf("%s:%d: %v", operationsDoc, i+1, err)
				}
				checked++
			}
		}
	}
	if checked < 10 {
		t.Errorf("%s: only %d spawner commands found in its sh blocks: is the parse broken?", operationsDoc, checked)
	}
}
