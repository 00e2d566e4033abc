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
