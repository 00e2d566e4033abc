// Package bootstrapendpoint holds the rules for what every instance is told about the
// spawner's bootstrap endpoint, which is written into its bootstrap script and
// user-data: the URL, and the certificates it pins when the URL is https. config check
// refuses what breaks them, and bootstrap.Render never writes it.
//
// The URL rule is an allow-list, not an escaper: a URL that passes holds no quote,
// space, newline, $, backquote, backslash, ;, &, |, <, >, (, ), *, ?, #, {, } or %, so
// it is inert in a shell script however it is quoted, in YAML and in a curl argument.
//
// It must stay a leaf: config (a leaf) and bootstrap both import it.
package bootstrapendpoint

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
)

// urlRE: http(s)://host[:port][/path], host a DNS name, an IPv4 address or a bracketed
// IPv6 address, the path of unreserved characters and slashes. No user info, query or
// fragment: the endpoint's paths are appended to it.
var urlRE = regexp.MustCompile(`^https?://([A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$`)

// CheckURL returns nil when raw is a bootstrap URL instances may be given. Its error
// reads after the key or value it is about ("bootstrap.url: must be ...").
func CheckURL(raw string) error {
	if !urlRE.MatchString(raw) {
		return errors.New("must be http(s)://host[:port][/path] with only letters, digits and . - _ ~ / in host and path (no quotes, spaces, user info, query or fragment)")
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("is not a URL")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("has no valid port (got %q)", p)
		}
	}
	return nil
}

// HTTPS reports whether raw is an https URL.
func HTTPS(raw string) bool {
	u, err := url.Parse(raw)
	return err == nil && u.Scheme == "https"
}

// PinPEM checks that data holds one or more PEM certificates and nothing else that
// matters, and returns them re-encoded: only CERTIFICATE blocks, no text between them,
// so what a script writes into a file is PEM alone. Any other block (a private key in
// a combined certificate file) is refused: it would be handed to every instance.
func PinPEM(data []byte) ([]byte, error) {
	var out bytes.Buffer
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("holds a %q block; only certificates may be handed to instances", block.Type)
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("holds a certificate that does not parse: %w", err)
		}
		if err := pem.Encode(&out, &pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}); err != nil {
			return nil, fmt.Errorf("encode certificate: %w", err)
		}
	}
	if out.Len() == 0 {
		return nil, errors.New("holds no PEM certificate")
	}
	return out.Bytes(), nil
}
