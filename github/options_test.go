package github

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

func TestOptionsValidate(t *testing.T) {
	key := appKey(t)
	tok := secret.New("pat")
	tests := []struct {
		name string
		opts Options
		want []string // options named in the problems
	}{
		{"token, org", Options{Path: "octo-org", Token: tok}, nil},
		{"app, repo, lookup", Options{Path: "o/r", AppID: 1, AppPrivateKey: key.PrivateKeyPEM}, nil},
		{"ghes", Options{BaseURL: "https://ghe.example.com/api/v3/", Path: "o", Token: tok}, nil},
		{"nothing", Options{}, []string{"Path", "Token"}},
		{"bad path", Options{Path: "a/b/c", Token: tok}, []string{"Path"}},
		{"empty repo", Options{Path: "a/", Token: tok}, []string{"Path"}},
		{"group with repo", Options{Path: "o/r", RunnerGroup: "big", Token: tok}, []string{"RunnerGroup"}},
		{"both auths", Options{Path: "o", Token: tok, AppID: 1, AppPrivateKey: key.PrivateKeyPEM}, []string{"Token"}},
		{"app without key", Options{Path: "o", AppID: 1}, []string{"AppPrivateKey"}},
		{"key not PEM", Options{Path: "o", AppID: 1, AppPrivateKey: []byte("nope")}, []string{"AppPrivateKey"}},
		{"key without app id", Options{Path: "o", AppPrivateKey: key.PrivateKeyPEM}, []string{"AppID"}},
		{"bad url", Options{BaseURL: "api.github.com", Path: "o", Token: tok}, []string{"BaseURL"}},
		{"negatives", Options{Path: "o", Token: tok, Timeout: -1, MaxInFlight: -1, RatePerHour: -1, ReserveThreshold: -1}, []string{"Timeout", "MaxInFlight", "RatePerHour", "ReserveThreshold"}},
		{"secondary pacing off", Options{Path: "o", Token: tok, SecondaryPointsPerMinute: SecondaryPacingOff}, nil},
		{"secondary pacing below off", Options{Path: "o", Token: tok, SecondaryPointsPerMinute: -2}, []string{"SecondaryPointsPerMinute"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			var got []string
			for _, e := range unjoin(err) {
				var oe *OptionError
				if !errors.As(e, &oe) {
					t.Fatalf("problem %v is not an *OptionError", e)
				}
				got = append(got, oe.Option)
				if !strings.HasPrefix(e.Error(), oe.Option+": ") {
					t.Errorf("message %q does not name the option", e)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("problems with %v, want %v (%v)", got, tt.want, err)
			}
		})
	}
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestNew(t *testing.T) {
	if _, err := New(Options{Path: "a/b/c"}); err == nil {
		t.Error("New accepted bad options")
	}
	reg := prometheus.NewRegistry()
	opts := Options{Path: "o", Token: secret.New("x"), Registerer: reg}
	if _, err := New(opts); err != nil {
		t.Fatal(err)
	}
	if _, err := New(opts); err == nil {
		t.Error("a second client registered on the same registry")
	}
	opts.Registerer = prometheus.NewRegistry()
	if _, err := New(opts); err != nil {
		t.Errorf("a client on its own registry: %v", err)
	}
}
