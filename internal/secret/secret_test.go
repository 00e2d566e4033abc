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
