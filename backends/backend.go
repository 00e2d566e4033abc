// Package backends defines the contract between the consumer and the infrastructure
// that hosts runner instances (LXD, OpenStack, the simulator), and its typed errors.
//
// Implementations live in sub-packages (backends/lxd, backends/openstack, backends/sim)
// and are wired by cmd/spawner. This package must not import the queue or NATS: a
// backend is tested without a message broker.
package backends

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/runnername"
)

// Backend creates, deletes and lists the instances of one flavor on one piece of
// infrastructure. One Backend value serves one flavor: its image, size and network
// come from the implementation's own options, so the spec carries only what changes
// per runner.
//
// Every instance a Backend makes is tagged with the deployment id, the flavor, the
// runner name and the job id, and List and Delete only ever see instances carrying
// this deployment's and this flavor's tags: nothing that isn't ours is listed or
// deleted. All methods honour ctx cancellation and never block past its deadline.
type Backend interface {
	// Create makes and starts one instance named spec.Name. It is idempotent on the
	// name: if an instance of ours with that name exists, Create returns it and makes
	// nothing new. Create does not wait for the runner inside to come up (the
	// bootstrap callbacks and the janitor watch that). When Create fails after making
	// something, it deletes what it made before returning the error; when that delete
	// fails, the error says so. A caller holding capacity for the instance must not
	// take a failed Create to mean that nothing is left: it frees the capacity only
	// once a Delete of the name returned nil.
	//
	// Errors: ErrQuota (the infrastructure is full: retry later), ErrBadSpec
	// (permanent: unknown image, bad profile, invalid name), ErrOutcomeUnknown (the
	// instance may still appear), anything else is transient (unreachable, 5xx,
	// timeout).
	Create(ctx context.Context, spec InstanceSpec) (Instance, error)

	// Delete stops and removes the instance of ours named name, and returns nil only
	// once it no longer exists: an infrastructure that deletes in the background is
	// waited for, within ctx. So nil means the capacity the instance held is free. An
	// instance that is already gone is success (nil). An instance that exists but is
	// not ours (other deployment, no tags) is never deleted: ErrNotFound.
	Delete(ctx context.Context, name string) error

	// List returns every instance of ours for this flavor, in no particular order.
	List(ctx context.Context) ([]Instance, error)
}

// FinishedDeleter is a Backend whose instances can go by themselves once their
// runner is done: LXD's ephemeral instances, which the runner's power-off removes.
// For such an instance, stopping and deleting it through the API is work the
// infrastructure does twice, and on a busy host the creates of a burst wait behind
// it (BENCHMARKS.md, "Bursts on real LXD").
type FinishedDeleter interface {
	// DeleteFinished is Delete for the instance of a runner that has finished its
	// job and is powering off: the backend may wait, within a bound of its own, for
	// the instance to go by itself, and deletes it as Delete does when it does not.
	// Its contract is Delete's: nil only once the instance no longer exists.
	DeleteFinished(ctx context.Context, name string) error
}

// DeleteFinished removes the instance of a finished runner: through b's
// FinishedDeleter when it has one, else with Delete.
func DeleteFinished(ctx context.Context, b Backend, name string) error {
	if fd, ok := b.(FinishedDeleter); ok {
		return fd.DeleteFinished(ctx, name)
	}
	return b.Delete(ctx, name)
}

// InstanceSpec is what the consumer asks a backend for: one instance for one runner.
type InstanceSpec struct {
	// Name is the instance name, equal to the runner name; unique in the deployment.
	Name string
	// Flavor names the flavor this backend serves; a mismatch is ErrBadSpec.
	Flavor string
	// JobID is the GitHub job the runner was spawned for (a tag, for operators).
	JobID int64
	// UserData is cloud-init user-data: a "#cloud-config" document, or a script
	// starting with "#!" (which cloud-init and minimal images run as is). It carries
	// the bootstrap URL and the one-time token, never the runner's JIT config.
	UserData string
	// Script is the bootstrap as a plain POSIX shell script, for images without
	// cloud-init: the backend runs it inside the started instance (LXD exec API)
	// with Env as its environment.
	Script string
	// Env holds the bootstrap environment (SPAWNER_BOOTSTRAP_URL,
	// SPAWNER_BOOTSTRAP_TOKEN, SPAWNER_RUNNER_NAME, and SPAWNER_BOOTSTRAP_CA, the
	// certificate to pin, with an https endpoint). The simulated backend reads it
	// directly; the exec mode passes it to Script.
	Env map[string]string
}

// State is a coarse instance state, common to all backends.
type State string

const (
	StatePending State = "pending" // being created or starting
	StateRunning State = "running"
	StateStopped State = "stopped" // powered off: the runner inside has finished
	StateError   State = "error"   // the infrastructure gave up on it (see Fault)
	StateUnknown State = "unknown"
)

// Instance is one instance of ours as the backend sees it.
type Instance struct {
	Name      string
	ID        string // the backend's own id (LXD: the name; OpenStack: the server UUID)
	Backend   string // "lxd", "openstack", "sim"
	Flavor    string
	JobID     int64
	State     State
	Fault     string // why the instance is in StateError, when the backend says
	CreatedAt time.Time
	// Protected instances carry the protected tag (set by an operator for debugging):
	// the janitor never deletes them.
	Protected bool
}

// Typed errors. Implementations wrap them (with %w) so that callers decide with
// errors.Is and never by reading messages.
var (
	// ErrQuota means the infrastructure has no room now (quota, storage full, no
	// valid host). The consumer retries later.
	ErrQuota = errors.New("quota exceeded")
	// ErrNotFound means there is no instance of ours by that name.
	ErrNotFound = errors.New("instance not found")
	// ErrBadSpec is permanent: the spec or the flavor's settings cannot work
	// (unknown image, flavor or network; bad profile; invalid name).
	ErrBadSpec = errors.New("bad instance spec")
	// ErrOutcomeUnknown means Create failed without knowing whether the
	// infrastructure will still make the instance: the request went out, its answer
	// was lost (a timeout, a reset connection, a 5xx from a proxy), and nothing of
	// it was found to delete. An instance may still appear under that name for up
	// to LateInstanceWindow, so until then neither a Delete that found nothing nor
	// a List without it proves the name free. It wraps the underlying error, which
	// is transient.
	ErrOutcomeUnknown = errors.New("create outcome unknown: the instance may still appear")
)

// LateInstanceWindow is how long after a Create failed with ErrOutcomeUnknown an
// instance may still appear under its name. It covers an API that goes on with a
// request its client gave up on: nova-api registers the server when it finishes
// the request (its WSGI server cuts a request off after a few minutes at most), and
// LXD finishes a create operation nobody waits for any more. Capacity held for such
// a name is freed only once the window has passed and no instance is listed.
const LateInstanceWindow = 10 * time.Minute

// Tag keys, in the spelling each backend adapts to its own metadata (LXD config keys
// "user.spawner.<key>", OpenStack server metadata "spawner_<key>" and tags).
const (
	TagDeployment = "deployment"
	TagFlavor     = "flavor"
	TagRunner     = "runner"
	TagJob        = "job"
	TagProtected  = "protected"
)

// Tags returns the tags every instance made for spec carries.
func Tags(deploymentID string, spec InstanceSpec) map[string]string {
	return map[string]string{
		TagDeployment: deploymentID,
		TagFlavor:     spec.Flavor,
		TagRunner:     spec.Name,
		TagJob:        strconv.FormatInt(spec.JobID, 10),
	}
}

// ValidateSpec checks what every backend needs from a spec, so implementations
// reject a bad one with ErrBadSpec before touching the infrastructure.
func ValidateSpec(flavor string, spec InstanceSpec) error {
	if !runnername.Valid(spec.Name) {
		return fmt.Errorf("%w: name %q must be %s", ErrBadSpec, spec.Name, runnername.Rule)
	}
	if spec.Flavor != flavor {
		return fmt.Errorf("%w: spec is for flavor %q, this backend serves %q", ErrBadSpec, spec.Flavor, flavor)
	}
	return nil
}
