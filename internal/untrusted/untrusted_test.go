package untrusted

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"0123456789abc", 10, "0123456789…(+3 bytes)"},
		// a cut never splits a rune: é is two bytes
		{"aaaaaaaaaé", 10, "aaaaaaaaa…(+2 bytes)"},
	} {
		if got := Truncate(tc.in, tc.max); got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
	long := strings.Repeat("x", 1<<20)
	got := Log(long)
	if len(got) > LogMax+32 || !strings.HasSuffix(got, "(+1048448 bytes)") {
		t.Errorf("Log of 1 MiB = %d bytes %q", len(got), got[len(got)-20:])
	}
}

func TestCell(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"octo/hello-world", "octo/hello-world"},
		{"evil\nrow", `evil\nrow`},
		{"\x1b[2Jclear", `\x1b[2Jclear`},
		{"tab\there", `tab\there`},
		{"bidi\u202eoverride", `bidi\u202eoverride`},
		{"bad\xffutf8", `bad\xffutf8`},
		{"ünïcödé ok", "ünïcödé ok"},
	} {
		got := Cell(tc.in, 100)
		if got != tc.want {
			t.Errorf("Cell(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Cell(%q) is not valid UTF-8", tc.in)
		}
	}
	if got := Cell(strings.Repeat("a", 50), 20); !strings.HasPrefix(got, strings.Repeat("a", 20)+"…") {
		t.Errorf("Cell did not cut: %q", got)
	}
}
