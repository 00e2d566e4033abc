package deployments

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/runner-spawner/runner-spawner/config"
)

// repoRoot is the repository's top directory; spawnerBin the binary built from it, so
// that every command an artifact runs is checked against the real CLI.
var (
	repoRoot   string
	spawnerBin string
)

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	dir, err := os.MkdirTemp("", "spawner-deployments-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	spawnerBin = filepath.Join(dir, "spawner")
	// Static and -trimpath, as released (and as cmd/spawner's tests build it, so that
	// scripts/test.sh compiles the dependencies once for both).
	build := exec.Command("go", "build", "-trimpath", "-o", spawnerBin, "./cmd/spawner")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build cmd/spawner: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// repoPath is rel (slash-separated, from the repository's top) on disk.
func repoPath(rel string) string {
	return filepath.Join(repoRoot, filepath.FromSlash(rel))
}

func readRepoFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(repoPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// cliCommand is one command of the spawner CLI as its --help describes it.
type cliCommand struct {
	children map[string]bool
	// flags maps each flag (without dashes) to whether it takes a value.
	flags map[string]bool
}

var (
	helpMu    sync.Mutex
	helpCache = map[string]*cliCommand{}
)

var (
	helpCommandRE = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s+\S`)
	helpFlagRE    = regexp.MustCompile(`^\s+(?:-[a-zA-Z], )?--([a-z0-9-]+)( [a-zA-Z0-9]+)?\s{2,}\S`)
)

// cliHelp runs `spawner PATH... --help` and parses its subcommands and flags.
func cliHelp(path []string) (*cliCommand, error) {
	key := strings.Join(path, " ")
	helpMu.Lock()
	defer helpMu.Unlock()
	if c, ok := helpCache[key]; ok {
		return c, nil
	}
	out, err := exec.Command(spawnerBin, append(slices.Clone(path), "--help")...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("spawner %s --help: %v\n%s", key, err, out)
	}
	c := &cliCommand{children: map[string]bool{}, flags: map[string]bool{}}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line != "" && !strings.HasPrefix(line, " ") {
			section = line
			continue
		}
		switch section {
		case "Available Commands:":
			if m := helpCommandRE.FindStringSubmatch(line); m != nil && m[1] != "help" && m[1] != "completion" {
				c.children[m[1]] = true
			}
		case "Flags:", "Global Flags:":
			if m := helpFlagRE.FindStringSubmatch(line); m != nil {
				c.flags[m[1]] = m[2] != ""
			}
		}
	}
	helpCache[key] = c
	return c, nil
}

// spawnerInvocation is a spawner command line taken apart.
type spawnerInvocation struct {
	command string            // "consumer", "dev sim-cloud", …
	flags   map[string]string // flag → value ("true" for a bare boolean)
}

// checkSpawnerArgs checks that args (what follows the binary's name) is a command the
// spawner has, with flags it takes, and returns it taken apart.
func checkSpawnerArgs(args []string) (spawnerInvocation, error) {
	inv := spawnerInvocation{flags: map[string]string{}}
	var path []string
	cmd, err := cliHelp(nil)
	if err != nil {
		return inv, err
	}
	i := 0
	for ; i < len(args) && len(cmd.children) > 0 && !strings.HasPrefix(args[i], "-"); i++ {
		if !cmd.children[args[i]] {
			return inv, fmt.Errorf("%q is not a command of %s (have: %s)", args[i], strings.Join(append([]string{"spawner"}, path...), " "), strings.Join(sortedKeys(cmd.children), ", "))
		}
		path = append(path, args[i])
		if cmd, err = cliHelp(path); err != nil {
			return inv, err
		}
	}
	if len(path) == 0 {
		return inv, fmt.Errorf("%q names no spawner command", strings.Join(args, " "))
	}
	if len(cmd.children) > 0 {
		return inv, fmt.Errorf("spawner %s needs a subcommand (%s)", strings.Join(path, " "), strings.Join(sortedKeys(cmd.children), ", "))
	}
	inv.command = strings.Join(path, " ")
	for ; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			return inv, fmt.Errorf("spawner %s: unexpected argument %q", inv.command, a)
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		takesValue, ok := cmd.flags[name]
		if !ok {
			return inv, fmt.Errorf("spawner %s has no flag --%s (have: --%s)", inv.command, name, strings.Join(sortedKeys(cmd.flags), ", --"))
		}
		switch {
		case takesValue && !hasVal:
			if i+1 >= len(args) {
				return inv, fmt.Errorf("spawner %s: --%s needs a value", inv.command, name)
			}
			i++
			val = args[i]
		case !takesValue && !hasVal:
			val = "true"
		}
		inv.flags[name] = val
	}
	return inv, nil
}

// parseConfig is `spawner config check` on data, with env as the environment. Files
// the config names on its target machine (*_file keys) don't exist here: "cannot read"
// problems of such keys are the only ones tolerated.
// configParts is what the binary checks of its config when run as inv.
func configParts(t *testing.T, inv spawnerInvocation) config.Part {
	t.Helper()
	var roles []string
	switch inv.command {
	case "webhook", "consumer", "janitor":
		roles = []string{inv.command}
	case "serve":
		roles = config.Roles
		if r, ok := inv.flags["roles"]; ok {
			roles = strings.Split(r, ",")
		}
	case "config check":
		return config.PartAll
	}
	parts, err := config.PartsFor(roles...)
	if err != nil {
		t.Fatalf("spawner %s: %v", inv.command, err)
	}
	return parts
}

// parseConfig parses a deployment's config as the process run as inv reads it: only
// the parts that role uses must be complete.
func parseConfig(t *testing.T, name string, data []byte, env map[string]string, inv spawnerInvocation) *config.File {
	t.Helper()
	f, err := config.ParseFor(data, func(k string) string { return env[k] }, configParts(t, inv))
	if f == nil {
		t.Fatalf("%s: %v", name, err)
	}
	for _, fe := range config.FieldErrors(err) {
		if strings.HasSuffix(fe.Key, "_file") && strings.HasPrefix(fe.Reason, "cannot read") {
			continue
		}
		t.Errorf("%s: %s: %s", name, fe.Key, fe.Reason)
	}
	return f
}

// hostPort splits a URL's or a listen address's host and port.
func hostPort(t *testing.T, what, s string) (string, int) {
	t.Helper()
	hp := s
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		hp = u.Host
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		t.Fatalf("%s: %q: %v", what, s, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%s: %q: port %q", what, s, port)
	}
	return host, n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// listener is one HTTP listener of a spawner process and the paths it serves.
type listener struct {
	name  string
	port  int
	paths []string
}

// spawnerListeners are the HTTP listeners a process of this role opens with cfg (flags
// already applied), with the paths each serves (cmd/spawner, internal/httpserve).
func spawnerListeners(t *testing.T, role string, cfg *config.File) []listener {
	t.Helper()
	var out []listener
	add := func(name, addr string, paths ...string) {
		if addr == "" || addr == "off" {
			return
		}
		_, port := hostPort(t, name, addr)
		out = append(out, listener{name: name, port: port, paths: paths})
	}
	ops := []string{"/healthz", "/readyz", "/metrics"}
	switch role {
	case "webhook":
		add("webhook.listen", cfg.Webhook.Listen, append([]string{cfg.Webhook.Path}, ops...)...)
	case "consumer":
		add("bootstrap.listen", cfg.Bootstrap.Listen, "/healthz", "/bootstrap/v1/")
		add("metrics.listen", cfg.Metrics.Listen, ops...)
	case "janitor":
		add("metrics.listen", cfg.Metrics.Listen, ops...)
	case "serve":
		add("webhook.listen", cfg.Webhook.Listen, append([]string{cfg.Webhook.Path}, ops...)...)
		add("bootstrap.listen", cfg.Bootstrap.Listen, "/healthz", "/bootstrap/v1/")
	default:
		t.Fatalf("no listeners known for role %q", role)
	}
	if cfg.Admin.Listen != "" && (role == "janitor" || role == "serve") {
		add("admin.listen", cfg.Admin.Listen, "/admin/v1/")
	}
	return out
}

// applyRoleFlags applies the listener flags of consumer, janitor and serve to cfg, as
// the binary does.
func applyRoleFlags(cfg *config.File, inv spawnerInvocation) {
	if v, ok := inv.flags["bootstrap-listen"]; ok {
		if v == "off" {
			v = ""
		}
		cfg.Bootstrap.Listen = v
	}
	if v, ok := inv.flags["metrics-listen"]; ok {
		cfg.Metrics.Listen = v
	}
}

// servesPath reports whether one of ls on port serves path.
func servesPath(ls []listener, port int, path string) bool {
	path, _, _ = strings.Cut(path, "?")
	for _, l := range ls {
		if l.port != port {
			continue
		}
		for _, p := range l.paths {
			if p == path || (strings.HasSuffix(p, "/") && strings.HasPrefix(path, p)) {
				return true
			}
		}
	}
	return false
}

// goModVersion is the version go.mod requires of module mod.
func goModVersion(t *testing.T, mod string) string {
	t.Helper()
	for _, line := range strings.Split(string(readRepoFile(t, "go.mod")), "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require "))
		if len(f) >= 2 && f[0] == mod {
			return f[1]
		}
	}
	t.Fatalf("go.mod does not require %s", mod)
	return ""
}

func TestCLIHelpIsParsed(t *testing.T) {
	// The checks below are only as good as this parse: make sure it sees the CLI.
	root, err := cliHelp(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"serve", "webhook", "consumer", "janitor", "status", "flush", "dead-letters", "runners", "jobs", "config", "dev"} {
		if !root.children[c] {
			t.Errorf("spawner --help: command %q not found (parsed %v)", c, sortedKeys(root.children))
		}
	}
	if !root.flags["config"] {
		t.Errorf("spawner --help: --config not found or not taking a value (parsed %v)", root.flags)
	}
	for _, bad := range [][]string{
		{"consumr", "--config", "x"},
		{"consumer", "--metrics-listn", "x"},
		{"dev"},
		{"status", "--timeout"},
		{"webhook", "extra"},
	} {
		if _, err := checkSpawnerArgs(bad); err == nil {
			t.Errorf("checkSpawnerArgs(%q) accepted a wrong command line", bad)
		}
	}
	inv, err := checkSpawnerArgs([]string{"dev", "github", "--listen=0.0.0.0:1", "--verbose", "--jobs", "3"})
	if err != nil {
		t.Fatal(err)
	}
	if inv.command != "dev github" || inv.flags["listen"] != "0.0.0.0:1" || inv.flags["verbose"] != "true" || inv.flags["jobs"] != "3" {
		t.Errorf("checkSpawnerArgs: got %+v", inv)
	}
}
