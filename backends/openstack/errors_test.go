package openstack

import (
	"testing"

	"github.com/runner-spawner/runner-spawner/backends"
)

func TestServiceMessage(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"nova", `{"forbidden": {"code": 403, "message": "Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"}}`,
			"Quota exceeded for instances: Requested 1, but already used 1 of 1 instances"},
		{"neutron", `{"NeutronError": {"type": "NetworkNotFound", "message": "Network x could not be found.", "detail": ""}}`,
			"Network x could not be found."},
		{"keystone", `{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}`,
			"The request you have made requires authentication."},
		{"glance html", "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found<br />\n </body>\n</html>",
			"<html> <head> <title>404 Not Found</title> </head> <body> <h1>404 Not Found</h1> No image found<br /> </body> </html>"},
		{"flat", `{"message": "Bad gateway"}`, "Bad gateway"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := serviceMessage([]byte(tt.body)); got != tt.want {
				t.Errorf("serviceMessage = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestState(t *testing.T) {
	tests := map[string]backends.State{
		"BUILD": backends.StatePending, "ACTIVE": backends.StateRunning, "REBOOT": backends.StateRunning,
		"SHUTOFF": backends.StateStopped, "SUSPENDED": backends.StateStopped, "ERROR": backends.StateError,
		"DELETED": backends.StateUnknown, "UNKNOWN": backends.StateUnknown, "active": backends.StateRunning,
	}
	for status, want := range tests {
		if got := state(status); got != want {
			t.Errorf("state(%s) = %s, want %s", status, got, want)
		}
	}
}
