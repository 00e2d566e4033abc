package bootstrapendpoint_test

import (
	"testing"

	"github.com/runner-spawner/runner-spawner/internal/bootstrapendpoint"
)

func TestCheckURL(t *testing.T) {
	for _, ok := range []string{
		"http://10.77.0.1:8081",
		"https://spawner.example.com",
		"https://spawner.example.com:8443/base/",
		"http://[fd42::1]:8081",
		"http://localhost",
	} {
		if err := bootstrapendpoint.CheckURL(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"",
		"http://10.0.0.1:8081'; touch /tmp/pwned; '",
		"http://host/$(id)",
		"http://host/`id`",
		"http://host/a b",
		"http://host/a\nb",
		"http://host/a\"b",
		"http://host/a\\b",
		"http://host/?q=1",
		"http://host/#x",
		"http://user:pw@host/",
		"ftp://host/",
		"http://",
		"http://host:99999",
		"http://-host",
		"//host",
	} {
		if err := bootstrapendpoint.CheckURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
