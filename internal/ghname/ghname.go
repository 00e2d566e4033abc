// Package ghname checks repository names ("owner/repo") the way GitHub forms them, so
// that a name read from a webhook payload can be put into an API path, a log line or a
// table without "..", a slash, a newline or an escape sequence riding along.
//
// It only answers whether a name is well formed; it must not talk to GitHub, and it does
// not know whether the repository exists.
package ghname

import (
	"errors"
	"fmt"
	"strings"
)

// GitHub's limits on the two halves of owner/repo.
const (
	MaxOwner = 39
	MaxRepo  = 100
)

// ErrBadRepo marks a string that is not owner/repo as GitHub names them. Its messages
// never repeat the string: callers answer or log them as they are.
var ErrBadRepo = errors.New("not owner/repo")

// SplitRepo checks fullName and returns its two halves.
//
// The owner (a user or organisation login) is 1-39 letters, digits and hyphens, and
// starts with a letter or digit. GitHub refuses new logins that end with a hyphen or
// hold two in a row, but older accounts have them, and Enterprise Managed Users are
// named "handle_shortcode", so those are accepted: what matters here is that the value
// is safe in a URL path, which every login in this alphabet is.
//
// The repository name is 1-100 letters, digits, '.', '-' and '_', and not "." or "..",
// which are the only such names a URL path would resolve.
func SplitRepo(fullName string) (owner, repo string, err error) {
	owner, repo, ok := strings.Cut(fullName, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: no slash", ErrBadRepo)
	}
	if err := checkOwner(owner); err != nil {
		return "", "", err
	}
	if err := checkRepo(repo); err != nil {
		return "", "", err
	}
	return owner, repo, nil
}

// ValidRepo reports whether fullName is owner/repo as SplitRepo accepts it.
func ValidRepo(fullName string) error {
	_, _, err := SplitRepo(fullName)
	return err
}

func checkOwner(s string) error {
	if s == "" || len(s) > MaxOwner {
		return fmt.Errorf("%w: owner must be 1-%d characters", ErrBadRepo, MaxOwner)
	}
	if !alnum(s[0]) {
		return fmt.Errorf("%w: owner must start with a letter or digit", ErrBadRepo)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' {
			return fmt.Errorf("%w: owner may hold only letters, digits, '-' and '_'", ErrBadRepo)
		}
	}
	return nil
}

func checkRepo(s string) error {
	if s == "" || len(s) > MaxRepo {
		return fmt.Errorf("%w: repository name must be 1-%d characters", ErrBadRepo, MaxRepo)
	}
	if s == "." || s == ".." {
		return fmt.Errorf("%w: repository name must not be %q", ErrBadRepo, s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !alnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Errorf("%w: repository name may hold only letters, digits, '.', '-' and '_'", ErrBadRepo)
		}
	}
	return nil
}

func alnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
