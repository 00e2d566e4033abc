package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/control"
	"github.com/runner-spawner/runner-spawner/internal/syncbuf"
)

// spawnerBin is the binary built once for the tests that run it as a separate
// process, the way operators do.
var spawnerBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "spawner-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	spawnerBin = filepath.Join(dir, "spawner")
	// Static and -trimpath, as released: end-to-end tests run it inside minimal
	// containers too. scripts/test.sh builds this package's tests, go vet and
	// deployments/ with the same settings, so that one compile of the dependencies
	// serves them all (each build configuration is a compile of every dependency).
	build := exec.Command("go", "build", "-trimpath", "-o", spawnerBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build spawner:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a spawner process started by a test; it is stopped (SIGTERM, then SIGKILL)
// in t.Cleanup and its output is logged when the test fails.
type proc struct {
	cmd  *exec.Cmd
	out  *syncbuf.Buffer
	done chan struct{}
	err  error
}

func startProc(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(spawnerBin, args...)
	cmd.Env = append(os.Environ(), env...)
	p := &proc{cmd: cmd, out: &syncbuf.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if dir := os.Getenv("SPAWNER_E2E_LOGDIR"); dir != "" {
		// Keep every process's full log for post-mortems.
		if f, err := os.CreateTemp(dir, args[0]+"-*.log"); err == nil {
			cmd.Stdout = io.MultiWriter(p.out, f)
			cmd.Stderr = cmd.Stdout
			t.Cleanup(func() { f.Close() })
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start spawner %v: %v", args, err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(10 * time.Second)
		if t.Failed() {
			t.Logf("spawner %s output:\n%s", strings.Join(args, " "), tail(p.out.String(), 60))
		}
	})
	return p
}

// stop sends SIGTERM and waits up to grace, then kills.
func (p *proc) stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.err
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return p.err
}

// kill sends SIGKILL, as a crash.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// runCmd runs the binary to completion and returns its stdout followed by its stderr,
// and its exit code.
func runCmd(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	out, errOut, code := runCmdSplit(t, env, args...)
	return out + errOut, code
}

// runCmdSplit runs the binary to completion and returns stdout, stderr and the exit code.
func runCmdSplit(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, spawnerBin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			t.Fatalf("run spawner %v: %v", args, err)
		}
	}
	return string(out), stderr.String(), code
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	eventuallyElse(t, timeout, f, nil)
}

// eventuallyElse is eventually that, on timeout, runs dump (when not nil) to log what
// a post-mortem needs before the test fails.
func eventuallyElse(t *testing.T, timeout time.Duration, f func() error, dump func()) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("not within %s: %v", timeout, err)
			if dump != nil {
				dump()
			}
			t.FailNow()
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSettled waits until `spawner status` shows nothing queued, no capacity slot held
// and no dead letter, and returns the last status printed. The janitor deletes an
// instance before it releases the instance's slot, so the status settles a moment after
// the last instance is gone; a leaked slot still fails here.
func waitSettled(t *testing.T, cfg string, timeout time.Duration) string {
	t.Helper()
	var out string
	eventually(t, timeout, func() error {
		stdout, errOut, code := runCmdSplit(t, nil, "status", "--config", cfg, "--json")
		if code != 0 {
			return fmt.Errorf("status exit %d: %s%s", code, stdout, errOut)
		}
		out = stdout
		var st control.Report
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			return fmt.Errorf("status --json: %w: %s", err, out)
		}
		for _, f := range st.Flavors {
			if f.Queued != 0 || f.SlotsInUse != 0 {
				return fmt.Errorf("flavor %s: %d queued, %d slots in use; status %s", f.Name, f.Queued, f.SlotsInUse, oneLine(out))
			}
		}
		if st.DeadLetters != 0 {
			return fmt.Errorf("%d dead letters", st.DeadLetters)
		}
		return nil
	})
	return out
}

var (
	portsMu   sync.Mutex
	portsUsed = map[string]bool{}
)

// freeAddr returns a loopback address that was free a moment ago and that no other
// call in this test binary has handed out (the kernel may offer a port again).
func freeAddr(t *testing.T) string {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		if !portsUsed[addr] {
			portsUsed[addr] = true
			return addr
		}
	}
}

func waitReady(t *testing.T, base string, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d: %s", resp.StatusCode, b)
		}
		return nil
	})
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustOpen(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
