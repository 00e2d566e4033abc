// Package secret holds credentials (webhook secrets, GitHub tokens, passwords) in a type
// that never prints them: fmt, slog, JSON and YAML encoders all see "REDACTED".
//
// It must not read files or the environment itself: config loading decides where a
// secret comes from and wraps it here.
package secret

import (
	"encoding/json"
	"log/slog"
)

// Redacted is what every printing path shows instead of the value.
const Redacted = "REDACTED"

// Value is a secret string. The zero Value is empty.
type Value struct {
	s string
}

// New wraps s.
func New(s string) Value { return Value{s: s} }

// Reveal returns the secret itself. Call it only where the value leaves the process
// for its intended peer (an HTTP header, an HMAC key).
func (v Value) Reveal() string { return v.s }

// IsZero reports whether the secret is empty.
func (v Value) IsZero() bool { return v.s == "" }

// String implements fmt.Stringer so %v and %s never print the value.
func (v Value) String() string {
	if v.s == "" {
		return ""
	}
	return Redacted
}

// GoString implements fmt.GoStringer so %#v never prints the value.
func (v Value) GoString() string { return `secret.Value("` + v.String() + `")` }

// LogValue implements slog.LogValuer.
func (v Value) LogValue() slog.Value { return slog.StringValue(v.String()) }

// MarshalJSON never emits the value: status output and debug dumps stay clean.
func (v Value) MarshalJSON() ([]byte, error) { return json.Marshal(v.String()) }

// MarshalText never emits the value (used by YAML encoders and flag printing).
func (v Value) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// UnmarshalText reads a plain string, so config files can hold secrets directly.
func (v *Value) UnmarshalText(b []byte) error {
	v.s = string(b)
	return nil
}
