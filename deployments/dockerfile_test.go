package deployments

import (
	"encoding/json"
	"os/exec"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerInstr is one instruction of the Dockerfile, continuation lines joined.
type dockerInstr struct {
	line int
	op   string // upper case
	args string
}

func parseDockerfile(t *testing.T) []dockerInstr {
	t.Helper()
	var out []dockerInstr
	lines := strings.Split(string(readRepoFile(t, "Dockerfile")), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		start := i + 1
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			next := strings.TrimSpace(lines[i])
			if strings.HasPrefix(next, "#") {
				continue
			}
			line = strings.TrimSuffix(line, "\\") + " " + next
		}
		op, args, _ := strings.Cut(line, " ")
		out = append(out, dockerInstr{start, strings.ToUpper(op), strings.TrimSpace(args)})
	}
	return out
}

var dockerOps = []string{"FROM", "ARG", "ENV", "WORKDIR", "COPY", "RUN", "USER", "EXPOSE", "ENTRYPOINT", "CMD", "LABEL"}

func TestDockerfile(t *testing.T) {
	instrs := parseDockerfile(t)
	type stage struct {
		name, image string
		instrs      []dockerInstr
	}
	var stages []*stage
	args := map[string]string{}
	for _, in := range instrs {
		if !slices.Contains(dockerOps, in.op) {
			t.Errorf("Dockerfile:%d: unexpected instruction %s", in.line, in.op)
			continue
		}
		if in.op == "FROM" {
			f := strings.Fields(in.args)
			st := &stage{image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			if in.op == "ARG" {
				k, v, _ := strings.Cut(in.args, "=")
				args[k] = v
			}
			continue
		}
		st := stages[len(stages)-1]
		st.instrs = append(st.instrs, in)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a builder and a final one", len(stages))
	}
	if got, want := args["GO_VERSION"], goDirective(t); got != want {
		t.Errorf("Dockerfile: GO_VERSION %q, want go.mod's go %s", got, want)
	}
	build := stages[0]
	if build.image != "golang:${GO_VERSION}" || build.name == "" {
		t.Errorf("Dockerfile: the first stage must be golang:${GO_VERSION} AS <name> (got %s AS %s)", build.image, build.name)
	}
	text := func(st *stage, op string) []string {
		var out []string
		for _, in := range st.instrs {
			if in.op == op {
				out = append(out, in.args)
			}
		}
		return out
	}
	env := strings.Join(text(build, "ENV"), " ")
	for _, want := range []string{"CGO_ENABLED=0", "GOTOOLCHAIN=local", "GOFLAGS=-mod=readonly"} {
		if !strings.Contains(env, want) {
			t.Errorf("Dockerfile: the build stage does not set %s", want)
		}
	}
	var out string
	for _, run := range text(build, "RUN") {
		if m := regexp.MustCompile(`go build .*-o (\S+) (\./\S+)`).FindStringSubmatch(run); m != nil {
			out = m[1]
			if m[2] != "./cmd/spawner" {
				t.Errorf("Dockerfile: builds %s, want ./cmd/spawner", m[2])
			}
			if !strings.Contains(run, "-X main.version=") {
				t.Errorf("Dockerfile: the build does not stamp main.version (cmd/spawner/version.go)")
			}
			if !strings.Contains(run, "--mount=type=cache,target=/go/pkg/mod") {
				t.Errorf("Dockerfile: the build does not use the module cache mount")
			}
		}
	}
	if out == "" {
		t.Fatal("Dockerfile: no `go build -o OUT ./cmd/spawner`")
	}

	final := stages[len(stages)-1]
	if !strings.HasPrefix(final.image, "gcr.io/distroless/static") {
		t.Errorf("Dockerfile: final image %s, want distroless/static (a static binary needs nothing else)", final.image)
	}
	copied := ""
	for _, c := range text(final, "COPY") {
		m := regexp.MustCompile(`^--from=(\S+) (\S+) (\S+)$`).FindStringSubmatch(c)
		if m == nil || m[1] != build.name || m[2] != out {
			t.Errorf("Dockerfile: final COPY %q does not take %s from stage %s", c, out, build.name)
			continue
		}
		copied = m[3]
	}
	checkRuntimeStage(t, "final", copied, text(final, "USER"), text(final, "ENTRYPOINT"), text(final, "EXPOSE"))

	// The target "prebuilt": the same image around a binary built on the host, FROM
	// scratch (no registry), with the CA bundle; nothing of it may come from a stage that
	// needs a registry.
	i := slices.IndexFunc(stages, func(st *stage) bool { return st.name == "prebuilt" })
	if i < 0 {
		t.Fatal("Dockerfile: no stage \"prebuilt\" (for hosts without a registry: scripts/compose-test.sh builds it)")
	}
	pre := stages[i]
	if pre.image != "scratch" || i == len(stages)-1 {
		t.Errorf("Dockerfile: prebuilt is FROM %s (want scratch), and must not be the last (default) stage", pre.image)
	}
	copied = ""
	var copies []string
	for _, c := range text(pre, "COPY") {
		if strings.HasPrefix(c, "--from") {
			t.Errorf("Dockerfile: prebuilt copies from another stage: %q", c)
		}
		f := strings.Fields(c)
		copies = append(copies, f[0])
		if f[0] == "spawner" {
			copied = f[len(f)-1]
		}
	}
	if !slices.Contains(copies, "ca-certificates.crt") {
		t.Errorf("Dockerfile: prebuilt has no CA bundle (GitHub and OpenStack over TLS)")
	}
	checkRuntimeStage(t, "prebuilt", copied, text(pre, "USER"), text(pre, "ENTRYPOINT"), text(pre, "EXPOSE"))
}

// checkRuntimeStage: a stage that runs the spawner has it at /usr/local/bin/spawner,
// runs it as a non-root user, and exposes the roles' ports.
func checkRuntimeStage(t *testing.T, name, copied string, users, entries, exposes []string) {
	t.Helper()
	if path.Dir(copied) != "/usr/local/bin" || path.Base(copied) != "spawner" {
		t.Errorf("Dockerfile: %s: the binary goes to %q, want /usr/local/bin/spawner (on PATH, as ENTRYPOINT and the healthchecks call it)", name, copied)
	}
	if len(users) != 1 || strings.HasPrefix(users[0], "0") || strings.HasPrefix(users[0], "root") {
		t.Errorf("Dockerfile: %s: USER %q, want a non-root user", name, users)
	}
	var entry []string
	if len(entries) != 1 || json.Unmarshal([]byte(entries[0]), &entry) != nil || !slices.Equal(entry, []string{"spawner"}) {
		t.Errorf(`Dockerfile: %s: ENTRYPOINT %q, want ["spawner"] (exec form)`, name, entries)
	}
	var exposed []string
	for _, e := range exposes {
		exposed = append(exposed, strings.Fields(e)...)
	}
	for _, p := range []string{"8080", "8081", "9090"} {
		if !slices.Contains(exposed, p) {
			t.Errorf("Dockerfile: %s: EXPOSE lacks %s (webhook, bootstrap, metrics)", name, p)
		}
	}
}

func goDirective(t *testing.T) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(readRepoFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

// TestDockerignore: nothing `go build ./cmd/spawner` reads is left out of the build
// context.
func TestDockerignore(t *testing.T) {
	var patterns []string
	for _, line := range strings.Split(string(readRepoFile(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, "!") {
			t.Fatalf(".dockerignore: exceptions (%s) are not handled by this test", line)
		}
		patterns = append(patterns, strings.TrimPrefix(line, "/"))
	}
	cmd := exec.Command("go", "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, "./cmd/spawner")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], repoRoot+"/") {
			continue // a module from the cache
		}
		dir := strings.TrimPrefix(f[0], repoRoot+"/")
		for _, file := range f[1:] {
			needed = append(needed, dir+"/"+file)
		}
	}
	if len(needed) < 20 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, file := range needed {
		for _, p := range patterns {
			if dockerIgnored(p, file) {
				t.Errorf(".dockerignore: %q leaves out %s, which the build needs", p, file)
			}
		}
	}
	for _, file := range []string{".git/HEAD", "docs/operations.md", "deployments/compose/spawner.yaml", "webhook/handler_test.go"} {
		if !slices.ContainsFunc(patterns, func(p string) bool { return dockerIgnored(p, file) }) {
			t.Errorf(".dockerignore: %s is sent to the build", file)
		}
	}
}

// dockerIgnored reports whether a .dockerignore pattern (Go's filepath.Match plus a
// leading **/) excludes file or a directory above it.
func dockerIgnored(pattern, file string) bool {
	parts := strings.Split(file, "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		if ok, _ := path.Match(pattern, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			for j := 0; j <= i; j++ {
				if ok, _ := path.Match(rest, strings.Join(parts[j:i+1], "/")); ok {
					return true
				}
			}
		}
	}
	return false
}
