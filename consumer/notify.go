package consumer

import (
	"context"
	"sync"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// notifier turns capacity-record updates into a broadcast: every waiter holds the
// current channel, which is closed (and replaced) on each update.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func newNotifier() *notifier { return &notifier{ch: make(chan struct{})} }

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.ch
}

func (n *notifier) broadcast() {
	n.mu.Lock()
	defer n.mu.Unlock()
	close(n.ch)
	n.ch = make(chan struct{})
}

// watchCapacity keeps a flavor's notifier fed until ctx ends, re-watching after errors.
func (c *Consumer) watchCapacity(ctx context.Context, flavor string, n *notifier) {
	for ctx.Err() == nil {
		err := c.fleet.WatchCapacity(ctx, flavor, n.broadcast)
		if ctx.Err() != nil {
			return
		}
		c.logger.Debug("capacity watch ended; restarting", logkey.Flavor, flavor, logkey.Error, err)
		// A missed update only delays a waiter to its timeout; wake them to be safe.
		n.broadcast()
		sleep(ctx, time.Second)
	}
}
