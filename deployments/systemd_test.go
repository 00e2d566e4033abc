package deployments

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const systemdDir = "deployments/systemd"

// unitKeys are the directives the units may use, by section; a key not listed is a
// typo (systemd would only warn and ignore it). multiKeys may repeat.
var (
	unitKeys = map[string][]string{
		"Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before", "BindsTo", "PartOf",
			"Conflicts", "ConditionPathExists", "StartLimitIntervalSec", "StartLimitBurst"},
		"Service": {"Type", "User", "Group", "DynamicUser", "SupplementaryGroups", "Environment", "EnvironmentFile",
			"ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop", "Restart", "RestartSec",
			"RestartPreventExitStatus", "SuccessExitStatus", "KillSignal", "KillMode", "TimeoutStartSec", "TimeoutStopSec",
			"LimitNOFILE", "StateDirectory", "StateDirectoryMode", "RuntimeDirectory", "ConfigurationDirectory",
			"ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths", "WorkingDirectory", "NoNewPrivileges", "ProtectSystem",
			"ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateUsers", "ProtectKernelTunables", "ProtectKernelModules",
			"ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc", "ProcSubset",
			"RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute",
			"RemoveIPC", "UMask", "CapabilityBoundingSet", "AmbientCapabilities", "RestrictAddressFamilies",
			"SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber", "DevicePolicy", "DeviceAllow",
			"IPAddressAllow", "IPAddressDeny", "LoadCredential", "MemoryMax", "TasksMax"},
		"Install": {"WantedBy", "RequiredBy", "Alias", "Also", "DefaultInstance"},
	}
	multiKeys = []string{"Documentation", "Wants", "Requires", "After", "Before", "Environment", "EnvironmentFile",
		"ExecStartPre", "ExecStartPost", "SystemCallFilter", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths",
		"SupplementaryGroups", "RestrictAddressFamilies", "LoadCredential", "WantedBy", "RequiredBy", "DeviceAllow"}
)

// unitFile is a parsed unit: section → key → values in order.
type unitFile map[string]map[string][]string

func (u unitFile) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func (u unitFile) all(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

// parseUnit reads a unit file strictly: known sections and keys, no repeats of
// single-valued keys, no stray lines.
func parseUnit(name string, data []byte) (unitFile, []error) {
	u := unitFile{}
	var errs []error
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			errs = append(errs, fmt.Errorf("%s:%d: continuation lines are not supported here", name, n))
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			if _, ok := unitKeys[section]; !ok {
				errs = append(errs, fmt.Errorf("%s:%d: unknown section [%s]", name, n, section))
			}
			if u[section] != nil {
				errs = append(errs, fmt.Errorf("%s:%d: section [%s] twice", name, n, section))
			}
			u[section] = map[string][]string{}
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || section == "" {
			errs = append(errs, fmt.Errorf("%s:%d: not KEY=VALUE in a section: %q", name, n, line))
			continue
		}
		key = strings.TrimSpace(key)
		if !slices.Contains(unitKeys[section], key) {
			errs = append(errs, fmt.Errorf("%s:%d: unknown key %s in [%s]", name, n, key, section))
			continue
		}
		if len(u[section][key]) > 0 && !slices.Contains(multiKeys, key) {
			errs = append(errs, fmt.Errorf("%s:%d: %s set twice (the first is ignored)", name, n, key))
		}
		u[section][key] = append(u[section][key], strings.TrimSpace(val))
	}
	return u, errs
}

// systemdDuration parses systemd's time spans ("6min", "30s", "1min 30s", "90").
func systemdDuration(s string) (time.Duration, error) {
	units := map[string]time.Duration{"": time.Second, "s": time.Second, "sec": time.Second, "ms": time.Millisecond,
		"m": time.Minute, "min": time.Minute, "h": time.Hour, "hr": time.Hour}
	var total time.Duration
	for _, part := range strings.Fields(s) {
		m := regexp.MustCompile(`^(\d+)([a-z]*)$`).FindStringSubmatch(part)
		if m == nil {
			return 0, fmt.Errorf("bad time span %q", s)
		}
		u, ok := units[m[2]]
		if !ok {
			return 0, fmt.Errorf("bad time unit in %q", s)
		}
		n, _ := strconv.Atoi(m[1])
		total += time.Duration(n) * u
	}
	return total, nil
}

// readEnvFile reads KEY=VALUE lines (an EnvironmentFile).
func readEnvFile(t *testing.T, rel string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for _, line := range strings.Split(string(readRepoFile(t, rel)), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: not KEY=VALUE: %q", rel, line)
			continue
		}
		env[k] = v
	}
	return env
}

var execVarRE = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// execArgs splits an Exec line as systemd does for these simple lines: %i is the
// instance, ${VAR} is replaced inside a word, a word that is $VAR alone is split on
// whitespace (and dropped when empty).
func execArgs(line, instance string, env map[string]string) ([]string, error) {
	if strings.ContainsAny(line, `"'`) {
		return nil, fmt.Errorf("quotes in %q: keep Exec lines simple", line)
	}
	var out []string
	for _, w := range strings.Fields(line) {
		if strings.Contains(strings.ReplaceAll(w, "%i", ""), "%") {
			return nil, fmt.Errorf("unexpected specifier in %q", w)
		}
		w = strings.ReplaceAll(w, "%i", instance)
		if m := regexp.MustCompile(`^\$(\w+)$`).FindStringSubmatch(w); m != nil {
			out = append(out, strings.Fields(env[m[1]])...)
			continue
		}
		out = append(out, execVarRE.ReplaceAllStringFunc(w, func(s string) string {
			m := execVarRE.FindStringSubmatch(s)
			return env[m[1]+m[2]]
		}))
	}
	return out, nil
}

func TestSystemdUnits(t *testing.T) {
	entries, err := os.ReadDir(repoPath(systemdDir))
	if err != nil {
		t.Fatal(err)
	}
	var units []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".service") {
			units = append(units, e.Name())
		}
	}
	want := []string{"nats-server.service", "spawner-consumer@.service", "spawner-janitor@.service", "spawner-serve.service", "spawner-webhook.service"}
	if !slices.Equal(units, want) {
		t.Errorf("%s: units %v, want %v", systemdDir, units, want)
	}
	users := sysusers(t)
	secrets := readEnvFile(t, systemdDir+"/spawner.env.example")
	type hostPortUse struct{ unit, what string }
	ports := map[int]hostPortUse{} // the split roles may share one host: no port twice
	for _, name := range units {
		u, errs := parseUnit(name, readRepoFile(t, systemdDir+"/"+name))
		for _, err := range errs {
			t.Error(err)
		}
		where := systemdDir + "/" + name
		for _, key := range []string{"Description"} {
			if u.get("Unit", key) == "" {
				t.Errorf("%s: no %s", where, key)
			}
		}
		if !slices.Contains(u.all("Unit", "After"), "network-online.target") || !slices.Contains(u.all("Unit", "Wants"), "network-online.target") {
			t.Errorf("%s: start after network-online.target (Wants= and After=)", where)
		}
		if got := u.get("Install", "WantedBy"); got != "multi-user.target" {
			t.Errorf("%s: WantedBy=%q, want multi-user.target", where, got)
		}
		checkHardening(t, where, u)
		user := u.get("Service", "User")
		if user == "" || user == "root" || !users[user] {
			t.Errorf("%s: User=%q: want a system user of spawner.sysusers.conf", where, user)
		}
		stop, err := systemdDuration(u.get("Service", "TimeoutStopSec"))
		if err != nil || stop == 0 {
			t.Errorf("%s: TimeoutStopSec: %v", where, err)
		}
		if u.get("Service", "Restart") != "on-failure" {
			t.Errorf("%s: Restart=%q, want on-failure", where, u.get("Service", "Restart"))
		}
		env := map[string]string{}
		for _, e := range u.all("Service", "Environment") {
			k, v, _ := strings.Cut(e, "=")
			env[k] = v
		}

		if name == "nats-server.service" {
			checkNATSUnit(t, where, u, stop)
			continue
		}
		envFiles := u.all("Service", "EnvironmentFile")
		if !slices.Contains(envFiles, "/etc/spawner/spawner.env") {
			t.Errorf("%s: EnvironmentFile=/etc/spawner/spawner.env (the secrets) is missing", where)
		}
		if u.get("Service", "RestartPreventExitStatus") != "2" {
			t.Errorf("%s: RestartPreventExitStatus=2: a config error must not restart in a loop", where)
		}
		instances := []string{""}
		if strings.HasSuffix(name, "@.service") {
			instances = []string{"1", "2", "3"}
		}
		for _, inst := range instances {
			uenv := maps2(env, nil)
			if strings.Contains(u.get("Service", "ExecStart"), "$SPAWNER_SERVE_FLAGS") {
				// What the unit's comment tells a host running the roles as separate
				// processes to set; it must start as the comment says.
				flags := "--roles webhook --bootstrap-listen off"
				if !strings.Contains(string(readRepoFile(t, systemdDir+"/"+name)), "SPAWNER_SERVE_FLAGS="+flags) {
					t.Errorf("%s: the comment no longer says SPAWNER_SERVE_FLAGS=%s", where, flags)
				}
				uenv["SPAWNER_SERVE_FLAGS"] = flags
			}
			if inst != "" && inst != "1" && strings.Contains(u.get("Service", "ExecStart"), "$SPAWNER_CONSUMER_FLAGS") {
				// What the unit's comment tells further instances on a host to set.
				flags := "--bootstrap-listen off"
				if !strings.Contains(string(readRepoFile(t, systemdDir+"/"+name)), "SPAWNER_CONSUMER_FLAGS="+flags) {
					t.Errorf("%s: the comment no longer says SPAWNER_CONSUMER_FLAGS=%s", where, flags)
				}
				uenv["SPAWNER_CONSUMER_FLAGS"] = flags
			}
			args, err := execArgs(u.get("Service", "ExecStart"), inst, uenv)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			if len(args) == 0 || args[0] != "/usr/local/bin/spawner" {
				t.Errorf("%s: ExecStart runs %q, want /usr/local/bin/spawner", where, args)
				continue
			}
			inv, err := checkSpawnerArgs(args[1:])
			if err != nil {
				t.Errorf("%s: ExecStart: %v", where, err)
				continue
			}
			if role := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(name, "spawner-"), ".service"), "@"); inv.command != role {
				t.Errorf("%s: runs spawner %s, want %s", where, inv.command, role)
			}
			if inv.flags["config"] != "/etc/spawner/spawner.yaml" {
				t.Errorf("%s: --config %q, want /etc/spawner/spawner.yaml", where, inv.flags["config"])
			}
			// The sample config each kind of deployment installs there.
			sample := systemdDir + "/spawner.yaml"
			if inv.command == "serve" {
				sample = "deployments/examples/spawner.yaml"
			}
			cfg := parseConfig(t, fmt.Sprintf("%s (as %s)", sample, name), readRepoFile(t, sample), secrets, inv)
			applyRoleFlags(cfg, inv)
			if inv.command != "serve" && cfg.NATS.URL == "" {
				t.Errorf("%s: %s has no nats.url: the split roles need the NATS cluster", where, sample)
			}
			// Every role exits within shutdown_timeout after SIGTERM; the service
			// manager's SIGKILL must not come first.
			if stop <= cfg.ShutdownTimeout {
				t.Errorf("%s: TimeoutStopSec %s is not above shutdown_timeout %s: systemd would kill a stop the spawner bounds itself", where, stop, cfg.ShutdownTimeout)
			}
			if inv.command == "serve" {
				dir := "/var/lib/" + u.get("Service", "StateDirectory")
				if cfg.StateDir != dir || !slices.Contains(u.all("Service", "ReadWritePaths"), cfg.StateDir) {
					t.Errorf("%s: state_dir %s must be the StateDirectory (%s) and in ReadWritePaths", where, cfg.StateDir, dir)
				}
				continue
			}
			ls := spawnerListeners(t, inv.command, cfg)
			if (inv.command == "consumer" || inv.command == "janitor") && !slices.ContainsFunc(ls, func(l listener) bool { return l.name == "metrics.listen" }) {
				t.Errorf("%s: serves no /healthz, /readyz, /metrics (--metrics-listen)", where)
			}
			for _, l := range ls {
				if prev, dup := ports[l.port]; dup {
					t.Errorf("%s@%s: %s port %d is also %s's %s", where, inst, l.name, l.port, prev.unit, prev.what)
				}
				ports[l.port] = hostPortUse{name + "@" + inst, l.name}
			}
		}
	}
	checkSystemdAnalyze(t, units)
}

func maps2(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// checkHardening: what every unit must have.
func checkHardening(t *testing.T, where string, u unitFile) {
	t.Helper()
	for key, want := range map[string]string{
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"PrivateDevices": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
		"ProtectControlGroups": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
		"CapabilityBoundingSet": "", "AmbientCapabilities": "", "SystemCallArchitectures": "native",
	} {
		if vs := u["Service"][key]; len(vs) == 0 || vs[len(vs)-1] != want {
			t.Errorf("%s: want %s=%s", where, key, want)
		}
	}
	if !slices.Contains(u.all("Service", "SystemCallFilter"), "@system-service") {
		t.Errorf("%s: want SystemCallFilter=@system-service", where)
	}
	families := u.all("Service", "RestrictAddressFamilies")
	for _, f := range []string{"AF_INET", "AF_INET6", "AF_UNIX"} {
		if !slices.Contains(families, f) {
			t.Errorf("%s: RestrictAddressFamilies lacks %s", where, f)
		}
	}
	if u.get("Service", "ProcSubset") == "pid" {
		t.Errorf("%s: ProcSubset=pid hides /proc/stat, which the process metrics read (/metrics would fail)", where)
	}
}

func checkNATSUnit(t *testing.T, where string, u unitFile, stop time.Duration) {
	t.Helper()
	args, err := execArgs(u.get("Service", "ExecStart"), "", nil)
	if err != nil {
		t.Errorf("%s: %v", where, err)
		return
	}
	if !slices.Equal(args, []string{"/usr/local/bin/nats-server", "--config", "/etc/nats/nats-server.conf"}) {
		t.Errorf("%s: ExecStart %q", where, args)
	}
	if !slices.Equal(u.all("Service", "EnvironmentFile"), []string{"/etc/nats/nats.env"}) {
		t.Errorf("%s: EnvironmentFile must be /etc/nats/nats.env", where)
	}
	const example = "deployments/nats/nats.env.example"
	env := readEnvFile(t, example)
	for _, v := range natsConfVars(t) {
		if env[v] == "" {
			t.Errorf("%s does not set %s, which %s reads", example, v, natsConfPath)
		}
	}
	if dir := "/var/lib/" + u.get("Service", "StateDirectory"); env["NATS_STORE_DIR"] != dir || !slices.Contains(u.all("Service", "ReadWritePaths"), dir) {
		t.Errorf("%s: NATS_STORE_DIR %q of %s must be the StateDirectory %s and in ReadWritePaths", where, env["NATS_STORE_DIR"], example, dir)
	}
	env["NATS_STORE_DIR"] = t.TempDir()
	c := parseNATSConf(t, env)
	if u.get("Service", "KillSignal") != "SIGUSR2" {
		t.Errorf("%s: KillSignal=SIGUSR2 (lame duck mode) lets clients move before the node stops", where)
	}
	if stop <= c.lameDuck {
		t.Errorf("%s: TimeoutStopSec %s does not leave time for lame_duck_duration %s", where, stop, c.lameDuck)
	}
}

// sysusers reads spawner.sysusers.conf: the users it creates.
func sysusers(t *testing.T) map[string]bool {
	t.Helper()
	users := map[string]bool{}
	for _, line := range strings.Split(string(readRepoFile(t, systemdDir+"/spawner.sysusers.conf")), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "u" || len(f) < 3 {
			t.Errorf("spawner.sysusers.conf: %q is not a u line", line)
			continue
		}
		users[f[1]] = true
	}
	return users
}

// checkSystemdAnalyze runs `systemd-analyze verify` on the units where it exists, with
// the binaries pointed at real files, and fails on anything it reports about them.
func checkSystemdAnalyze(t *testing.T, units []string) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not found: units checked by the parser above only")
		return
	}
	dir := t.TempDir()
	var paths []string
	for _, name := range units {
		data := string(readRepoFile(t, systemdDir+"/"+name))
		data = strings.ReplaceAll(data, "/usr/local/bin/spawner", spawnerBin)
		data = strings.ReplaceAll(data, "/usr/local/bin/nats-server", spawnerBin)
		name = strings.Replace(name, "@.service", "@1.service", 1)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, paths...)...).CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) {
			t.Errorf("systemd-analyze verify: %s", strings.ReplaceAll(line, dir+"/", systemdDir+"/"))
		}
	}
	if err != nil && !strings.Contains(string(out), dir) {
		t.Logf("systemd-analyze verify exited with %v (nothing about our units):\n%s", err, out)
	}
}
