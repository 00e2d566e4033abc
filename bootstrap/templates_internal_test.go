package bootstrap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The values the script writes into lib.sh are quoted when the script is rendered, not
// pasted between quotes at run time: even a URL with a quote in it (which
// bootstrapendpoint.CheckURL refuses before it gets here) stays a value. The test
// renders past Render's checks and runs the script up to where it loads lib.sh.
func TestLibValuesAreQuotedAtRender(t *testing.T) {
	for _, shell := range []string{"sh", "busybox"} {
		t.Run(shell, func(t *testing.T) {
			if _, err := exec.LookPath(shell); err != nil {
				t.Skip(shell + " not installed")
			}
			dir := t.TempDir()
			pwned := filepath.Join(dir, "PWNED")
			url := "http://10.0.0.1:8081/'; touch " + pwned + "; echo '"
			script, err := execute("bootstrap.sh.tmpl", scriptData{
				URL: url, RunnerName: "spawner-small-1-0", Token: "tok", RunDir: filepath.Join(dir, "run"),
				Path: "/usr/bin:/bin", RunnerCommand: "true",
			})
			if err != nil {
				t.Fatal(err)
			}
			const load = ". \"$HOOK_DIR/lib.sh\"\n"
			i := strings.Index(script, load)
			if i < 0 {
				t.Fatalf("the script does not load lib.sh:\n%s", script)
			}
			prefix := script[:i+len(load)] + `printf '%s' "$SPAWNER_URL"` + "\n"
			path := filepath.Join(dir, "prefix.sh")
			if err := os.WriteFile(path, []byte(prefix), 0o700); err != nil {
				t.Fatal(err)
			}
			args := []string{path}
			if shell == "busybox" {
				args = []string{"sh", path}
			}
			out, err := exec.CommandContext(t.Context(), shell, args...).CombinedOutput()
			if _, serr := os.Stat(pwned); serr == nil {
				t.Fatalf("a quote in the URL ran a command through lib.sh\n%s", out)
			}
			if err != nil || string(out) != url {
				t.Errorf("SPAWNER_URL after loading lib.sh = %q (%v), want %q", out, err, url)
			}
		})
	}
}
