// Package untrusted makes strings that come from outside (HTTP headers, URL path
// segments, webhook payloads, runner names an instance presents) safe to print: in logs,
// where an attacker must not be able to grow the log by sending a megabyte, and in
// terminal tables, where a newline or an ANSI escape must not forge a row or repaint the
// screen.
//
// It only shapes strings for output. Validation (is this a delivery id, a runner name,
// owner/repo?) belongs to the package that owns the value; what it refuses is still
// logged through here.
package untrusted

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// LogMax is how many bytes of an untrusted string a log line keeps. Every value we
// expect (a delivery GUID, a runner name, owner/repo, a label) fits in it.
const LogMax = 128

// Log returns s cut to LogMax bytes for a log line. A cut value says how long it
// was, so that a flood shows as one short line and not as a missing field.
func Log(s string) string { return Truncate(s, LogMax) }

// Truncate cuts s to at most max bytes, on a rune boundary, and appends how many bytes
// were dropped ("…(+N bytes)"). A string within max is returned as it is.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…(+" + strconv.Itoa(len(s)-cut) + " bytes)"
}

// Cell makes s safe for one cell of a terminal table: control characters (newlines,
// tabs, ESC of ANSI sequences, C1 controls), invalid UTF-8 and Unicode format
// characters (bidi overrides) are shown escaped as Go escapes them, and the result is
// cut to max bytes.
func Cell(s string, max int) string {
	clean := true
	for _, r := range s {
		if !printable(r) {
			clean = false
			break
		}
	}
	if !clean || !utf8.ValidString(s) {
		var b strings.Builder
		for i, w := 0, 0; i < len(s); i += w {
			r, size := utf8.DecodeRuneInString(s[i:])
			w = size
			switch {
			case r == utf8.RuneError && size == 1:
				b.WriteString(`\x` + strconv.FormatUint(uint64(s[i]), 16))
			case !printable(r):
				q := strconv.QuoteRune(r)
				b.WriteString(q[1 : len(q)-1])
			default:
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	return Truncate(s, max)
}

func printable(r rune) bool {
	return unicode.IsPrint(r) && !unicode.Is(unicode.Cf, r)
}
