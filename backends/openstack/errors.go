package openstack

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/gophercloud/gophercloud/v2"

	"github.com/runner-spawner/runner-spawner/backends"
)

// APIError is an answer of an OpenStack API other than success, carrying the
// service's own message and the request id an operator quotes to the cloud's admins.
// Errors that mean quota or a bad spec wrap it together with backends.ErrQuota or
// backends.ErrBadSpec; any other APIError is transient from the spawner's view.
type APIError struct {
	Status    int
	Message   string
	RequestID string
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	if e.RequestID != "" {
		return fmt.Sprintf("%d %s (request %s)", e.Status, msg, e.RequestID)
	}
	return fmt.Sprintf("%d %s", e.Status, msg)
}

// describe turns gophercloud's status errors, whose text holds the whole URL and
// body, into an *APIError with just the service's message. Other errors pass as they are.
func describe(err error) error {
	if err == nil {
		return nil
	}
	var code gophercloud.ErrUnexpectedResponseCode
	var codePtr *gophercloud.ErrUnexpectedResponseCode
	switch {
	case errors.As(err, &code):
	case errors.As(err, &codePtr):
		code = *codePtr
	default:
		return err
	}
	return &APIError{
		Status:    code.Actual,
		Message:   serviceMessage(code.Body),
		RequestID: code.ResponseHeader.Get("X-Openstack-Request-Id"),
	}
}

// serviceMessage digs the human message out of an OpenStack error body: Nova wraps it
// as {"forbidden": {"message": …}}, Neutron as {"NeutronError": {"message": …}},
// Keystone as {"error": {"message": …}}, and Glance often answers plain text.
func serviceMessage(body []byte) string {
	var doc map[string]json.RawMessage
	if json.Unmarshal(body, &doc) == nil {
		for _, raw := range doc {
			var inner struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(raw, &inner) == nil && inner.Message != "" {
				return strings.TrimSpace(inner.Message)
			}
		}
		var flat struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(body, &flat) == nil && flat.Message != "" {
			return strings.TrimSpace(flat.Message)
		}
	}
	s := strings.Join(strings.Fields(string(body)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// statusOf returns the HTTP status of an API error, or 0.
func statusOf(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// isQuota tells Nova's over-quota answers: 403 "Quota exceeded for instances: …",
// 403 "Maximum number of ports exceeded" (Neutron's quota, relayed by Nova), and the
// 413 older clouds send.
func isQuota(err error) bool {
	var ae *APIError
	if !errors.As(err, &ae) {
		return false
	}
	msg := strings.ToLower(ae.Message)
	switch ae.Status {
	case http.StatusRequestEntityTooLarge:
		return true
	case http.StatusForbidden:
		return strings.Contains(msg, "quota") || strings.Contains(msg, "exceeded")
	}
	return false
}

// classifyCreate maps the answer to a server create onto the backends' typed errors:
// quota → ErrQuota; 400 (unknown image, flavor, network, key pair, zone; user-data
// too long) and 409 (an ambiguous network, a port in use) → ErrBadSpec, permanent;
// everything else (5xx, 429, unreachable, a policy refusal) stays transient.
func classifyCreate(err error) error {
	err = describe(err)
	switch {
	case isQuota(err):
		return fmt.Errorf("%w: %w", backends.ErrQuota, err)
	case statusOf(err) == http.StatusBadRequest, statusOf(err) == http.StatusConflict:
		return fmt.Errorf("%w: %w", backends.ErrBadSpec, err)
	}
	return err
}

// maybeMade reports whether a failed create request may still have made a server: the
// request went out but no clear answer came back (timeout, reset, 5xx from a proxy).
func maybeMade(err error) bool {
	if st := statusOf(err); st != 0 {
		return st >= 500
	}
	return true
}

// isTransport tells network-level failures (refused, reset, DNS, timeout) apart from
// answers the cloud gave.
func isTransport(err error) bool {
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne)
}

// noValidHost tells a scheduling failure (the cloud is full for this flavor), which
// the consumer treats like quota, from other reasons a server went to ERROR.
func noValidHost(fault string) bool {
	return strings.Contains(strings.ToLower(fault), "no valid host")
}
