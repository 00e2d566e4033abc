package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamHealth describes the job stream.
type StreamHealth struct {
	Name          string    `json:"name"`
	Messages      uint64    `json:"messages"`
	Bytes         uint64    `json:"bytes"`
	MaxBytes      int64     `json:"max_bytes"`
	MaxMsgs       int64     `json:"max_msgs"`
	Replicas      int       `json:"replicas"`
	Leader        string    `json:"leader,omitempty"`
	ReplicaStatus []Replica `json:"replica_status,omitempty"`
	// FullPercent is how full the stream is against its tightest limit.
	FullPercent float64   `json:"full_percent"`
	FirstTime   time.Time `json:"oldest_event,omitzero"`
}

// Replica is one follower of a replicated stream.
type Replica struct {
	Name    string `json:"name"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline"`
}

// Backlog is the number of stored, not yet handled events of one flavor, by action.
type Backlog struct {
	Pending  uint64            `json:"pending"`
	ByAction map[string]uint64 `json:"by_action"`
}

// JobBacklog reads, in one call, how many events each flavor has stored and not yet
// handled, and the stream's health.
func (c *Conn) JobBacklog(ctx context.Context) (map[string]*Backlog, StreamHealth, error) {
	st, err := c.js.Stream(ctx, StreamJobs)
	if err != nil {
		return nil, StreamHealth{}, fmt.Errorf("stream %s: %w", StreamJobs, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(jobsPrefix+".>"))
	if err != nil {
		return nil, StreamHealth{}, fmt.Errorf("stream %s info: %w", StreamJobs, err)
	}
	out := map[string]*Backlog{}
	for subj, n := range info.State.Subjects {
		flavor, action, ok := ParseJobSubject(subj)
		if !ok {
			continue
		}
		b := out[flavor]
		if b == nil {
			b = &Backlog{ByAction: map[string]uint64{}}
			out[flavor] = b
		}
		b.Pending += n
		b.ByAction[action] += n
	}
	h := StreamHealth{
		Name: info.Config.Name, Messages: info.State.Msgs, Bytes: info.State.Bytes,
		MaxBytes: info.Config.MaxBytes, MaxMsgs: info.Config.MaxMsgs, Replicas: info.Config.Replicas,
		FirstTime: info.State.FirstTime,
	}
	if info.State.Msgs == 0 {
		h.FirstTime = time.Time{}
	}
	if info.Config.MaxBytes > 0 {
		h.FullPercent = 100 * float64(info.State.Bytes) / float64(info.Config.MaxBytes)
	}
	if info.Config.MaxMsgs > 0 {
		h.FullPercent = max(h.FullPercent, 100*float64(info.State.Msgs)/float64(info.Config.MaxMsgs))
	}
	if ci := info.Cluster; ci != nil {
		h.Leader = ci.Leader
		for _, r := range ci.Replicas {
			h.ReplicaStatus = append(h.ReplicaStatus, Replica{Name: r.Name, Current: r.Current, Offline: r.Offline})
		}
	}
	return out, h, nil
}
