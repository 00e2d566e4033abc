package bootstrap

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
)

// tokenBytes is the entropy of every token: 256 bits, well over the 128 required.
const tokenBytes = 32

// NewToken returns a fresh random token (base64url, safe in shell single quotes,
// HTTP headers and URLs) and the hash to store in place of it.
func NewToken() (token, hash string) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		// crypto/rand never fails on Linux; if it did, no token is safe to hand out.
		panic("bootstrap: crypto/rand: " + err.Error())
	}
	token = base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is what the runner record keeps: the token itself never reaches the KV
// store, so reading the store does not let anyone impersonate a runner.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// tokenMatches compares a presented token with a stored hash in constant time.
func tokenMatches(presented, storedHash string) bool {
	if presented == "" || storedHash == "" {
		return false
	}
	h := HashToken(presented)
	return subtle.ConstantTimeCompare([]byte(h), []byte(storedHash)) == 1
}
