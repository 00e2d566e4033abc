package fleet

import "testing"

// TestOutcomeMovesExhaustively checks every (from, to) pair of outcomes against the
// rule in words: an outcome is set once, from none, to a real outcome.
func TestOutcomeMovesExhaustively(t *testing.T) {
	all := append([]Outcome{OutcomeNone}, Outcomes...)
	allowed := 0
	for _, from := range all {
		for _, to := range all {
			want := from == OutcomeNone && to != OutcomeNone
			if got := OutcomeMayMove(from, to); got != want {
				t.Errorf("OutcomeMayMove(%q, %q) = %v, want %v", from, to, got, want)
			}
			o := from
			if changed := o.Settle(to); changed != want || (want && o != to) || (!want && o != from) {
				t.Errorf("Settle %q → %q: changed %v, outcome %q", from, to, changed, o)
			}
			if want {
				allowed++
			}
		}
	}
	if allowed != len(Outcomes) {
		t.Errorf("%d outcome moves allowed, want %d", allowed, len(Outcomes))
	}
	if len(outcomeMoves) != len(all) {
		t.Errorf("the outcome table has %d outcomes, the list %d", len(outcomeMoves), len(all))
	}
	for _, o := range all {
		if o.IsCheckFailure() != (o == OutcomeRepoPolicyFailure || o == OutcomeExternalContributorFailure) {
			t.Errorf("%q: IsCheckFailure %v", o, o.IsCheckFailure())
		}
	}
}
