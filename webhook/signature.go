package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// Signature failures, by reason (also the metric label).
var (
	ErrSignatureMissing   = errors.New("signature missing")
	ErrSignatureMalformed = errors.New("signature malformed")
	ErrSignatureMismatch  = errors.New("signature mismatch")
)

const signaturePrefix = "sha256="

// VerifySignature checks GitHub's X-Hub-Signature-256 header ("sha256=" and the hex
// HMAC-SHA256 of the raw body) against every secret, so a secret can be rotated
// without losing deliveries. Comparisons take constant time, and every secret is
// tried even after a match so timing does not reveal which one matched.
func VerifySignature(body []byte, header string, secrets []secret.Value) error {
	if header == "" {
		return ErrSignatureMissing
	}
	hexSig, ok := strings.CutPrefix(header, signaturePrefix)
	if !ok {
		return ErrSignatureMalformed
	}
	if len(hexSig) != 2*sha256.Size {
		return ErrSignatureMalformed
	}
	got := make([]byte, sha256.Size)
	if _, err := hex.Decode(got, []byte(hexSig)); err != nil {
		return ErrSignatureMalformed
	}
	match := 0
	for _, s := range secrets {
		mac := hmac.New(sha256.New, []byte(s.Reveal()))
		mac.Write(body)
		match |= boolInt(hmac.Equal(got, mac.Sum(nil)))
	}
	if match == 0 {
		return ErrSignatureMismatch
	}
	return nil
}

// Sign returns the X-Hub-Signature-256 value for body, as GitHub computes it. The fake
// GitHub and tests use it.
func Sign(body []byte, key string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write(body)
	return signaturePrefix + hex.EncodeToString(mac.Sum(nil))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
