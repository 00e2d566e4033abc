package webhook

import (
	"errors"
	"strings"
	"testing"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"action":"queued"}`)
	oldKey, newKey := "old-secret-0123456789", "new-secret-0123456789"
	secrets := []secret.Value{secret.New(newKey), secret.New(oldKey)}
	altered := append([]byte{}, body...)
	altered[3] ^= 1
	sha1 := "sha1=" + strings.Repeat("ab", 20)
	tests := []struct {
		name   string
		body   []byte
		header string
		want   error
	}{
		{"right", body, Sign(body, newKey), nil},
		{"second secret of a rotation", body, Sign(body, oldKey), nil},
		{"wrong secret", body, Sign(body, "someone-else-secret"), ErrSignatureMismatch},
		{"missing", body, "", ErrSignatureMissing},
		{"wrong algorithm prefix", body, sha1, ErrSignatureMalformed},
		{"sha1 value under sha256 prefix", body, "sha256=" + strings.Repeat("ab", 20), ErrSignatureMalformed},
		{"not hex", body, "sha256=" + strings.Repeat("zz", 32), ErrSignatureMalformed},
		{"body altered by one byte", altered, Sign(body, newKey), ErrSignatureMismatch},
		{"upper-case prefix", body, strings.Replace(Sign(body, newKey), "sha256", "SHA256", 1), ErrSignatureMalformed},
		{"trailing garbage", body, Sign(body, newKey) + "00", ErrSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifySignature(tt.body, tt.header, secrets)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("VerifySignature = %v, want %v", err, tt.want)
			}
		})
	}
	if err := VerifySignature(body, Sign(body, newKey), nil); !errors.Is(err, ErrSignatureMismatch) {
		t.Errorf("no secrets configured: %v, want mismatch", err)
	}
}

func FuzzVerifySignature(f *testing.F) {
	key := "fuzz-secret-0123456789"
	f.Add([]byte(`{"action":"queued"}`), Sign([]byte(`{"action":"queued"}`), key))
	f.Add([]byte{}, "sha256=")
	f.Add([]byte("x"), "sha1=00")
	f.Fuzz(func(t *testing.T, body []byte, header string) {
		err := VerifySignature(body, header, []secret.Value{secret.New(key)})
		if err == nil && header != Sign(body, key) {
			t.Fatalf("accepted header %q for a body it does not sign", header)
		}
		if header == Sign(body, key) && err != nil {
			t.Fatalf("rejected the right signature: %v", err)
		}
	})
}
