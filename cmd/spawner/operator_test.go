package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
)

// TestOperatorCommands runs the operator commands against a serve the way an operator
// does: flush and reconcile with --json (the contract keys), runners/jobs list,
// dead-letters list, status with the janitor; and flush and reconcile with no janitor
// answering exit non-zero.
func TestOperatorCommands(t *testing.T) {
	w := newE2EWorld(t, fakegithub.Options{JobDuration: 100 * time.Millisecond})
	dir := t.TempDir()
	cfg, webhookURL, _ := w.config(t, dir, []e2eFlavor{{"small", "small", 3}}, "")
	serve := startProc(t, nil, "serve", "--config", cfg)
	waitReady(t, strings.TrimSuffix(webhookURL, "/webhook"), 30*time.Second)
	w.gh.SetWebhookTarget(webhookURL, e2eSecret)
	for range 4 {
		w.gh.CreateJob(fakegithub.JobSpec{Labels: []string{"self-hosted", "small"}})
	}
	w.waitAllCompleted(t, cfg, time.Minute)

	// status shows the active janitor once it has its lease.
	eventually(t, 30*time.Second, func() error {
		out, _, code := runCmdSplit(t, nil, "status", "--config", cfg, "--json")
		var st struct {
			Janitor struct{ Active string } `json:"janitor"`
			Flavors []struct {
				Name       string
				MaxRunners int `json:"max_runners"`
				Runners    map[string]int
			}
		}
		if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Janitor.Active == "" {
			return errorf("no active janitor in status yet: %s", out)
		}
		if len(st.Flavors) != 1 || st.Flavors[0].MaxRunners != 3 || st.Flavors[0].Runners["finished"] == 0 {
			return errorf("status flavors: %s", out)
		}
		return nil
	})

	out, errOut, code := runCmdSplit(t, nil, "flush", "--config", cfg, "--mode", "flush-idle", "--json")
	if code != 0 {
		t.Fatalf("flush exited %d: %s%s", code, out, errOut)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("flush --json: %v\n%s", err, out)
	}
	for _, k := range []string{"mode", "removed", "skipped_busy", "failed", "waited_seconds"} {
		if _, ok := res[k]; !ok {
			t.Errorf("flush --json lacks %q: %s", k, out)
		}
	}
	if res["mode"] != "FLUSH_IDLE" {
		t.Errorf("mode %v, want FLUSH_IDLE", res["mode"])
	}
	if _, _, code := runCmdSplit(t, nil, "flush", "--config", cfg, "--mode", "NO_SUCH_MODE"); code != 2 {
		t.Errorf("a bad mode exited %d, want 2", code)
	}

	// reconcile runs a pass now and prints its summary.
	out, errOut, code = runCmdSplit(t, nil, "reconcile", "--config", cfg, "--json")
	if code != 0 {
		t.Fatalf("reconcile exited %d: %s%s", code, out, errOut)
	}
	var pass map[string]any
	if err := json.Unmarshal([]byte(out), &pass); err != nil {
		t.Fatalf("reconcile --json: %v\n%s", err, out)
	}
	for _, k := range []string{"janitor", "started_at", "instances", "github_runners", "records", "marked", "deferred", "errors"} {
		if _, ok := pass[k]; !ok {
			t.Errorf("reconcile --json lacks %q: %s", k, out)
		}
	}
	if out, errOut, code := runCmdSplit(t, nil, "reconcile", "--config", cfg); code != 0 || !strings.Contains(out, "reconcile by ") {
		t.Errorf("reconcile exited %d: %s%s", code, out, errOut)
	}

	for _, args := range [][]string{
		{"runners", "list", "--json"}, {"jobs", "list", "--json"}, {"dead-letters", "list", "--json"},
		{"runners", "list"}, {"jobs", "list", "--state", "completed"},
	} {
		out, errOut, code := runCmdSplit(t, nil, append(args, "--config", cfg)...)
		if code != 0 {
			t.Errorf("%v exited %d: %s%s", args, code, out, errOut)
		}
		if args[len(args)-1] == "--json" && !json.Valid([]byte(out)) {
			t.Errorf("%v printed no JSON: %s", args, out)
		}
	}

	// Without a janitor nobody answers a flush: exit non-zero, say so.
	if err := serve.stop(20 * time.Second); err != nil {
		t.Logf("serve stopped: %v", err)
	}
	cfg2, webhook2, _ := w.config(t, t.TempDir(), []e2eFlavor{{"small", "small", 3}}, "")
	startProc(t, nil, "serve", "--config", cfg2, "--roles", "webhook")
	waitReady(t, strings.TrimSuffix(webhook2, "/webhook"), 30*time.Second)
	out, errOut, code = runCmdSplit(t, nil, "flush", "--config", cfg2, "--mode", "FLUSH_IDLE", "--timeout", "10s")
	if code == 0 || !strings.Contains(out+errOut, "no active janitor") {
		t.Errorf("flush with no janitor: exit %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCmdSplit(t, nil, "reconcile", "--config", cfg2, "--timeout", "10s")
	if code == 0 || !strings.Contains(out+errOut, "no active janitor") {
		t.Errorf("reconcile with no janitor: exit %d\n%s%s", code, out, errOut)
	}
}

func errorf(format string, args ...any) error {
	return fmt.Errorf(format, args...)
}
