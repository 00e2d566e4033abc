package main

import (
	"strings"
	"testing"
)

func TestRequiredSkipFails(t *testing.T) {
	in := `{"Action":"output","Package":"p","Test":"TestLXDEndToEnd","Output":"    e2e_lxd_test.go:10: skipping real-LXD test: no daemon\n"}
{"Action":"skip","Package":"p","Test":"TestLXDEndToEnd"}
{"Action":"pass","Package":"p","Elapsed":1}
`
	var out strings.Builder
	if code := run(strings.NewReader(in), &out, func(string) string { return "" }); code != 0 {
		t.Errorf("without SPAWNER_REQUIRE_LXD a skip is fine, got exit %d\n%s", code, out.String())
	}
	out.Reset()
	env := map[string]string{"SPAWNER_REQUIRE_LXD": "1"}
	if code := run(strings.NewReader(in), &out, func(k string) string { return env[k] }); code != 1 {
		t.Errorf("with SPAWNER_REQUIRE_LXD=1 a skipped LXD test must fail the run\n%s", out.String())
	}
	if !strings.Contains(out.String(), "no daemon") {
		t.Errorf("the skip reason is not shown:\n%s", out.String())
	}
}

func TestFailureShowsOutput(t *testing.T) {
	in := `{"Action":"output","Package":"p","Test":"TestX","Output":"    x_test.go:3: boom\n"}
{"Action":"fail","Package":"p","Test":"TestX"}
{"Action":"fail","Package":"p","Elapsed":1}
`
	var out strings.Builder
	if code := run(strings.NewReader(in), &out, func(string) string { return "" }); code != 1 || !strings.Contains(out.String(), "boom") {
		t.Errorf("exit %d\n%s", code, out.String())
	}
}

// A failure message followed by hundreds of lines of process output is still shown:
// CI once printed only "… 41 lines cut …" and the process logs, not why the test failed.
func TestFailureMessageSurvivesLongOutput(t *testing.T) {
	var in strings.Builder
	line := func(s string) {
		in.WriteString(`{"Action":"output","Package":"p","Test":"TestX","Output":"` + s + `\n"}` + "\n")
	}
	line("=== RUN   TestX")
	line("    x_test.go:3: the reason it failed")
	line("    main_test.go:91: spawner serve output:")
	for i := 0; i < 500; i++ {
		line("        time=... level=INFO msg=noise")
	}
	in.WriteString(`{"Action":"fail","Package":"p","Test":"TestX"}` + "\n")
	in.WriteString(`{"Action":"fail","Package":"p","Elapsed":1}` + "\n")
	var out strings.Builder
	if code := run(strings.NewReader(in.String()), &out, func(string) string { return "" }); code != 1 {
		t.Fatalf("exit %d", code)
	}
	got := out.String()
	for _, want := range []string{"the reason it failed", "spawner serve output:", "lines cut"} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if n := strings.Count(got, "msg=noise"); n > 200 {
		t.Errorf("%d noise lines kept, want at most 200", n)
	}
}

// The slowest passed tests are listed, slowest first; subtests are not.
func TestSlowestListed(t *testing.T) {
	in := `{"Action":"pass","Package":"p","Test":"TestFast","Elapsed":0.5}
{"Action":"pass","Package":"p","Test":"TestSlow","Elapsed":90}
{"Action":"pass","Package":"p","Test":"TestSlow/part","Elapsed":80}
{"Action":"pass","Package":"p","Elapsed":91}
`
	var out strings.Builder
	if code := run(strings.NewReader(in), &out, func(string) string { return "" }); code != 0 {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	got := out.String()
	slow, fast := strings.Index(got, "90.0s p TestSlow"), strings.Index(got, "0.5s p TestFast")
	if slow < 0 || fast < 0 || slow > fast || strings.Contains(got, "TestSlow/part") {
		t.Errorf("want TestSlow then TestFast under \"slowest tests\", without the subtest:\n%s", got)
	}
}

// firstRun is a run in which TestRealQuota and a subtest of TestRealAuth skipped
// (their cloud was not there yet), and TestUnit passed.
const firstRun = `{"Action":"run","Package":"p","Test":"TestRealQuota"}
{"Action":"output","Package":"p","Test":"TestRealQuota","Output":"    real_test.go:64: skipping real-OpenStack test: no cloud\n"}
{"Action":"skip","Package":"p","Test":"TestRealQuota"}
{"Action":"run","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"output","Package":"p","Test":"TestRealAuth/admin","Output":"    real_test.go:64: skipping real-OpenStack test: no cloud\n"}
{"Action":"skip","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"pass","Package":"p","Test":"TestRealAuth"}
{"Action":"pass","Package":"p","Test":"TestUnit","Elapsed":2}
{"Action":"pass","Package":"p","Elapsed":3}
`

// secondRun runs the skipped tests again.
const secondRun = `{"Action":"run","Package":"p","Test":"TestRealQuota"}
{"Action":"pass","Package":"p","Test":"TestRealQuota","Elapsed":5}
{"Action":"run","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"pass","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"pass","Package":"p","Test":"TestRealAuth","Elapsed":1}
{"Action":"pass","Package":"p","Elapsed":7}
`

func TestLastRunIsTheResult(t *testing.T) {
	env := map[string]string{"SPAWNER_REQUIRE_OPENSTACK": "1"}
	var out strings.Builder
	if code := run(strings.NewReader(firstRun+secondRun), &out, func(k string) string { return env[k] }); code != 0 {
		t.Errorf("tests skipped, then passed in a second run: exit %d\n%s", code, out.String())
	}
	if strings.Contains(out.String(), "skipped:") {
		t.Errorf("tests that ran in the second run are listed as skipped:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "ok   p (10.0s in 2 runs)") {
		t.Errorf("the package line does not add up both runs:\n%s", out.String())
	}
	out.Reset()
	if code := run(strings.NewReader(firstRun), &out, func(k string) string { return env[k] }); code != 1 {
		t.Errorf("the first run alone, its real-service tests skipped although required: exit %d, want 1\n%s", code, out.String())
	}
}

// A test that fails in the second run fails the run with its second run's output.
func TestSecondRunFailureShowsItsOutput(t *testing.T) {
	second := strings.Replace(secondRun, `{"Action":"pass","Package":"p","Test":"TestRealQuota","Elapsed":5}`,
		`{"Action":"output","Package":"p","Test":"TestRealQuota","Output":"    real_test.go:300: quota not enforced\n"}
{"Action":"fail","Package":"p","Test":"TestRealQuota","Elapsed":5}`, 1)
	second = strings.Replace(second, `{"Action":"pass","Package":"p","Elapsed":7}`, `{"Action":"fail","Package":"p","Elapsed":7}`, 1)
	var out strings.Builder
	if code := run(strings.NewReader(firstRun+second), &out, func(string) string { return "" }); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out.String())
	}
	got := out.String()
	if !strings.Contains(got, "quota not enforced") || strings.Contains(got, "=== FAILED p TestRealQuota\n    real_test.go:64") {
		t.Errorf("the failure shows the first run's output, not the second's:\n%s", got)
	}
	if !strings.Contains(got, "FAIL p (10.0s in 2 runs)") {
		t.Errorf("package line:\n%s", got)
	}
}

// The report ends with why each test failed, however long the output before it: CI's
// view of a failed run shows its end, and once showed only process logs and the
// skipped list, not the reason (TestLXDRepoPolicy).
func TestReportEndsWithWhy(t *testing.T) {
	var in strings.Builder
	line := func(test, s string) {
		in.WriteString(`{"Action":"output","Package":"p","Test":"` + test + `","Output":"` + s + `\n"}` + "\n")
	}
	line("TestX", "    x_test.go:3: not within 1m0s: no check in flight")
	line("TestX", "    main_test.go:91: spawner serve output:")
	for range 300 {
		line("TestX", "        time=... level=INFO msg=noise")
	}
	line("TestY", "    y_test.go:9: 99 of 100 jobs completed")
	in.WriteString(`{"Action":"fail","Package":"p","Test":"TestX"}` + "\n")
	in.WriteString(`{"Action":"fail","Package":"p","Test":"TestY"}` + "\n")
	in.WriteString(`{"Action":"output","Package":"p","Test":"TestZ","Output":"    z_test.go:1: benchmark: set SPAWNER_BENCH=1\n"}` + "\n")
	in.WriteString(`{"Action":"skip","Package":"p","Test":"TestZ"}` + "\n")
	in.WriteString(`{"Action":"fail","Package":"p","Elapsed":1}` + "\n")
	var out strings.Builder
	if code := run(strings.NewReader(in.String()), &out, func(string) string { return "" }); code != 1 {
		t.Fatalf("exit %d", code)
	}
	_, end, ok := strings.Cut(out.String(), "\nskipped:")
	if !ok {
		t.Fatalf("no skipped list:\n%s", out.String())
	}
	_, why, ok := strings.Cut(end, "why each test failed")
	if !ok {
		t.Fatalf("the report does not end with why the tests failed:\n%s", end)
	}
	for _, want := range []string{"p TestX", "x_test.go:3: not within 1m0s: no check in flight", "p TestY", "y_test.go:9: 99 of 100 jobs completed"} {
		if !strings.Contains(why, want) {
			t.Errorf("the end lacks %q:\n%s", want, why)
		}
	}
	if strings.Contains(why, "noise") || strings.Contains(why, "serve output") {
		t.Errorf("the end repeats process output:\n%s", why)
	}
}
