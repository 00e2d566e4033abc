package config

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Warnings returns what is risky but not wrong in the config read from configPath,
// for the given parts: each file holding a secret (a *_file key of a password,
// token, key or credentials, and the config file itself when it holds a secret
// inline) that users other than the spawner's can read. They are warnings, not
// errors: the spawner runs, and `config check` and the log at start say what to fix.
//
// A file readable by the group the spawner runs as (its own group, as in the
// documented root:spawner 0640 install) is not reported; one readable by any other
// group or by everyone is.
func (f *File) Warnings(configPath string, parts Part) []*FieldError {
	groups, _ := os.Getgroups() // none on error: then every group read is reported
	return f.warnings(configPath, parts, append(groups, os.Getgid()))
}

func (f *File) warnings(configPath string, parts Part, ownGroups []int) []*FieldError {
	var out []*FieldError
	if len(f.inlineSecrets) > 0 {
		if who, mode, open := readableByOthers(configPath, ownGroups); open {
			out = append(out, &FieldError{Key: "(config file)", Reason: fmt.Sprintf(
				"%s holds secrets (%v) and is readable by %s (mode %04o): chmod 600 it (or 640 with the spawner's group), or move the secrets to *_file keys or SPAWNER_* variables",
				configPath, f.inlineSecrets, who, mode)})
		}
	}
	for _, s := range f.secretFiles() {
		if s.path == "" || parts&partOf(s.key) == 0 {
			continue
		}
		if who, mode, open := readableByOthers(s.path, ownGroups); open {
			out = append(out, &FieldError{Key: s.key, Reason: fmt.Sprintf(
				"%s holds a secret and is readable by %s (mode %04o): chmod 600 it (or 640 with the spawner's group)", s.path, who, mode)})
		}
	}
	return out
}

type keyedPath struct{ key, path string }

// secretFiles lists every file key whose file holds a secret. Certificates and CA
// bundles are public and not listed.
func (f *File) secretFiles() []keyedPath {
	files := []keyedPath{
		{"nats.password_file", f.NATS.PasswordFile},
		{"nats.token_file", f.NATS.TokenFile},
		{"nats.creds_file", f.NATS.CredsFile},
		{"nats.nkey_file", f.NATS.NKeyFile},
		{"nats.tls.key_file", f.NATS.TLS.KeyFile},
		{"webhook.secrets_file", f.Webhook.SecretsFile},
		{"github.token_file", f.GitHub.TokenFile},
		{"github.app.private_key_file", f.GitHub.App.PrivateKeyFile},
		{"admin.token_file", f.Admin.TokenFile},
		{"lxd.client_key_file", f.LXD.ClientKeyFile},
		{"openstack.clouds_file", f.OpenStack.CloudsFile},
		{"repo_policy.token_file", f.RepoPolicy.TokenFile},
	}
	for i, fl := range f.Flavors {
		if fl.RepoPolicy != nil {
			files = append(files, keyedPath{fmt.Sprintf("flavors[%d].repo_policy.token_file", i), fl.RepoPolicy.TokenFile})
		}
	}
	// clouds.yaml's passwords may sit in a secure.yaml beside it, merged when read.
	if cf := f.OpenStack.CloudsFile; cf != "" {
		files = append(files, keyedPath{"openstack.clouds_file", filepath.Join(filepath.Dir(cf), "secure.yaml")})
	}
	return files
}

// inlineSecretKeys names the secrets written in the config file itself (before
// *_file keys and the environment are applied).
func inlineSecretKeys(f *File) []string {
	var keys []string
	for key, set := range map[string]bool{
		"webhook.secrets":   len(f.Webhook.Secrets) > 0,
		"nats.password":     !f.NATS.Password.IsZero(),
		"nats.token":        !f.NATS.Token.IsZero(),
		"nats.url":          strings.Contains(f.NATS.URL, "@"),
		"github.token":      !f.GitHub.Token.IsZero(),
		"admin.token":       !f.Admin.Token.IsZero(),
		"repo_policy.token": !f.RepoPolicy.Token.IsZero(),
	} {
		if set {
			keys = append(keys, key)
		}
	}
	slices.Sort(keys)
	return keys
}

// readableByOthers reports whether a user other than the file's owner and the
// spawner's own groups can read path, and who. A file that cannot be read is left
// to validation, which reports it.
func readableByOthers(path string, ownGroups []int) (who string, mode fs.FileMode, open bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", 0, false
	}
	mode = fi.Mode().Perm()
	if mode&0o004 != 0 {
		return "everyone", mode, true
	}
	if mode&0o040 == 0 {
		return "", mode, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "its group", mode, true
	}
	gid := int(st.Gid)
	if slices.Contains(ownGroups, gid) {
		return "", mode, false
	}
	name := strconv.Itoa(gid)
	if g, err := user.LookupGroupId(name); err == nil {
		name = g.Name
	}
	return "group " + name, mode, true
}
