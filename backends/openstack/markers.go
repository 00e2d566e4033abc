package openstack

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"

	"github.com/runner-spawner/runner-spawner/backends"
)

// BackendName is the value of backends.Instance.Backend for servers of this package.
const BackendName = "openstack"

// metaPrefix spells a backends tag key as server metadata ("spawner_deployment") and,
// with "=value", as a server tag ("spawner_deployment=prod"). Nova tags hold at most
// 60 characters and no "," or "/": the runner's name (up to 63) is the server name and
// sits in metadata only.
const metaPrefix = "spawner_"

func metaKey(tag string) string { return metaPrefix + tag }

func tagOf(key, value string) string { return metaKey(key) + "=" + value }

// markers returns the metadata and tags a server made for spec carries. Metadata is
// set on every cloud; tags where the microversion allows them.
func markers(deploymentID string, spec backends.InstanceSpec, extra map[string]string) (meta map[string]string, tags []string) {
	meta = maps.Clone(extra)
	if meta == nil {
		meta = map[string]string{}
	}
	for k, v := range backends.Tags(deploymentID, spec) {
		meta[metaKey(k)] = v
	}
	tags = []string{
		tagOf(backends.TagDeployment, deploymentID),
		tagOf(backends.TagFlavor, spec.Flavor),
		tagOf(backends.TagJob, strconv.FormatInt(spec.JobID, 10)),
	}
	return meta, tags
}

// listTags is the Nova "tags" filter (all must match) for one flavor's servers.
func listTags(deploymentID, flavor string) string {
	return tagOf(backends.TagDeployment, deploymentID) + "," + tagOf(backends.TagFlavor, flavor)
}

// ours reports whether s was made by this deployment for this flavor. Metadata is
// checked on every cloud; where tags are in use they must agree too, so a server
// whose tags an operator stripped is left alone rather than guessed at.
func ours(s *servers.Server, deploymentID, flavor string, withTags bool) bool {
	if s.Metadata[metaKey(backends.TagDeployment)] != deploymentID || s.Metadata[metaKey(backends.TagFlavor)] != flavor {
		return false
	}
	if s.Metadata[metaKey(backends.TagRunner)] != s.Name {
		return false
	}
	if !withTags {
		return true
	}
	if s.Tags == nil {
		return false
	}
	return slices.Contains(*s.Tags, tagOf(backends.TagDeployment, deploymentID)) &&
		slices.Contains(*s.Tags, tagOf(backends.TagFlavor, flavor))
}

// protected reports the operator's do-not-reap marker: the tag "spawner_protected" (or
// "spawner_protected=true") or the metadata spawner_protected=true.
func protected(s *servers.Server) bool {
	if v, ok := s.Metadata[metaKey(backends.TagProtected)]; ok && v != "false" && v != "0" {
		return true
	}
	if s.Tags != nil {
		for _, t := range *s.Tags {
			if t == metaKey(backends.TagProtected) || t == tagOf(backends.TagProtected, "true") {
				return true
			}
		}
	}
	return false
}

// state maps Nova's server status onto the backends' coarse states.
func state(status string) backends.State {
	switch strings.ToUpper(status) {
	case "BUILD", "REBUILD":
		return backends.StatePending
	case "ACTIVE", "REBOOT", "HARD_REBOOT", "PASSWORD", "MIGRATING", "RESIZE", "VERIFY_RESIZE", "REVERT_RESIZE":
		return backends.StateRunning
	case "SHUTOFF", "STOPPED", "PAUSED", "SUSPENDED", "SHELVED", "SHELVED_OFFLOADED":
		return backends.StateStopped
	case "ERROR":
		return backends.StateError
	}
	return backends.StateUnknown
}

// instance describes a server of ours.
func instance(s *servers.Server) backends.Instance {
	job, _ := strconv.ParseInt(s.Metadata[metaKey(backends.TagJob)], 10, 64)
	in := backends.Instance{
		Name:      s.Name,
		ID:        s.ID,
		Backend:   BackendName,
		Flavor:    s.Metadata[metaKey(backends.TagFlavor)],
		JobID:     job,
		State:     state(s.Status),
		CreatedAt: s.Created,
		Protected: protected(s),
	}
	if in.State == backends.StateError {
		in.Fault = strings.TrimSpace(s.Fault.Message)
		if in.Fault == "" {
			in.Fault = "server is in ERROR and Nova gives no fault"
		}
	}
	return in
}
