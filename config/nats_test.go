package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/runner-spawner/runner-spawner/internal/testcert"
)

// TestEmbeddedNATSNeedsCredentialBeyondLoopback: the embedded server listening past
// loopback with no credential is refused at nats.listen (anyone reaching it could
// forge runner records); creds_file, which it cannot check, is refused for it.
func TestEmbeddedNATSNeedsCredentialBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	seedFile := filepath.Join(dir, "user.nk")
	notSeed := filepath.Join(dir, "not-a-seed")
	creds := filepath.Join(dir, "user.creds")
	certPEM, keyPEM := testcert.SelfSignedFor(t, "nats", "127.0.0.1")
	cert, key := filepath.Join(dir, "nats.crt"), filepath.Join(dir, "nats.key")
	for p, data := range map[string][]byte{seedFile: seed, notSeed: []byte("hello\n"), creds: seed, cert: certPEM, key: keyPEM} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, nats string
		wantKey    string // "" = valid
	}{
		{"loopback without credential", "listen: 127.0.0.1:4222", ""},
		{"ipv6 loopback", `listen: "[::1]:4222"`, ""},
		{"localhost", "listen: localhost:4222", ""},
		{"every interface without credential", "listen: 0.0.0.0:4222", "nats.listen"},
		{"empty host without credential", `listen: ":4222"`, "nats.listen"},
		{"an address without credential", "listen: 10.0.0.5:4222", "nats.listen"},
		{"every interface with user and password", "{listen: 0.0.0.0:4222, user: spawner, password: pw}", ""},
		{"every interface with a token", "{listen: 0.0.0.0:4222, token: tok}", ""},
		{"every interface with an nkey", "{listen: 0.0.0.0:4222, nkey_file: " + seedFile + "}", ""},
		{"nkey file without a seed", "{nkey_file: " + notSeed + "}", "nats.nkey_file"},
		{"creds for the embedded server", "{creds_file: " + creds + "}", "nats.creds_file"},
		{"creds for an external server", "{url: nats://n1:4222, creds_file: " + creds + "}", ""},
		{"external server, listen unused", "{url: nats://n1:4222, listen: 0.0.0.0:4222}", ""},
		{"every interface with a password alone (user spawner)", "{listen: 0.0.0.0:4222, password: pw}", ""},
		{"user without password", "{user: spawner}", "nats.password"},
		{"embedded TLS", "{tls: {ca_file: " + cert + ", cert_file: " + cert + ", key_file: " + key + "}}", ""},
		{"a key that is no key", "{tls: {cert_file: " + cert + ", key_file: " + seedFile + "}}", "nats.tls.cert_file"},
		{"a CA for an embedded server without TLS", "{tls: {ca_file: " + cert + "}}", "nats.tls.ca_file"},
		{"a CA for an external server", "{url: tls://n1:4222, tls: {ca_file: " + cert + "}}", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nats := tt.nats
			if !strings.HasPrefix(nats, "{") {
				nats = "{" + nats + "}"
			}
			_, err := Parse([]byte(minimal+"nats: "+nats+"\n"), nil)
			got := map[string]string{}
			for _, fe := range FieldErrors(err) {
				got[fe.Key] = fe.Reason
			}
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				return
			}
			if _, ok := got[tt.wantKey]; !ok || len(got) != 1 {
				t.Errorf("want exactly one error at %s, got %v", tt.wantKey, got)
			}
		})
	}
	_, err = Parse([]byte(minimal+"nats: {listen: 0.0.0.0:4222}\n"), nil)
	if fe := FieldErrors(err); len(fe) != 1 || !strings.Contains(fe[0].Reason, "set nats.user and nats.password") {
		t.Errorf("the message must say what to set: %v", err)
	}
}

// TestBadNATSURLIsPrintedRedacted: a nats.url that does not parse (a "#" in its
// password) is reported without its password.
func TestBadNATSURLIsPrintedRedacted(t *testing.T) {
	_, err := Parse([]byte(minimal+"nats: {url: \"nats://spawner:hunter#2@n1:4222,http://tok-hunter3@n2\"}\n"), nil)
	if err == nil {
		t.Fatal("a bad nats.url was accepted")
	}
	if s := err.Error(); strings.Contains(s, "hunter") || !strings.Contains(s, "nats.url") {
		t.Errorf("nats.url error leaks its credential or names no key: %s", s)
	}
}

// TestPasswordAloneIsUserSpawner: the environment file every unit shares sets only
// SPAWNER_NATS_PASSWORD; it means the user the examples name, for serve's embedded
// server and the split roles alike.
func TestPasswordAloneIsUserSpawner(t *testing.T) {
	env := map[string]string{"SPAWNER_NATS_PASSWORD": "pw"}
	f, err := Parse([]byte(minimal), func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if f.NATS.User != DefaultNATSUser || f.NATS.Password.Reveal() != "pw" {
		t.Errorf("nats.user %q with a password alone, want %q", f.NATS.User, DefaultNATSUser)
	}
	f, err = Parse([]byte(minimal+"nats: {user: ops, password: pw}\n"), nil)
	if err != nil || f.NATS.User != "ops" {
		t.Errorf("an explicit user was replaced: %q (%v)", f.NATS.User, err)
	}
}
