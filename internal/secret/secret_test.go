package secret

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

func TestValueNeverPrints(t *testing.T) {
	v := New("hunter2")
	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("x", "secret", v, "struct", struct{ S Value }{v})
	js, err := json.Marshal(struct{ S Value }{v})
	if err != nil {
		t.Fatal(err)
	}
	txt, _ := v.MarshalText()
	outputs := map[string]string{
		"%v":    fmt.Sprintf("%v", v),
		"%s":    fmt.Sprintf("%s", v),
		"%+v":   fmt.Sprintf("%+v", struct{ S Value }{v}),
		"%#v":   fmt.Sprintf("%#v", v),
		"slog":  logBuf.String(),
		"json":  string(js),
		"text":  string(txt),
		"error": fmt.Errorf("wrap %v", v).Error(),
	}
	for name, out := range outputs {
		if strings.Contains(out, "hunter2") {
			t.Errorf("%s leaks the secret: %s", name, out)
		}
	}
	if v.Reveal() != "hunter2" {
		t.Errorf("Reveal() = %q", v.Reveal())
	}
}

func TestZero(t *testing.T) {
	var v Value
	if !v.IsZero() || v.String() != "" {
		t.Errorf("zero value: IsZero=%v String=%q", v.IsZero(), v.String())
	}
	if err := v.UnmarshalText([]byte("abc")); err != nil || v.Reveal() != "abc" {
		t.Errorf("UnmarshalText: %v %q", err, v.Reveal())
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://spawner:hunter2@nats-1:4222", "nats://REDACTED@nats-1:4222"},
		{"nats://tok-hunter2@nats-1:4222", "nats://REDACTED@nats-1:4222"},
		{"nats://a:hunter2@n1:4222,nats://n2:4222, tls://b:hunter2@n3:4222", "nats://REDACTED@n1:4222,nats://n2:4222, tls://REDACTED@n3:4222"},
		// Malformed: a "#" or a "/" in the password breaks parsing; still hidden.
		{"nats://spawner:hun#ter2@nats-1:4222", "nats://REDACTED@nats-1:4222"},
		{"nats://spawner:hun/ter2@nats-1", "nats://REDACTED@nats-1"},
		{"spawner:hunter2@nats-1:4222", "REDACTED@nats-1:4222"},
		{"nats://n1:4222/?x=a@b", "nats://n1:4222/?x=a@b"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(RedactURL(tt.in), "hunter2") || strings.Contains(RedactURL(tt.in), "ter2") {
			t.Errorf("RedactURL(%q) leaks the secret", tt.in)
		}
	}
}
