package runnername_test

import (
	"strings"
	"testing"

	"github.com/runner-spawner/runner-spawner/internal/runnername"
)

func TestValid(t *testing.T) {
	for _, ok := range []string{"spawner-small-289782451-0", "ab", "a" + strings.Repeat("b", 62)} {
		if !runnername.Valid(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a", "Spawner-1", "1spawner", "spawner-", "spawner_1", "spawner.1", "spawner 1", "spawner'1", "a" + strings.Repeat("b", 63), "spawner/1"} {
		if runnername.Valid(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
