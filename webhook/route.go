package webhook

import (
	"slices"
	"strings"
)

// Match modes.
const (
	MatchSubset = "subset"
	MatchExact  = "exact"
)

// Reasons a job is not forwarded (the metric label and the reply body).
const (
	ReasonNoFlavor  = "no_matching_flavor"
	ReasonNoDefault = "no_labels_no_default_flavor"
)

// FlavorLabels is one routing-table row.
type FlavorLabels struct {
	Name   string
	Labels []string
}

// Router picks a flavor for a job's labels, with the semantics of the system we
// replace: labels are lower-cased and the ignored ones dropped; a job with no labels
// left goes to the default flavor; otherwise to the first flavor (in config order)
// whose labels contain all of the job's (subset) or equal them (exact).
type Router struct {
	flavors []routeRow
	def     string
	ignored map[string]bool
	exact   bool
}

type routeRow struct {
	name   string
	labels map[string]bool
}

// NewRouter builds a router. match is MatchSubset or MatchExact.
func NewRouter(flavors []FlavorLabels, defaultFlavor string, ignored []string, match string) *Router {
	r := &Router{def: defaultFlavor, ignored: map[string]bool{}, exact: match == MatchExact}
	for _, l := range ignored {
		r.ignored[strings.ToLower(strings.TrimSpace(l))] = true
	}
	for _, f := range flavors {
		row := routeRow{name: f.Name, labels: map[string]bool{}}
		for _, l := range f.Labels {
			row.labels[strings.ToLower(strings.TrimSpace(l))] = true
		}
		r.flavors = append(r.flavors, row)
	}
	return r
}

// Normalize lower-cases labels, drops ignored and duplicate ones, and sorts them.
// Duplicates go after the sort, next to each other, so the cost is that of the sort
// (n log n), not a scan of the kept labels per label, which 20,000 labels made seconds.
func (r *Router) Normalize(labels []string) []string {
	out := make([]string, 0, len(labels))
	for _, l := range labels {
		l = strings.ToLower(strings.TrimSpace(l))
		if l == "" || r.ignored[l] {
			continue
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Route returns the flavor for labels, the normalised labels, and when no flavor
// takes the job, the reason.
func (r *Router) Route(labels []string) (flavor string, norm []string, reason string) {
	norm = r.Normalize(labels)
	if len(norm) == 0 {
		if r.def == "" {
			return "", norm, ReasonNoDefault
		}
		return r.def, norm, ""
	}
	for _, f := range r.flavors {
		if r.exact && len(f.labels) != len(norm) {
			continue
		}
		all := true
		for _, l := range norm {
			if !f.labels[l] {
				all = false
				break
			}
		}
		if all {
			return f.name, norm, ""
		}
	}
	return "", norm, ReasonNoFlavor
}
