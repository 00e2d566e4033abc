// Package runnername is the one rule for runner names, which are also instance names,
// GitHub runner names, KV keys and a path segment of the bootstrap endpoint. The
// backends refuse a spec whose name breaks it, and the bootstrap endpoint refuses a
// request whose {name} breaks it before it reads the store.
//
// It must stay a leaf: backends (which must not know the queue) and bootstrap (which
// must not know the backends) both import it.
package runnername

import "regexp"

// re is the intersection of what LXD (a hostname label), OpenStack and GitHub runner
// names accept, so one name works everywhere; it is also a valid NATS KV key and safe
// unquoted in a URL path and a shell word.
var re = regexp.MustCompile(`^[a-z][a-z0-9-]{0,61}[a-z0-9]$`)

// Rule says what Valid accepts, for error messages.
const Rule = "2-63 lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen"

// Valid reports whether s is a runner name.
func Valid(s string) bool { return re.MatchString(s) }
