package janitor

import (
	"context"

	"github.com/runner-spawner/runner-spawner/control"
)

// responder is the active janitor as the control package sees it: it carries flush
// and reconcile commands out (control.Listener.Serve calls it, one at a time).
type responder struct{ j *Janitor }

var _ control.Responder = responder{}

func (r responder) Flush(ctx context.Context, req control.FlushRequest) control.FlushResult {
	return r.j.flush(ctx, req)
}

func (r responder) Reconcile(ctx context.Context) *control.PassSummary {
	return r.j.reconcile(ctx)
}
