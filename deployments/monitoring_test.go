package deployments

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
)

const (
	alertsFile    = "deployments/monitoring/alerts.yaml"
	dashboardFile = "deployments/monitoring/grafana-dashboard.json"
)

// metricInfo is a collector declared in the code.
type metricInfo struct {
	kind   string // counter, gauge, histogram, summary
	labels []string
	where  string
}

// codeFacts are the metrics the code declares and every string literal it holds.
type codeFacts struct {
	metrics  map[string]metricInfo
	literals map[string]bool
}

var (
	factsOnce sync.Once
	facts     codeFacts
	factsErr  error
)

// codeMetrics reads every non-test Go file of the repository and collects the
// prometheus.New*(Opts{Name: …}, []string{labels…}) calls and the string literals
// (label values such as outcome="unavailable" must be among them).
func codeMetrics(t *testing.T) codeFacts {
	t.Helper()
	factsOnce.Do(func() { facts, factsErr = collectCodeFacts() })
	if factsErr != nil {
		t.Fatal(factsErr)
	}
	return facts
}

var collectorKinds = map[string]string{
	"NewCounter": "counter", "NewCounterVec": "counter", "NewCounterFunc": "counter",
	"NewGauge": "gauge", "NewGaugeVec": "gauge", "NewGaugeFunc": "gauge",
	"NewHistogram": "histogram", "NewHistogramVec": "histogram",
	"NewSummary": "summary", "NewSummaryVec": "summary",
}

func collectCodeFacts() (codeFacts, error) {
	cf := codeFacts{metrics: map[string]metricInfo{}, literals: map[string]bool{}}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(repoRoot, path)
		if d.IsDir() {
			if name := d.Name(); rel != "." && (strings.HasPrefix(name, ".") || name == "testdata" || rel == "deployments") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		var walkErr error
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.BasicLit:
				if n.Kind == token.STRING {
					if s, err := strconv.Unquote(n.Value); err == nil {
						cf.literals[s] = true
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
					return true
				}
				kind, ok := collectorKinds[sel.Sel.Name]
				if !ok || len(n.Args) == 0 {
					return true
				}
				name, labels, err := collectorDecl(n)
				if err != nil {
					walkErr = fmt.Errorf("%s: %v", fset.Position(n.Pos()), err)
					return false
				}
				cf.metrics[name] = metricInfo{kind: kind, labels: labels, where: fmt.Sprintf("%s:%d", rel, fset.Position(n.Pos()).Line)}
			}
			return true
		})
		return walkErr
	})
	return cf, err
}

// collectorDecl reads the metric name (Namespace_Subsystem_Name) and the label names
// of a prometheus.New* call.
func collectorDecl(call *ast.CallExpr) (string, []string, error) {
	opts, ok := call.Args[0].(*ast.CompositeLit)
	if u, isU := call.Args[0].(*ast.UnaryExpr); isU {
		opts, ok = u.X.(*ast.CompositeLit)
	}
	if !ok {
		return "", nil, fmt.Errorf("collector options are not a literal: the test cannot read its name")
	}
	parts := map[string]string{}
	for _, e := range opts.Elts {
		kv, ok := e.(*ast.KeyValueExpr)
		if !ok {
			continue
		}
		k, _ := kv.Key.(*ast.Ident)
		lit, ok := kv.Value.(*ast.BasicLit)
		if k == nil || !ok || lit.Kind != token.STRING {
			continue
		}
		parts[k.Name], _ = strconv.Unquote(lit.Value)
	}
	if parts["Name"] == "" {
		return "", nil, fmt.Errorf("collector without a literal Name")
	}
	name := parts["Name"]
	for _, p := range []string{parts["Subsystem"], parts["Namespace"]} {
		if p != "" {
			name = p + "_" + name
		}
	}
	var labels []string
	if len(call.Args) > 1 {
		if l, ok := call.Args[1].(*ast.CompositeLit); ok {
			for _, e := range l.Elts {
				if lit, ok := e.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					s, _ := strconv.Unquote(lit.Value)
					labels = append(labels, s)
				}
			}
		}
	}
	return name, labels, nil
}

// foreignMetrics are the series the rules and the dashboard use that no spawner
// collector declares: Prometheus's own up, the blackbox exporter's probe_success (the
// /readyz probes) and the process collector every spawner registers (cmd/spawner).
var foreignMetrics = map[string][]string{
	"up":                            nil,
	"probe_success":                 nil,
	"process_resident_memory_bytes": nil,
}

// targetLabels are attached by Prometheus's scrape configs, not by the code.
var targetLabels = []string{"job", "instance", "role"}

// exprCheck is what checking one PromQL expression found.
type exprCheck struct {
	metrics []string // base metric names (a histogram's, not its _bucket series)
	errs    []string
}

var simpleAlternationRE = regexp.MustCompile(`^[a-z0-9_]+(\|[a-z0-9_]+)*$`)

// checkPromQL parses expr and checks each series it selects: the metric exists (in
// the code, or is one of foreignMetrics), each label matched or grouped by exists on
// it, and each label value matched on a spawner metric appears in the code.
func checkPromQL(t *testing.T, expr string) exprCheck {
	t.Helper()
	cf := codeMetrics(t)
	var res exprCheck
	e, err := promql.NewParser(promql.Options{}).ParseExpr(expr)
	if err != nil {
		res.errs = append(res.errs, err.Error())
		return res
	}
	// labelsOf returns the labels a selector's series carry, or nil for an unknown metric.
	labelsOf := func(vs *promql.VectorSelector) (string, []string, bool) {
		name := vs.Name
		if info, ok := cf.metrics[name]; ok && info.kind != "histogram" && info.kind != "summary" {
			return name, append(slices.Clone(info.labels), targetLabels...), true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			if info, known := cf.metrics[base]; ok && known && (info.kind == "histogram" || info.kind == "summary") {
				ls := append(slices.Clone(info.labels), targetLabels...)
				if suffix == "_bucket" {
					ls = append(ls, "le")
				}
				if info.kind == "summary" {
					ls = append(ls, "quantile")
				}
				return base, ls, true
			}
		}
		if ls, ok := foreignMetrics[name]; ok {
			return name, append(slices.Clone(ls), targetLabels...), false
		}
		return "", nil, false
	}
	var groupingErrs []string
	promql.Inspect(e, func(node promql.Node, _ []promql.Node) error {
		switch n := node.(type) {
		case *promql.VectorSelector:
			base, ls, ours := labelsOf(n)
			if ls == nil {
				res.errs = append(res.errs, fmt.Sprintf("metric %q exists in no collector of the code", n.Name))
				return nil
			}
			res.metrics = append(res.metrics, base)
			for _, m := range n.LabelMatchers {
				if m.Name == model.MetricNameLabel {
					continue
				}
				if !slices.Contains(ls, m.Name) {
					res.errs = append(res.errs, fmt.Sprintf("%s has no label %q (has %v)", n.Name, m.Name, ls))
					continue
				}
				if !ours || slices.Contains(targetLabels, m.Name) || m.Name == "le" {
					continue
				}
				var values []string
				switch m.Type {
				case labels.MatchEqual, labels.MatchNotEqual:
					values = []string{m.Value}
				default:
					if simpleAlternationRE.MatchString(m.Value) {
						values = strings.Split(m.Value, "|")
					}
				}
				for _, v := range values {
					if v != "" && !cf.literals[v] {
						res.errs = append(res.errs, fmt.Sprintf("%s{%s=%q}: no such value in the code", n.Name, m.Name, v))
					}
				}
			}
		case *promql.AggregateExpr:
			have := selectorLabels(n.Expr, labelsOf)
			for _, g := range n.Grouping {
				if !have[g] {
					groupingErrs = append(groupingErrs, fmt.Sprintf("%s by/without (%s): no series below has that label", n.Op, g))
				}
			}
		case *promql.BinaryExpr:
			if n.VectorMatching == nil {
				return nil
			}
			lhs, rhs := selectorLabels(n.LHS, labelsOf), selectorLabels(n.RHS, labelsOf)
			for _, l := range n.VectorMatching.MatchingLabels {
				if !lhs[l] || !rhs[l] {
					groupingErrs = append(groupingErrs, fmt.Sprintf("on/ignoring (%s): not a label of both sides", l))
				}
			}
		}
		return nil
	})
	res.errs = append(res.errs, groupingErrs...)
	return res
}

// selectorLabels is the union of the labels of every selector below node.
func selectorLabels(node promql.Node, labelsOf func(*promql.VectorSelector) (string, []string, bool)) map[string]bool {
	out := map[string]bool{}
	promql.Inspect(node, func(n promql.Node, _ []promql.Node) error {
		if vs, ok := n.(*promql.VectorSelector); ok {
			_, ls, _ := labelsOf(vs)
			for _, l := range ls {
				out[l] = true
			}
		}
		return nil
	})
	return out
}

func TestCodeMetricsAreFound(t *testing.T) {
	cf := codeMetrics(t)
	// A sample from each package, so that a broken collector scan fails here.
	for _, name := range []string{"spawner_webhook_requests_total", "spawner_consumer_spawn_latency_seconds", "spawner_janitor_active", "spawner_github_rate_limit_remaining", "spawner_bootstrap_requests_total"} {
		if _, ok := cf.metrics[name]; !ok {
			t.Errorf("metric %s not found in the code (found %d: %v)", name, len(cf.metrics), sortedKeys(cf.metrics))
		}
	}
	for name, m := range cf.metrics {
		if !strings.HasPrefix(name, "spawner_") {
			t.Errorf("%s: metric %s does not start with spawner_", m.where, name)
		}
	}
	for _, bad := range []string{
		`rate(spawner_webhook_requests_totl[5m])`,
		`spawner_webhook_requests_total{outcom="unavailable"}`,
		`spawner_webhook_requests_total{outcome="unavaliable"}`,
		`sum by (flavour) (spawner_consumer_capacity_full_total)`,
		`histogram_quantile(0.9, rate(spawner_consumer_spawn_latency_seconds[5m]))`,
		`sum(rate(spawner_janitor_deleted_total[5m])`,
	} {
		if res := checkPromQL(t, bad); len(res.errs) == 0 {
			t.Errorf("checkPromQL(%s) found nothing wrong", bad)
		}
	}
}

func TestAlertRules(t *testing.T) {
	groups, errs := rulefmt.ParseFile(repoPath(alertsFile), false, model.UTF8Validation, promql.NewParser(promql.Options{}), slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("%v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	docs := string(readRepoFile(t, operationsDoc))
	names := map[string]bool{}
	for _, g := range groups.Groups {
		if !strings.HasPrefix(g.Name, "runner-spawner.") {
			t.Errorf("%s: group %q: name it runner-spawner.*", alertsFile, g.Name)
		}
		for _, r := range g.Rules {
			where := fmt.Sprintf("%s: %s", alertsFile, r.Alert)
			if r.Alert == "" {
				t.Errorf("%s: group %s has a rule that is not an alert (record: %q)", alertsFile, g.Name, r.Record)
				continue
			}
			if !regexp.MustCompile(`^Spawner[A-Z][A-Za-z]+$`).MatchString(r.Alert) {
				t.Errorf("%s: alert names are Spawner + CamelCase", where)
			}
			if names[r.Alert] {
				t.Errorf("%s: defined twice", where)
			}
			names[r.Alert] = true
			if s := r.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, s) {
				t.Errorf("%s: severity %q, want info, warning or critical", where, s)
			}
			for _, a := range []string{"summary", "description"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("%s: no %s annotation", where, a)
				}
			}
			for k := range r.Annotations {
				if k != "summary" && k != "description" && k != "runbook_url" {
					t.Errorf("%s: unexpected annotation %q", where, k)
				}
			}
			res := checkPromQL(t, r.Expr)
			for _, e := range res.errs {
				t.Errorf("%s: expr: %s", where, e)
			}
			// A row of the guide's alert table: what it means, what to do.
			if !strings.Contains(docs, "\n| `"+r.Alert+"` |") {
				t.Errorf("%s: %s's alert table has no row for it", where, operationsDoc)
			}
		}
	}
	// What the operations guide promises to alert on.
	for _, want := range []string{
		"SpawnerSpawnLatencyHigh", "SpawnerFlavorAtCapacity", "SpawnerDeadLetters", "SpawnerLeakedInstances",
		"SpawnerBootTimeouts", "SpawnerGitHubBudgetLow", "SpawnerWebhookUnavailable", "SpawnerNoActiveJanitor", "SpawnerNotReady",
	} {
		if !names[want] {
			t.Errorf("%s: alert %s is missing", alertsFile, want)
		}
	}
}

// grafanaVarRE matches $name, ${name} and ${name:format} in a query.
var grafanaVarRE = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)

func TestGrafanaDashboard(t *testing.T) {
	var dash struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name       string `json:"name"`
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
		Panels []dashPanel `json:"panels"`
	}
	data := readRepoFile(t, dashboardFile)
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" {
		t.Errorf("%s: no title or uid", dashboardFile)
	}
	// Values that stand in for the variables when the query is parsed.
	vars := map[string]string{"__rate_interval": "5m", "__interval": "1m", "__range": "1h"}
	for _, v := range dash.Templating.List {
		switch v.Type {
		case "datasource":
			vars[v.Name] = "prometheus"
		case "query":
			vars[v.Name] = ".*"
			// label_values(metric, label)
			m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(v.Definition)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(metric, label)", dashboardFile, v.Name, v.Definition)
				continue
			}
			for _, e := range checkPromQL(t, fmt.Sprintf("count by (%s) (%s)", m[2], m[1])).errs {
				t.Errorf("%s: variable %s: %s", dashboardFile, v.Name, e)
			}
		default:
			t.Errorf("%s: variable %s has type %q", dashboardFile, v.Name, v.Type)
		}
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			where := fmt.Sprintf("%s: panel %q", dashboardFile, p.Title)
			if p.Title == "" {
				t.Errorf("%s: a panel has no title", dashboardFile)
			}
			if ids[p.ID] {
				t.Errorf("%s: id %d used twice", where, p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("%s: no gridPos", where)
			}
			if p.Type != "row" && len(p.Targets) == 0 && p.Type != "text" {
				t.Errorf("%s: no queries", where)
			}
			if p.Type != "row" && p.Type != "text" && p.Datasource.UID != "${datasource}" {
				t.Errorf("%s: datasource %q, want the ${datasource} variable", where, p.Datasource.UID)
			}
			for _, tg := range p.Targets {
				expr := grafanaVarRE.ReplaceAllStringFunc(tg.Expr, func(s string) string {
					name := grafanaVarRE.FindStringSubmatch(s)[1]
					v, ok := vars[name]
					if !ok {
						t.Errorf("%s: query uses $%s, which is no variable of the dashboard", where, name)
					}
					return v
				})
				res := checkPromQL(t, expr)
				for _, e := range res.errs {
					t.Errorf("%s: %s: %s", where, tg.Expr, e)
				}
				for _, m := range res.metrics {
					used[m] = true
				}
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	// What an operator needs to see (docs/operations.md, "Monitoring").
	for _, m := range []string{
		"spawner_webhook_requests_total", "spawner_webhook_routed_total", "spawner_consumer_spawn_latency_seconds",
		"spawner_consumer_create_seconds", "spawner_consumer_capacity_full_total", "spawner_consumer_dead_letters_total",
		"spawner_janitor_deleted_total", "spawner_janitor_active", "spawner_github_rate_limit_remaining",
	} {
		if !used[m] {
			t.Errorf("%s: no panel shows %s", dashboardFile, m)
		}
	}
}

type dashPanel struct {
	ID         int    `json:"id"`
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		W, H, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}
