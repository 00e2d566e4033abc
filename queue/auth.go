package queue

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// EmbeddedAuth is the one credential the embedded server accepts: a user and
// password, a token, or an nkey. It is the same credential the spawner's own clients
// present (Options.User/Password, Token, NKeyFile), so one config sets both sides.
// The checks are nats-server's own; a client without the credential is refused at
// connect, before it can read or write anything.
type EmbeddedAuth struct {
	User     string
	Password secret.Value
	Token    secret.Value
	// NKeyFile is a user nkey seed file, the one clients sign with. The server needs
	// only the public key, which it derives from the seed at start.
	NKeyFile string
}

// IsZero reports whether no credential is set (the server accepts anyone).
func (a EmbeddedAuth) IsZero() bool {
	return a.User == "" && a.Password.IsZero() && a.Token.IsZero() && a.NKeyFile == ""
}

// apply sets the server options that make nats-server require the credential.
func (a EmbeddedAuth) apply(so *server.Options) error {
	set := 0
	for _, on := range []bool{a.User != "" || !a.Password.IsZero(), !a.Token.IsZero(), a.NKeyFile != ""} {
		if on {
			set++
		}
	}
	switch {
	case set > 1:
		return errors.New("embedded nats: set only one of user/password, token, nkey")
	case a.User != "" || !a.Password.IsZero():
		if a.User == "" || a.Password.IsZero() {
			return errors.New("embedded nats: user and password go together")
		}
		so.Username, so.Password = a.User, a.Password.Reveal()
	case !a.Token.IsZero():
		so.Authorization = a.Token.Reveal()
	case a.NKeyFile != "":
		pub, err := NKeyPublicKey(a.NKeyFile)
		if err != nil {
			return fmt.Errorf("embedded nats: %w", err)
		}
		so.Nkeys = []*server.NkeyUser{{Nkey: pub}}
	}
	return nil
}

// NKeyPublicKey reads a user nkey seed file (a bare seed or a decorated one, as
// nats.go reads it) and returns the user's public key ("U…").
func NKeyPublicKey(seedFile string) (string, error) {
	data, err := os.ReadFile(seedFile)
	if err != nil {
		return "", fmt.Errorf("nkey seed: %w", err)
	}
	defer clear(data)
	kp, err := nkeys.ParseDecoratedUserNKey(data)
	if err != nil {
		return "", fmt.Errorf("nkey seed %s: %w", seedFile, err)
	}
	defer kp.Wipe()
	pub, err := kp.PublicKey()
	if err != nil {
		return "", fmt.Errorf("nkey seed %s: %w", seedFile, err)
	}
	return pub, nil
}
