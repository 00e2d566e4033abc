package secret

import (
	"net/url"
	"strings"
)

// RedactURL returns u, a URL or a comma-separated list of URLs (a NATS cluster), with
// the user information of each replaced by Redacted. The whole user information
// goes, not only the password as url.URL.Redacted does: in nats://TOKEN@host the
// user name is the secret. A part that does not parse loses everything before its
// last "@" all the same, so a malformed URL never prints its password either.
func RedactURL(u string) string {
	parts := strings.Split(u, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

func redactOne(p string) string {
	if pu, err := url.Parse(strings.TrimSpace(p)); err == nil && pu.User == nil && pu.Opaque == "" {
		return p // an "@" in a path or a query is no credential
	}
	at := strings.LastIndex(p, "@")
	if at < 0 {
		return p
	}
	start := 0
	if s := strings.Index(p, "://"); s >= 0 && s < at {
		start = s + 3
	}
	return p[:start] + Redacted + p[at:]
}
