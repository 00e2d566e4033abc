package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/runner-spawner/runner-spawner/internal/testcert"
)

// The bootstrap URL is written into every instance's script: config check refuses one
// that could be shell, and checks bootstrap.tls as an instance's curl will.
func TestBootstrapURLAndTLS(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data ...[]byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.Join(data, nil), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key := testcert.SelfSignedFor(t, "spawner", "10.77.0.1", "spawner.example.com")
	otherCert, otherKey := testcert.SelfSignedFor(t, "other", "10.77.0.1")
	certFile, keyFile := write("cert.pem", cert), write("key.pem", key)
	otherCertFile := write("other.pem", otherCert)
	otherKeyFile := write("other-key.pem", otherKey)
	combined := write("combined.pem", cert, key)
	noCert := write("empty.pem", []byte("not a certificate\n"))
	base := strings.Replace(minimal, `bootstrap: {url: "http://10.77.0.1:8081"}`, "", 1)

	tests := []struct {
		name, bootstrap string
		want            []string // keys that must be reported; none: valid
	}{
		{"plain http", `{url: "http://10.77.0.1:8081"}`, nil},
		{"a quote in the url", `{url: "http://10.77.0.1:8081/'; touch /tmp/pwned; '"}`, []string{"bootstrap.url"}},
		{"a command substitution in the url", `{url: "http://10.77.0.1:8081/$(id)"}`, []string{"bootstrap.url"}},
		{"a space in the url", `{url: "http://10.77.0.1:8081/a b"}`, []string{"bootstrap.url"}},
		{"a query in the url", `{url: "http://10.77.0.1:8081/?a=1"}`, []string{"bootstrap.url"}},
		{"https with its own certificate", `{url: "https://10.77.0.1:8081", tls: {cert_file: ` + certFile + `, key_file: ` + keyFile + `}}`, nil},
		{"https by dns name", `{url: "https://spawner.example.com:8081", tls: {cert_file: ` + certFile + `, key_file: ` + keyFile + `}}`, nil},
		{"tls with an http url", `{url: "http://10.77.0.1:8081", tls: {cert_file: ` + certFile + `, key_file: ` + keyFile + `}}`, []string{"bootstrap.url"}},
		{"cert without key", `{url: "https://10.77.0.1:8081", tls: {cert_file: ` + certFile + `}}`, []string{"bootstrap.tls"}},
		{"key of another certificate", `{url: "https://10.77.0.1:8081", tls: {cert_file: ` + certFile + `, key_file: ` + otherKeyFile + `}}`, []string{"bootstrap.tls.key_file"}},
		{"missing files", `{url: "https://10.77.0.1:8081", tls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}}`, []string{"bootstrap.tls.cert_file", "bootstrap.tls.key_file"}},
		{"a key in the pinned file", `{url: "https://10.77.0.1:8081", tls: {cert_file: ` + combined + `, key_file: ` + keyFile + `}}`, []string{"bootstrap.tls.cert_file"}},
		{"certificate for another host", `{url: "https://10.77.0.2:8081", tls: {cert_file: ` + certFile + `, key_file: ` + keyFile + `}}`, []string{"bootstrap.tls.cert_file"}},
		{"ca that did not sign the certificate", `{url: "https://10.77.0.1:8081", tls: {cert_file: ` + certFile + `, key_file: ` + keyFile + `, ca_file: ` + otherCertFile + `}}`, []string{"bootstrap.tls.ca_file"}},
		{"ca file without certificates", `{url: "https://10.77.0.1:8081", tls: {ca_file: ` + noCert + `}}`, []string{"bootstrap.tls.ca_file"}},
		{"ca file alone for a tls proxy", `{url: "https://spawner.example.com", tls: {ca_file: ` + certFile + `}}`, nil},
		{"ca file alone without a url", `{listen: "10.77.0.1:8081", tls: {ca_file: ` + certFile + `}}`, []string{"bootstrap.url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(base+"bootstrap: "+tt.bootstrap+"\n"), nil)
			got := map[string]string{}
			for _, fe := range FieldErrors(err) {
				got[fe.Key] = fe.Reason
			}
			if len(tt.want) == 0 && err != nil {
				t.Fatalf("refused: %v", err)
			}
			for _, k := range tt.want {
				if _, ok := got[k]; !ok {
					t.Errorf("no error for key %q; got %v", k, got)
				}
			}
		})
	}
}
