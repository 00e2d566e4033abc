package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRepoPolicyKeys checks repo_policy: off by default, the deployment's section
// with its token from a file or the environment, a flavor's own section replacing
// it (or turning it off), allow_external_contributors defaulting to true, and
// `config check` naming each bad key.
func TestRepoPolicyKeys(t *testing.T) {
	f, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.RepoPolicyFor("small") != nil || !*f.Flavors[0].Runner.AllowExternalContributors {
		t.Errorf("defaults: policy %+v, allow_external_contributors %v", f.RepoPolicyFor("small"), *f.Flavors[0].Runner.AllowExternalContributors)
	}

	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "policy-token")
	if err := os.WriteFile(tokenFile, []byte("service-token-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(minimal, "flavors:", "repo_policy: {url: \"http://10.77.0.1:8000\", token_file: "+tokenFile+"}\nflavors:", 1) +
		"    runner: {allow_external_contributors: false}\n" +
		"  - name: own\n    labels: [own]\n    max_runners: 1\n    backend: sim\n    repo_policy: {url: \"https://policy.example.com/base\", token: inline-token, timeout: 5s, fail_open: true}\n" +
		"  - name: off\n    labels: [off]\n    max_runners: 1\n    backend: sim\n    repo_policy: {url: \"\"}\n"
	f, err = Parse([]byte(yaml), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rp := f.RepoPolicyFor("small"); rp == nil || rp.URL != "http://10.77.0.1:8000" || rp.Token.Reveal() != "service-token-from-file" || rp.Timeout != DefaultRepoPolicyTimeout || rp.FailOpen {
		t.Errorf("small: %+v", rp)
	}
	if *f.Flavors[0].Runner.AllowExternalContributors {
		t.Error("allow_external_contributors: false not read")
	}
	if rp := f.RepoPolicyFor("own"); rp == nil || rp.URL != "https://policy.example.com/base" || rp.Token.Reveal() != "inline-token" || rp.Timeout != 5*time.Second || !rp.FailOpen {
		t.Errorf("own: %+v", rp)
	}
	if rp := f.RepoPolicyFor("off"); rp != nil {
		t.Errorf("off: %+v", rp)
	}
	f, err = Parse([]byte(strings.Replace(yaml, "token_file: "+tokenFile, "token_file: "+tokenFile+", fail_open: false", 1)), func(k string) string {
		if k == EnvRepoPolicyToken {
			return "service-token-from-env"
		}
		return ""
	})
	if err != nil || f.RepoPolicyFor("small").Token.Reveal() != "service-token-from-env" {
		t.Errorf("the environment's token: %v", err)
	}

	for name, tc := range map[string]struct{ yaml, key string }{
		"no token":          {strings.Replace(minimal, "flavors:", "repo_policy: {url: \"http://10.77.0.1:8000\"}\nflavors:", 1), "repo_policy.token"},
		"quote in url":      {strings.Replace(minimal, "flavors:", "repo_policy: {url: \"http://x'y/\", token: t}\nflavors:", 1), "repo_policy.url"},
		"token without url": {strings.Replace(minimal, "flavors:", "repo_policy: {token: t}\nflavors:", 1), "repo_policy.url"},
		"timeout too long":  {strings.Replace(minimal, "flavors:", "repo_policy: {url: \"http://p:1\", token: t, timeout: 1h}\nflavors:", 1), "repo_policy.timeout"},
		"flavor's own":      {minimal + "    repo_policy: {url: \"ftp://p\"}\n", "flavors[0].repo_policy.url"},
		"unreadable file":   {strings.Replace(minimal, "flavors:", "repo_policy: {url: \"http://p:1\", token_file: /nonexistent/x}\nflavors:", 1), "repo_policy.token_file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), nil)
			found := false
			for _, fe := range FieldErrors(err) {
				found = found || fe.Key == tc.key
			}
			if !found {
				t.Errorf("no error for %s; got %v", tc.key, err)
			}
		})
	}
}
