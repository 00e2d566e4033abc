package webhook

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testRouter(match string) *Router {
	return NewRouter([]FlavorLabels{
		{"small", []string{"small", "x64", "jammy"}},
		{"large", []string{"large", "x64", "jammy"}},
		{"noble-large", []string{"large", "x64", "noble"}},
		{"arm-large", []string{"large", "arm", "jammy"}},
	}, "small", []string{"self-hosted", "linux"}, match)
}

func TestRouteSubset(t *testing.T) {
	r := testRouter(MatchSubset)
	tests := []struct {
		labels     []string
		wantFlavor string
		wantReason string
		wantNorm   []string
	}{
		{[]string{}, "small", "", []string{}},
		{[]string{"x64"}, "small", "", []string{"x64"}},
		{[]string{"jammy"}, "small", "", []string{"jammy"}},
		{[]string{"large"}, "large", "", []string{"large"}},
		{[]string{"large", "jammy"}, "large", "", []string{"jammy", "large"}},
		{[]string{"noble"}, "noble-large", "", []string{"noble"}},
		{[]string{"arm"}, "arm-large", "", []string{"arm"}},
		{[]string{"Self-Hosted", "Linux", "LARGE"}, "large", "", []string{"large"}},
		{[]string{"self-hosted", "linux"}, "small", "", []string{}},
		{[]string{"gpu"}, "", ReasonNoFlavor, []string{"gpu"}},
		{[]string{"large", "noble", "arm"}, "", ReasonNoFlavor, []string{"arm", "large", "noble"}},
		{[]string{" large ", "LARGE"}, "large", "", []string{"large"}},
		{[]string{"ubuntu-latest"}, "", ReasonNoFlavor, []string{"ubuntu-latest"}},
	}
	for _, tt := range tests {
		flavor, norm, reason := r.Route(tt.labels)
		if flavor != tt.wantFlavor || reason != tt.wantReason {
			t.Errorf("Route(%q) = %q, reason %q; want %q, reason %q", tt.labels, flavor, reason, tt.wantFlavor, tt.wantReason)
		}
		if diff := cmp.Diff(tt.wantNorm, norm); diff != "" {
			t.Errorf("Route(%q) normalised labels (-want +got):\n%s", tt.labels, diff)
		}
	}
}

func TestRouteExact(t *testing.T) {
	r := testRouter(MatchExact)
	tests := []struct {
		labels []string
		want   string
	}{
		{[]string{"large"}, ""},
		{[]string{"large", "x64", "jammy"}, "large"},
		{[]string{"self-hosted", "JAMMY", "x64", "large"}, "large"},
		{[]string{"large", "x64", "noble"}, "noble-large"},
		{[]string{}, "small"},
	}
	for _, tt := range tests {
		if got, _, _ := r.Route(tt.labels); got != tt.want {
			t.Errorf("exact Route(%q) = %q, want %q", tt.labels, got, tt.want)
		}
	}
}

func TestRouteNoDefault(t *testing.T) {
	r := NewRouter([]FlavorLabels{{"a", []string{"a"}}}, "", nil, MatchSubset)
	if f, _, reason := r.Route([]string{}); f != "" || reason != ReasonNoDefault {
		t.Errorf("no labels, no default: %q %q", f, reason)
	}
}

func TestNormalizeDropsDuplicatesAndIgnored(t *testing.T) {
	r := testRouter(MatchSubset)
	got := r.Normalize([]string{"b", " A ", "a", "self-hosted", "", "B", "c", "a"})
	if diff := cmp.Diff([]string{"a", "b", "c"}, got); diff != "" {
		t.Errorf("Normalize (-want +got):\n%s", diff)
	}
}

// BenchmarkRoute routes MaxLabels distinct labels (the most a delivery may carry) and,
// to show how the cost grows, 20,000, which the receiver refuses before routing.
//
//	go test -run '^$' -bench 'Route' -benchmem ./webhook/
func BenchmarkRoute(b *testing.B) {
	r := testRouter(MatchSubset)
	for _, n := range []int{MaxLabels, 20000} {
		labels := make([]string, n)
		for i := range labels {
			labels[i] = fmt.Sprintf("Label-%d", i)
		}
		b.Run(fmt.Sprintf("labels=%d", n), func(b *testing.B) {
			for b.Loop() {
				r.Route(labels)
			}
		})
	}
}
