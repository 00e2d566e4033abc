package deployments

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const natsConfPath = "deployments/nats/nats-server.conf"

var natsVarRE = regexp.MustCompile(`\$([A-Z][A-Z0-9_]*)`)

// natsConfVars are the environment variables nats-server.conf reads: every way of
// running it (compose, systemd, Kubernetes) must set each of them.
func natsConfVars(t *testing.T) []string {
	t.Helper()
	var vars []string
	for _, line := range strings.Split(string(readRepoFile(t, natsConfPath)), "\n") {
		line, _, _ = strings.Cut(line, "#")
		for _, m := range natsVarRE.FindAllStringSubmatch(line, -1) {
			if !slices.Contains(vars, m[1]) {
				vars = append(vars, m[1])
			}
		}
	}
	slices.Sort(vars)
	return vars
}

// natsConf is what the config says, read with the server's own parser.
type natsConf struct {
	clientPort, clusterPort, monitorPort int
	routes                               []string
	storeDir                             string
	spawnerUser                          string
	lameDuck                             time.Duration
}

// parseNATSConf parses nats-server.conf with env as the environment, as the server
// would, and checks the shape runner-spawner needs.
func parseNATSConf(t *testing.T, env map[string]string) natsConf {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	path := repoPath(natsConfPath)
	m, err := conf.ParseFile(path)
	if err != nil {
		t.Fatalf("%s: %v", natsConfPath, err)
	}
	// The server's own option processing: unknown keys and bad values are errors.
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%s: %v", natsConfPath, err)
	}
	var c natsConf
	c.clientPort, c.clusterPort, c.monitorPort = opts.Port, opts.Cluster.Port, opts.HTTPPort
	for _, r := range opts.Routes {
		c.routes = append(c.routes, r.String())
	}
	c.storeDir = opts.StoreDir
	c.lameDuck = opts.LameDuckDuration
	if !opts.JetStream {
		t.Errorf("%s: JetStream is not enabled", natsConfPath)
	}
	if opts.Cluster.Name == "" {
		t.Errorf("%s: the cluster has no name", natsConfPath)
	}
	if len(opts.Routes) != 3 {
		t.Errorf("%s: %d cluster routes, want the 3 nodes", natsConfPath, len(opts.Routes))
	}
	if opts.HTTPPort == 0 {
		t.Errorf("%s: no monitor port (http): the health checks use its /healthz", natsConfPath)
	}
	if opts.SystemAccount == "" {
		t.Errorf("%s: no system_account", natsConfPath)
	}
	accounts, _ := m["accounts"].(map[string]any)
	for name, a := range accounts {
		acc, _ := a.(map[string]any)
		users, _ := acc["users"].([]any)
		for _, u := range users {
			if um, _ := u.(map[string]any); um["user"] == "spawner" {
				if acc["jetstream"] == nil {
					t.Errorf("%s: account %s of user spawner has no jetstream", natsConfPath, name)
				}
				c.spawnerUser = "spawner"
			}
		}
	}
	if c.spawnerUser == "" {
		t.Errorf("%s: no account has the user spawner", natsConfPath)
	}
	return c
}

func TestNATSConfig(t *testing.T) {
	env := map[string]string{}
	for _, v := range natsConfVars(t) {
		env[v] = "x"
	}
	env["NATS_SERVER_NAME"] = "nats-1"
	env["NATS_STORE_DIR"] = t.TempDir()
	for i := 1; i <= 3; i++ {
		env[fmt.Sprintf("NATS_ROUTE_%d", i)] = fmt.Sprintf("nats://nats-%d:6222", i)
	}
	c := parseNATSConf(t, env)
	if c.clientPort != 4222 || c.clusterPort != 6222 || c.monitorPort != 8222 {
		t.Errorf("%s: ports client %d cluster %d monitor %d, want NATS's usual 4222, 6222, 8222 (the other artifacts use them)", natsConfPath, c.clientPort, c.clusterPort, c.monitorPort)
	}
	want := []string{"NATS_ROUTE_1", "NATS_ROUTE_2", "NATS_ROUTE_3", "NATS_SERVER_NAME", "NATS_STORE_DIR", "NATS_SYS_PASSWORD", "SPAWNER_NATS_PASSWORD"}
	if got := natsConfVars(t); !slices.Equal(got, want) {
		t.Errorf("%s reads %v from the environment, want %v (update every artifact that runs it)", natsConfPath, got, want)
	}
}

// TestNATSConfigFormsACluster starts three real servers from nats-server.conf, on
// loopback ports, and checks that they form a JetStream cluster the spawner's user can
// create a replicated stream on, and that a wrong password is refused.
func TestNATSConfigFormsACluster(t *testing.T) {
	const password = "test-spawner-password"
	clusterPorts := freePorts(t, 3)
	var servers []*server.Server
	for i := range 3 {
		env := map[string]string{
			"NATS_SERVER_NAME":      fmt.Sprintf("nats-%d", i+1),
			"NATS_STORE_DIR":        t.TempDir(),
			"SPAWNER_NATS_PASSWORD": password,
			"NATS_SYS_PASSWORD":     "test-sys-password",
		}
		for j, p := range clusterPorts {
			env[fmt.Sprintf("NATS_ROUTE_%d", j+1)] = fmt.Sprintf("nats://127.0.0.1:%d", p)
		}
		for k, v := range env {
			t.Setenv(k, v)
		}
		opts, err := server.ProcessConfigFile(repoPath(natsConfPath))
		if err != nil {
			t.Fatal(err)
		}
		opts.Host, opts.Port = "127.0.0.1", -1
		opts.HTTPHost, opts.HTTPPort = "127.0.0.1", -1
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", clusterPorts[i]
		opts.NoLog, opts.NoSigs = true, true
		opts.LameDuckDuration, opts.LameDuckGracePeriod = 0, 0
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("nats-%d: %v", i+1, err)
		}
		s.Start()
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	for i, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("nats-%d not ready", i+1)
		}
	}

	if nc, err := nats.Connect(servers[0].ClientURL(), nats.UserInfo("spawner", "wrong")); err == nil {
		nc.Close()
		t.Error("a wrong password was accepted")
	}
	nc, err := nats.Connect(servers[1].ClientURL(), nats.UserInfo("spawner", password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	// The meta leader is elected a few seconds after the routes connect.
	var lastErr error
	for ctx.Err() == nil {
		rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
		var st jetstream.Stream
		st, lastErr = js.CreateStream(rctx, jetstream.StreamConfig{Name: "DEPLOYMENTS_TEST", Subjects: []string{"deployments.test"}, Replicas: 3, Storage: jetstream.FileStorage})
		if lastErr == nil {
			_, lastErr = js.Publish(rctx, "deployments.test", []byte("x"))
		}
		if lastErr == nil {
			info, err := st.Info(rctx)
			rcancel()
			if err != nil {
				t.Fatal(err)
			}
			if n := len(info.Cluster.Replicas) + 1; n != 3 {
				t.Errorf("stream has %d replicas, want 3", n)
			}
			return
		}
		rcancel()
		if errors.Is(lastErr, jetstream.ErrStreamNameAlreadyInUse) {
			t.Fatal(lastErr)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("no replicated stream on the cluster within 30s: %v", lastErr)
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	for _, ln := range lns {
		ln.Close()
	}
	return ports
}
