package config

import (
	"fmt"
	"strings"
)

// Part is a part of the config file that only some roles use. A process checks the
// parts it uses and the common ones (nats, state_dir, flavors' names, labels and
// capacity, routing, admin, metrics, log), so a webhook receiver needs no GitHub
// credentials and no cloud settings, and an operator command needs neither.
type Part uint8

const (
	// PartWebhook is the "webhook" section: listen address, secrets, limits.
	PartWebhook Part = 1 << iota
	// PartGitHub is the "github" section: API address and credentials.
	PartGitHub
	// PartCloud is what creating runners needs: "consumer", "bootstrap", "lxd",
	// "openstack" and each flavor's runner and backend settings.
	PartCloud
	// PartJanitor is the "janitor" section.
	PartJanitor

	// partCommon marks the keys every process checks.
	partCommon
	// PartAll is every part: what `config check` and `serve` with every role check.
	PartAll = PartWebhook | PartGitHub | PartCloud | PartJanitor | partCommon
	// PartNone is what the operator commands (status, flush, runners list…) use
	// beyond the common keys: nothing.
	PartNone Part = partCommon
)

// Roles are the roles a process can run.
var Roles = []string{"webhook", "consumer", "janitor"}

// PartsFor returns the parts the given roles use.
func PartsFor(roles ...string) (Part, error) {
	parts := PartNone
	for _, r := range roles {
		switch r {
		case "webhook":
			parts |= PartWebhook
		case "consumer":
			parts |= PartGitHub | PartCloud
		case "janitor":
			// The janitor deletes instances (cloud) and checks runners (GitHub).
			parts |= PartGitHub | PartCloud | PartJanitor
		default:
			return 0, fmt.Errorf("unknown role %q (%s)", r, strings.Join(Roles, ", "))
		}
	}
	return parts, nil
}

// partOf says which part a key belongs to.
func partOf(key string) Part {
	head, rest, _ := strings.Cut(key, ".")
	if i := strings.IndexByte(head, '['); i >= 0 {
		head = head[:i]
	}
	switch head {
	case "webhook":
		return PartWebhook
	case "github":
		return PartGitHub
	case "consumer", "bootstrap", "lxd", "openstack", "repo_policy":
		return PartCloud
	case "janitor":
		return PartJanitor
	case "flavors":
		// flavors[2].runner.user_data, flavors[0].lxd.image: cloud; name, labels,
		// max_runners, backend: common.
		field, _, _ := strings.Cut(rest, ".")
		switch field {
		case "runner", "lxd", "openstack", "sim", "repo_policy":
			return PartCloud
		}
	}
	return partCommon
}
