package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWarningsNameReadableSecretFiles: a secret file, or a config file holding a
// secret inline, that others can read is a warning naming its key; a private one,
// a public certificate, or a config file with no secret in it is not.
func TestWarningsNameReadableSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		// Chmod: the umask must not decide the mode under test.
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	gid := os.Getgid()
	tokenWorld := write("github-token", 0o644, "ghp_x\n")
	pwGroup := write("nats-password", 0o640, "pw\n")
	secretsPrivate := write("webhook-secrets", 0o600, "0123456789abcdef0123\n")
	caPublic := write("ca.crt", 0o644, "not a secret\n")
	base := strings.Replace(minimal, "github: {path: octo-org, token: ghp_test}", "github: {path: octo-org, token_file: "+tokenWorld+"}", 1)
	base = strings.Replace(base, `secrets: ["0123456789abcdef0123"]`, "secrets_file: "+secretsPrivate, 1)
	cfgText := base + "nats: {url: tls://n1:4222, user: spawner, password_file: " + pwGroup + ", tls: {ca_file: " + caPublic + "}}\n"
	cfgPath := write("spawner.yaml", 0o644, cfgText)
	f, err := Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}

	keys := func(ws []*FieldError) map[string]string {
		m := map[string]string{}
		for _, w := range ws {
			m[w.Key] = w.Reason
		}
		return m
	}
	// Running as the file's group: its group may read it (root:spawner 0640).
	got := keys(f.warnings(cfgPath, PartAll, []int{gid}))
	if len(got) != 1 || !strings.Contains(got["github.token_file"], "readable by everyone") {
		t.Errorf("own group: warnings %v, want github.token_file only", got)
	}
	// Running in another group: the group-readable password file is reported too.
	got = keys(f.warnings(cfgPath, PartAll, []int{gid + 1}))
	if len(got) != 2 || !strings.Contains(got["nats.password_file"], "readable by group") {
		t.Errorf("other group: warnings %v, want github.token_file and nats.password_file", got)
	}
	// A webhook receiver does not read the GitHub token.
	if got := keys(f.warnings(cfgPath, PartNone|PartWebhook, []int{gid})); len(got) != 0 {
		t.Errorf("webhook parts: warnings %v, want none", got)
	}

	// A world-readable config file is reported only when it holds a secret inline.
	inline := write("inline.yaml", 0o644, minimal)
	if f, err = Load(inline, nil); err != nil {
		t.Fatal(err)
	}
	got = keys(f.warnings(inline, PartAll, []int{gid}))
	if r := got["(config file)"]; len(got) != 1 || !strings.Contains(r, "github.token") || !strings.Contains(r, "webhook.secrets") || strings.Contains(r, "ghp_test") {
		t.Errorf("config file with inline secrets: warnings %v", got)
	}
	if err := os.Chmod(inline, 0o600); err != nil {
		t.Fatal(err)
	}
	if got := f.warnings(inline, PartAll, []int{gid}); len(got) != 0 {
		t.Errorf("private config file: warnings %v, want none", keys(got))
	}
}
