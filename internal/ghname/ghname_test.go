package ghname

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitRepo(t *testing.T) {
	good := []string{
		"o/r", "octo-org/octo-repo", "Octocoders/hello-world", "a1/.github", "x/repo.name_v2",
		"octocat_acme/r", "old-/r", // an Enterprise Managed User; a login from before the rules
		strings.Repeat("a", MaxOwner) + "/" + strings.Repeat("b", MaxRepo),
		"o/...", "o/.x",
	}
	for _, s := range good {
		if _, _, err := SplitRepo(s); err != nil {
			t.Errorf("SplitRepo(%q) = %v, want ok", s, err)
		}
	}
	bad := []string{
		"", "/", "o/", "/r", "noslash", "../..", "./r", "o/..", "o/.", "o/r/extra", "o/r\n", "o\x1b[2J/r",
		"-o/r", "_o/r", "o o/r", "o/r r", "o/r%2f..", "o/ré", "ö/r",
		strings.Repeat("a", MaxOwner+1) + "/r", "o/" + strings.Repeat("b", MaxRepo+1),
	}
	for _, s := range bad {
		_, _, err := SplitRepo(s)
		if !errors.Is(err, ErrBadRepo) {
			t.Errorf("SplitRepo(%q) = %v, want ErrBadRepo", s, err)
			continue
		}
		if len(s) > 3 && strings.Contains(err.Error(), s) {
			t.Errorf("the error repeats the input: %v", err)
		}
	}
	owner, repo, err := SplitRepo("octo-org/octo-repo")
	if owner != "octo-org" || repo != "octo-repo" || err != nil {
		t.Errorf("SplitRepo = %q, %q, %v", owner, repo, err)
	}
}

func FuzzSplitRepo(f *testing.F) {
	for _, s := range []string{"o/r", "../..", "o/r\n", "a_b/c.d", "-/-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		owner, repo, err := SplitRepo(s)
		if err != nil {
			return
		}
		// Whatever is accepted is safe as two URL path segments.
		for _, part := range []string{owner, repo} {
			if part == "" || part == "." || part == ".." || strings.ContainsAny(part, "/%?#\\ \t\r\n") {
				t.Fatalf("accepted %q (%q, %q)", s, owner, repo)
			}
		}
		if owner+"/"+repo != s {
			t.Fatalf("split %q into %q and %q", s, owner, repo)
		}
	})
}
