package main

import (
	"strings"
	"testing"

	"github.com/runner-spawner/runner-spawner/internal/realservice"
)

func TestDeferredMarkIsRealservices(t *testing.T) {
	if deferredMark != realservice.DeferredMark {
		t.Errorf("deferredMark %q, realservice.DeferredMark %q: the report would not find deferred tests", deferredMark, realservice.DeferredMark)
	}
}

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

// deferredRun is a first pass in which TestRealQuota and a subtest of TestRealAuth
// were deferred (realservice.Await), and TestUnit passed.
const deferredRun = `{"Action":"run","Package":"p","Test":"TestRealQuota"}
{"Action":"output","Package":"p","Test":"TestRealQuota","Output":"    real_test.go:64: deferred until ready: openstack (SPAWNER_TEST_DEFER=\"openstack\"): scripts/test.sh runs this test again once it is\n"}
{"Action":"skip","Package":"p","Test":"TestRealQuota"}
{"Action":"run","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"output","Package":"p","Test":"TestRealAuth/admin","Output":"    real_test.go:64: deferred until ready: openstack (SPAWNER_TEST_DEFER=\"openstack\"): scripts/test.sh runs this test again once it is\n"}
{"Action":"skip","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"pass","Package":"p","Test":"TestRealAuth"}
{"Action":"pass","Package":"p","Test":"TestUnit","Elapsed":2}
{"Action":"pass","Package":"p","Elapsed":3}
`

// secondRun runs the deferred tests again.
const secondRun = `{"Action":"run","Package":"p","Test":"TestRealQuota"}
{"Action":"pass","Package":"p","Test":"TestRealQuota","Elapsed":5}
{"Action":"run","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"pass","Package":"p","Test":"TestRealAuth/admin"}
{"Action":"pass","Package":"p","Test":"TestRealAuth","Elapsed":1}
{"Action":"pass","Package":"p","Elapsed":7}
`

func TestDeferredListsTopLevelTests(t *testing.T) {
	var out strings.Builder
	if err := listDeferred(strings.NewReader(deferredRun), &out); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "p TestRealAuth\np TestRealQuota\n"; got != want {
		t.Errorf("deferred = %q, want %q", got, want)
	}
	out.Reset()
	if err := listDeferred(strings.NewReader(deferredRun+secondRun), &out); err != nil {
		t.Fatal(err)
	}
	if out.Len() != 0 {
		t.Errorf("after the second pass, deferred = %q, want none", out.String())
	}
}

func TestDeferredThenRunPasses(t *testing.T) {
	env := map[string]string{"SPAWNER_REQUIRE_OPENSTACK": "1"}
	var out strings.Builder
	if code := run(strings.NewReader(deferredRun+secondRun), &out, func(k string) string { return env[k] }); code != 0 {
		t.Errorf("deferred tests that passed in the second pass: exit %d\n%s", code, out.String())
	}
	if strings.Contains(out.String(), "skipped:") {
		t.Errorf("tests that ran in the second pass are listed as skipped:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "ok   p (10.0s in 2 runs)") {
		t.Errorf("the package line does not add up both runs:\n%s", out.String())
	}
}

// A deferred test that the second pass never ran fails the run, required or not:
// otherwise a broken test.sh would pass without the OpenStack suites.
func TestDeferredNeverRunFails(t *testing.T) {
	var out strings.Builder
	if code := run(strings.NewReader(deferredRun), &out, func(string) string { return "" }); code != 1 {
		t.Errorf("deferred tests never run: exit %d, want 1\n%s", code, out.String())
	}
	if !strings.Contains(out.String(), "p TestRealQuota: real_test.go:64: deferred until ready: openstack") || !strings.Contains(out.String(), "never ran it") {
		t.Errorf("the report does not say which test was never run:\n%s", out.String())
	}
}

// A deferred test that fails in the second pass fails the run with its second run's output.
func TestDeferredThenFails(t *testing.T) {
	second := strings.Replace(secondRun, `{"Action":"pass","Package":"p","Test":"TestRealQuota","Elapsed":5}`,
		`{"Action":"output","Package":"p","Test":"TestRealQuota","Output":"    real_test.go:300: quota not enforced\n"}
{"Action":"fail","Package":"p","Test":"TestRealQuota","Elapsed":5}`, 1)
	second = strings.Replace(second, `{"Action":"pass","Package":"p","Elapsed":7}`, `{"Action":"fail","Package":"p","Elapsed":7}`, 1)
	var out strings.Builder
	if code := run(strings.NewReader(deferredRun+second), &out, func(string) string { return "" }); code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out.String())
	}
	got := out.String()
	if !strings.Contains(got, "quota not enforced") || strings.Contains(got, "=== FAILED p TestRealQuota\n    real_test.go:64") {
		t.Errorf("the failure shows the first pass's output, not the second's:\n%s", got)
	}
	if !strings.Contains(got, "FAIL p (10.0s in 2 runs)") {
		t.Errorf("package line:\n%s", got)
	}
}
