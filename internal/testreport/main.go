// Command testreport reads `go test -json` output on stdin and prints what a person
// needs from a CI log: one line per package, the full output of failed tests, every
// skipped test with its reason, and the end-to-end tests' own summary lines. It exits
// non-zero on a failure, and when SPAWNER_REQUIRE_LXD or SPAWNER_REQUIRE_OPENSTACK is
// set and a real-service test was skipped anyway. Given several runs of a package (the
// output of two go test commands, or -count), a test's last run is its result.
//
// It is a build tool for scripts/test.sh; nothing imports it.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// realService names the tests that need LXD or OpenStack.
var realService = regexp.MustCompile(`LXD|Lxd|OpenStack|Openstack|Real`)

// sourceLine finds "file.go:123: " where a test's log line starts.
var sourceLine = regexp.MustCompile(`[A-Za-z0-9_]+\.go:\d+: `)

// summaryLine picks the lines end-to-end tests log as their results.
var summaryLine = regexp.MustCompile(`\b(jobs? (in|on)|p50|p99|ratio|GitHub calls|burst bound|requests for)\b`)

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Getenv))
}

// results is what the events of one or more `go test -json` runs say. A package may
// have run more than once (the output of two go test commands): a test's last run is
// its result, a failure in any run stays one, and a package's time is the sum of its
// runs.
type results struct {
	output    map[string]*strings.Builder // "package test" → output of its last run
	final     map[string]string           // "package test" → pass, fail or skip
	failedAny map[string]bool             // a failure in any run stays a failure
	order     []string                    // keys in the order they first ended
	pkgs      map[string]*pkgResult
	summaries []string
	timed     []timedTest
	other     []string // input lines that are not JSON: a build error, say
}

type pkgResult struct {
	elapsed float64
	failed  bool
	runs    int
}

func readResults(in io.Reader) (*results, error) {
	r := &results{output: map[string]*strings.Builder{}, final: map[string]string{}, failedAny: map[string]bool{}, pkgs: map[string]*pkgResult{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			r.other = append(r.other, sc.Text())
			continue
		}
		key := e.Package + " " + e.Test
		switch e.Action {
		case "run":
			delete(r.output, key) // a second run's output replaces the first's
		case "output":
			b := r.output[key]
			if b == nil {
				b = &strings.Builder{}
				r.output[key] = b
			}
			b.WriteString(e.Output)
			if e.Test != "" && summaryLine.MatchString(e.Output) && strings.Contains(e.Output, "_test.go:") {
				r.summaries = append(r.summaries, strings.TrimSpace(e.Test+": "+strings.TrimSpace(e.Output)))
			}
		case "pass", "fail", "skip":
			if e.Test == "" {
				if e.Action == "skip" {
					continue // no test files
				}
				p := r.pkgs[e.Package]
				if p == nil {
					p = &pkgResult{}
					r.pkgs[e.Package] = p
				}
				p.elapsed += e.Elapsed
				p.failed = p.failed || e.Action == "fail"
				p.runs++
				continue
			}
			if _, seen := r.final[key]; !seen {
				r.order = append(r.order, key)
			}
			r.final[key] = e.Action
			if e.Action == "fail" {
				r.failedAny[key] = true
			}
			if e.Action == "pass" && !strings.Contains(e.Test, "/") {
				r.timed = append(r.timed, timedTest{key, e.Elapsed})
			}
		}
	}
	return r, sc.Err()
}

func run(in io.Reader, out io.Writer, getenv func(string) string) int {
	r, err := readResults(in)
	for _, l := range r.other {
		fmt.Fprintln(out, l)
	}
	code := 0
	if err != nil {
		fmt.Fprintf(out, "reading go test -json: %v\n", err)
		code = 1
	}
	var failed, skipped []string
	for _, key := range r.order {
		switch {
		case r.failedAny[key]:
			failed = append(failed, key)
		case r.final[key] == "skip":
			skipped = append(skipped, key)
		}
	}
	var pkgLines []string
	for name, p := range r.pkgs {
		status, runs := "ok  ", ""
		if p.failed {
			status = "FAIL"
		}
		if p.runs > 1 {
			runs = fmt.Sprintf(" in %d runs", p.runs)
		}
		pkgLines = append(pkgLines, fmt.Sprintf("%s %s (%.1fs%s)", status, name, p.elapsed, runs))
	}
	for _, key := range failed {
		fmt.Fprintf(out, "=== FAILED %s\n%s\n", key, tail(r.output[key], 200))
	}
	for _, key := range pkgFailuresWithoutTests(pkgLines, failed) {
		fmt.Fprintf(out, "=== FAILED package %s\n%s\n", key, tail(r.output[key+" "], 100))
	}
	slices.Sort(pkgLines)
	fmt.Fprintln(out, strings.Join(pkgLines, "\n"))
	if len(r.summaries) > 0 {
		fmt.Fprintln(out, "\nresults logged by the end-to-end tests:")
		for _, s := range r.summaries {
			fmt.Fprintln(out, "  "+s)
		}
	}
	printSlowest(out, r.timed, 12)
	if len(failed) > 0 || slices.ContainsFunc(pkgLines, func(l string) bool { return strings.HasPrefix(l, "FAIL") }) {
		code = 1
	}
	if len(skipped) > 0 {
		fmt.Fprintln(out, "\nskipped:")
		required := getenv("SPAWNER_REQUIRE_LXD") == "1" || getenv("SPAWNER_REQUIRE_OPENSTACK") == "1"
		for _, key := range skipped {
			s := key + ": " + skipReason(r.output[key])
			mark := ""
			if required && realService.MatchString(s) && !strings.Contains(s, "SPAWNER_BENCH") {
				mark = "  <- a real-service suite was skipped although required"
				code = 1
			}
			fmt.Fprintln(out, "  "+s+mark)
		}
	}
	printWhy(out, failed, r.output)
	return code
}

// whyLines and whyWidth bound printWhy's lines per test and their length.
const whyLines, whyWidth = 12, 300

// printWhy ends the report with each failed test's own messages (the lines it logged
// itself, not the process output it printed below them): a reader, or a tool, that
// sees only the end of a long CI log still learns why each test failed.
func printWhy(out io.Writer, failed []string, output map[string]*strings.Builder) {
	if len(failed) == 0 {
		return
	}
	fmt.Fprintln(out, "\nwhy each test failed (its own messages; the output above has the rest):")
	for _, key := range failed {
		fmt.Fprintln(out, "  "+key)
		var msgs []string
		if b := output[key]; b != nil {
			for _, l := range strings.Split(b.String(), "\n") {
				if testMessage.MatchString(l) && !strings.HasSuffix(l, " output:") {
					msgs = append(msgs, strings.TrimSpace(l))
				}
			}
		}
		if len(msgs) > whyLines {
			msgs = append(msgs[:whyLines], fmt.Sprintf("… %d more", len(msgs)-whyLines))
		}
		for _, m := range msgs {
			if len(m) > whyWidth {
				m = m[:whyWidth] + " …"
			}
			fmt.Fprintln(out, "    "+m)
		}
	}
}

// timedTest is a top-level test that passed, with how long it took.
type timedTest struct {
	name    string
	elapsed float64
}

// printSlowest lists the n slowest tests: the CI run has a time limit, and these are
// where its minutes go (a package's tests run one after another unless they ask not to).
func printSlowest(out io.Writer, timed []timedTest, n int) {
	if len(timed) == 0 {
		return
	}
	slices.SortStableFunc(timed, func(a, b timedTest) int { return cmp.Compare(b.elapsed, a.elapsed) })
	fmt.Fprintln(out, "\nslowest tests:")
	for _, t := range timed[:min(n, len(timed))] {
		fmt.Fprintf(out, "  %6.1fs %s\n", t.elapsed, t.name)
	}
}

func pkgFailuresWithoutTests(pkgLines, failed []string) []string {
	var out []string
	for _, l := range pkgLines {
		if !strings.HasPrefix(l, "FAIL ") {
			continue
		}
		pkg := strings.Fields(l)[1]
		if !slices.ContainsFunc(failed, func(k string) bool { return strings.HasPrefix(k, pkg+" ") }) {
			out = append(out, pkg)
		}
	}
	return out
}

func skipReason(b *strings.Builder) string {
	if b == nil {
		return "(no reason given)"
	}
	for _, l := range strings.Split(b.String(), "\n") {
		if m := sourceLine.FindStringIndex(l); m != nil {
			return strings.TrimSpace(l[m[0]:])
		}
	}
	return "(no reason given)"
}

// testMessage matches a line a test itself logged ("    file_test.go:12: ..."), as opposed
// to the process output a test prints indented below its message.
var testMessage = regexp.MustCompile(`^ {4}[A-Za-z0-9_]+\.go:\d+: `)

// tail keeps the last lines of a failed test's output, and every line the test itself
// logged wherever it is: the failure reason must survive however much process output
// follows it.
func tail(b *strings.Builder, lines int) string {
	if b == nil {
		return ""
	}
	ls := strings.Split(b.String(), "\n")
	if len(ls) <= lines {
		return strings.Join(ls, "\n")
	}
	var out []string
	cut := 0
	for i, l := range ls {
		if i >= len(ls)-lines || testMessage.MatchString(l) || strings.HasPrefix(l, "=== ") || strings.HasPrefix(l, "--- ") {
			if cut > 0 {
				out = append(out, fmt.Sprintf("… %d lines cut …", cut))
				cut = 0
			}
			out = append(out, l)
			continue
		}
		cut++
	}
	return strings.Join(out, "\n")
}
