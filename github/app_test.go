package github

import (
	"errors"
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakegithub"
	"github.com/runner-spawner/runner-spawner/internal/secret"
)

func appKey(t *testing.T) fakegithub.AppKey {
	t.Helper()
	k, err := fakegithub.GenerateAppKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func asApp(key fakegithub.AppKey, installationID int64, path string) func(*Options) {
	return func(o *Options) {
		o.Token = secret.Value{}
		o.AppID, o.AppPrivateKey, o.InstallationID = 77, key.PrivateKeyPEM, installationID
		if path != "" {
			o.Path = path
		}
	}
}

func TestAppInstallationToken(t *testing.T) {
	key := appKey(t)
	tests := []struct {
		name           string
		installationID int64
		path           string
		lookupOp       string
	}{
		{"given installation", 5, "", ""},
		{"org installation looked up", 0, "octo-org", "apps/get-org-installation"},
		{"repo installation looked up", 0, "octo-org/octo-repo", "apps/get-repo-installation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, fakegithub.Options{AppID: 77, AppPublicKey: key.PublicKey, InstallationID: 5})
			c := newClient(t, srv, asApp(key, tt.installationID, tt.path))
			for range 3 {
				if _, err := c.ListRunners(t.Context(), ""); err != nil {
					t.Fatal(err)
				}
			}
			if n := srv.CallCount("apps/create-installation-access-token"); n != 1 {
				t.Errorf("minted %d installation tokens for 3 calls, want 1 (cached)", n)
			}
			if tt.lookupOp != "" && srv.CallCount(tt.lookupOp) != 1 {
				t.Errorf("%s called %d times, want 1", tt.lookupOp, srv.CallCount(tt.lookupOp))
			}
			for _, call := range srv.Calls() {
				if call.Op == "actions/list-self-hosted-runners-for-org" || call.Op == "actions/list-self-hosted-runners-for-repo" {
					if call.Credential != "installation:5" {
						t.Errorf("%s authenticated as %q, want the installation", call.Op, call.Credential)
					}
				}
			}
		})
	}
}

// Installation tokens are refreshed before they expire (ghinstallation refreshes a
// minute early, so a 61s token is refreshed after about a second).
func TestAppTokenRefresh(t *testing.T) {
	key := appKey(t)
	srv := newFake(t, fakegithub.Options{AppID: 77, AppPublicKey: key.PublicKey, TokenTTL: 61 * time.Second})
	c := newClient(t, srv, asApp(key, 1, ""))
	eventually(t, 10*time.Second, "a second installation token", func() bool {
		if _, err := c.GetRunner(t.Context(), 1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("GetRunner = %v", err)
		}
		return srv.CallCount("apps/create-installation-access-token") == 2
	})
	for _, call := range srv.Calls() {
		if call.Status == 401 {
			t.Errorf("%s answered 401: a token was used after it expired", call.Op)
		}
	}
}

func TestAppAuthErrors(t *testing.T) {
	key, other := appKey(t), appKey(t)
	tests := []struct {
		name  string
		fake  fakegithub.Options
		fault *fakegithub.Fault
		mod   func(*Options)
	}{
		{"key not the app's", fakegithub.Options{AppID: 77, AppPublicKey: other.PublicKey}, nil, asApp(key, 1, "")},
		{"lookup with the wrong key", fakegithub.Options{AppID: 77, AppPublicKey: other.PublicKey}, nil, asApp(key, 0, "")},
		{"token exchange refused", fakegithub.Options{AppID: 77, AppPublicKey: key.PublicKey},
			&fakegithub.Fault{Op: "apps/create-installation-access-token", Status: 401}, asApp(key, 1, "")},
		{"installation not found", fakegithub.Options{AppID: 77, AppPublicKey: key.PublicKey, InstallationID: 3}, nil, asApp(key, 4, "")},
		{"expired token answer", fakegithub.Options{AppID: 77, AppPublicKey: key.PublicKey},
			&fakegithub.Fault{Op: "actions/list-self-hosted-runners-for-org", Status: 401, Message: "Bad credentials"}, asApp(key, 1, "")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFake(t, tt.fake)
			if tt.fault != nil {
				srv.SetFault(*tt.fault)
			}
			c := newClient(t, srv, tt.mod)
			if _, err := c.ListRunners(t.Context(), ""); !errors.Is(err, ErrUnauthorized) {
				t.Errorf("err = %v, want ErrUnauthorized", err)
			}
		})
	}
}
