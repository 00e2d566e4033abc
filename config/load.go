package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/runner-spawner/runner-spawner/internal/secret"
)

// Load reads the config file at path, applies defaults and secrets from getenv (nil:
// no environment) and validates all of it. On a validation problem it returns the
// decoded File together with the errors (every FieldError joined), so callers can
// still print what was read; on a file or syntax problem the File is nil.
func Load(path string, getenv func(string) string) (*File, error) {
	return LoadFor(path, getenv, PartAll)
}

// LoadFor is Load for a process that uses only the given parts of the file: a problem
// in another part (a missing GitHub key file for a webhook receiver, say) is not
// reported. Unknown keys and mistyped values are reported wherever they are.
func LoadFor(path string, getenv func(string) string, parts Part) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return ParseFor(data, getenv, parts)
}

// Parse is Load on bytes already read.
func Parse(data []byte, getenv func(string) string) (*File, error) {
	return ParseFor(data, getenv, PartAll)
}

// ParseFor is LoadFor on bytes already read.
func ParseFor(data []byte, getenv func(string) string, parts Part) (*File, error) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	f := Defaults()
	var p problems
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			return nil, fmt.Errorf("parse config: %w", err)
		}
		lines := map[int]string{}
		checkKeys(&root, reflect.TypeOf(f).Elem(), "", lines, &p)
		if err := root.Decode(f); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, fmt.Errorf("parse config: %w", err)
			}
			for _, msg := range te.Errors {
				p.add(keyForMessage(msg, lines), "%s", stripLine(msg))
			}
		}
	}
	for i := range f.Flavors {
		applyFlavorDefaults(&f.Flavors[i])
	}
	// Secrets and values are checked only in the parts this process uses.
	var used problems
	f.inlineSecrets = inlineSecretKeys(f)
	resolveSecrets(f, getenv, &used)
	// Validate even when keys were unknown or mistyped, so one run of
	// `config check` lists every problem.
	if err := f.Validate(); err != nil {
		used.errs = append(used.errs, err.(interface{ Unwrap() []error }).Unwrap()...)
	}
	for _, err := range used.errs {
		if parts&partOf(fieldKey(err)) != 0 {
			p.errs = append(p.errs, err)
		}
	}
	return f, p.err()
}

// checkKeys walks the YAML tree next to the Go type and reports every key the type
// does not have, with its path, so a typo ("max_runner") is an error rather than a
// silently ignored setting. It records which key each line holds so that decoding
// errors can name their key too.
func checkKeys(n *yaml.Node, t reflect.Type, path string, lines map[int]string, p *problems) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.DocumentNode {
		for _, c := range n.Content {
			checkKeys(c, t, path, lines, p)
		}
		return
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		checkKeys(n.Alias, t, path, lines, p)
		return
	}
	if isLeaf(t) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			if n.Tag != "!!null" {
				p.add(orRoot(path), "must be a mapping (line %d)", n.Line)
			}
			return
		}
		fields := yamlFields(t)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := joinKey(path, k.Value)
			lines[k.Line] = key
			ft, ok := fields[k.Value]
			if !ok {
				p.add(key, "unknown key (line %d)%s", k.Line, suggest(k.Value, fields))
				continue
			}
			checkKeys(v, ft, key, lines, p)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return // decoding reports the type error
		}
		for i, c := range n.Content {
			key := fmt.Sprintf("%s[%d]", path, i)
			lines[c.Line] = key
			checkKeys(c, t.Elem(), key, lines, p)
		}
	}
}

var (
	unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	durationType    = reflect.TypeOf(time.Duration(0))
	secretType      = reflect.TypeOf(secret.Value{})
)

func isLeaf(t reflect.Type) bool {
	if t == durationType || t == secretType || t.Kind() == reflect.Map {
		return true
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return true
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Slice:
		return false
	}
	return true
}

func yamlFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = f.Type
	}
	return out
}

func suggest(key string, fields map[string]reflect.Type) string {
	best, bestD := "", 3
	for name := range fields {
		if d := editDistance(key, name); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func joinKey(path, k string) string {
	if path == "" {
		return k
	}
	return path + "." + k
}

func orRoot(path string) string {
	if path == "" {
		return "(top level)"
	}
	return path
}

var lineRE = regexp.MustCompile(`^line (\d+): `)

func keyForMessage(msg string, lines map[int]string) string {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return "(file)"
	}
	n, _ := strconv.Atoi(m[1])
	if k, ok := lines[n]; ok {
		return k
	}
	return "line " + m[1]
}

func stripLine(msg string) string {
	if m := lineRE.FindStringSubmatch(msg); m != nil {
		return strings.TrimPrefix(msg, m[0]) + " (line " + m[1] + ")"
	}
	return msg
}

// resolveSecrets applies the *_file keys and the SPAWNER_* environment variables.
// Precedence: environment, then *_file, then the inline value; an inline value and a
// *_file key for the same secret is an error (which one is meant?).
func resolveSecrets(f *File, getenv func(string) string, p *problems) {
	// webhook.secrets: a list; the file holds one secret per line.
	if f.Webhook.SecretsFile != "" {
		if len(f.Webhook.Secrets) > 0 {
			p.add("webhook.secrets_file", "set together with webhook.secrets: use one of them")
		} else if data, err := os.ReadFile(f.Webhook.SecretsFile); err != nil {
			p.add("webhook.secrets_file", "cannot read: %v", err)
		} else {
			f.Webhook.Secrets = splitSecrets(string(data), "\n")
		}
	}
	if v := getenv("SPAWNER_WEBHOOK_SECRETS"); v != "" {
		f.Webhook.Secrets = splitSecrets(v, ",")
	}
	readSecretFile(&f.NATS.Password, f.NATS.PasswordFile, "nats.password", p)
	readSecretFile(&f.NATS.Token, f.NATS.TokenFile, "nats.token", p)
	envSecret(&f.NATS.Password, "SPAWNER_NATS_PASSWORD", getenv)
	envSecret(&f.NATS.Token, "SPAWNER_NATS_TOKEN", getenv)
	if f.NATS.User == "" && !f.NATS.Password.IsZero() {
		// A password alone means the user every example names: one environment file
		// (SPAWNER_NATS_PASSWORD) then serves serve's embedded server and the split
		// roles of an external cluster alike.
		f.NATS.User = DefaultNATSUser
	}
	readSecretFile(&f.GitHub.Token, f.GitHub.TokenFile, "github.token", p)
	envSecret(&f.GitHub.Token, "SPAWNER_GITHUB_TOKEN", getenv)
	readSecretFile(&f.Admin.Token, f.Admin.TokenFile, "admin.token", p)
	envSecret(&f.Admin.Token, "SPAWNER_ADMIN_TOKEN", getenv)
	resolveRepoPolicySecrets(f, getenv, p)
}

func splitSecrets(s, sep string) []secret.Value {
	var out []secret.Value
	for _, part := range strings.Split(s, sep) {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, secret.New(part))
		}
	}
	return out
}

func readSecretFile(dst *secret.Value, file, key string, p *problems) {
	if file == "" {
		return
	}
	if !dst.IsZero() {
		p.add(key+"_file", "set together with %s: use one of them", key)
		return
	}
	data, err := os.ReadFile(file)
	if err != nil {
		p.add(key+"_file", "cannot read: %v", err)
		return
	}
	*dst = secret.New(strings.TrimSpace(string(data)))
}

func envSecret(dst *secret.Value, name string, getenv func(string) string) {
	if v := getenv(name); v != "" {
		*dst = secret.New(v)
	}
}
