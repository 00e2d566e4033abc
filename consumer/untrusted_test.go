package consumer

import (
	"testing"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/queue"
)

// What decides a check with GitHub is what the event is, not how long it waited here.
func TestUntrusted(t *testing.T) {
	c := &Consumer{opts: Options{VerifyAge: 2 * time.Minute}}
	now := time.Now()
	ago := func(d time.Duration) *time.Time { t := now.Add(-d); return &t }
	webhook := func(received time.Time, created *time.Time) *queue.JobEvent {
		return &queue.JobEvent{Source: queue.SourceWebhook, ReceivedAt: received, CreatedAt: created}
	}
	fresh := &fleet.JobRecord{}
	for _, tc := range []struct {
		name string
		ev   *queue.JobEvent
		job  *fleet.JobRecord
		d    delivery
		want string
	}{
		{"fresh webhook", webhook(now, ago(time.Second)), fresh, delivery{n: 1}, ""},
		{"waited in our queue past verify_age", webhook(now.Add(-time.Hour), ago(time.Hour+time.Second)), fresh, delivery{n: 1}, ""},
		{"our own retry, many times over", webhook(now.Add(-time.Hour), ago(time.Hour+time.Second)), fresh, delivery{n: 7, ownRetry: true}, ""},
		{"redelivered after a crash", webhook(now, ago(time.Second)), fresh, delivery{n: 2}, "redelivered"},
		{"polled", &queue.JobEvent{Source: queue.SourcePoller, ReceivedAt: now, CreatedAt: ago(2 * time.Minute)}, fresh, delivery{n: 1}, "polled"},
		{"old on arrival (GitHub redelivered or delayed it)", webhook(now, ago(3*time.Minute)), fresh, delivery{n: 1}, "old on arrival"},
		{"crash, but GitHub said queued a moment ago", webhook(now, ago(time.Second)), &fleet.JobRecord{VerifiedAt: now.Add(-time.Minute)}, delivery{n: 2}, ""},
		{"crash, checked long ago", webhook(now, ago(time.Second)), &fleet.JobRecord{VerifiedAt: now.Add(-time.Hour)}, delivery{n: 2}, "redelivered"},
	} {
		if got := c.untrusted(tc.ev, tc.job, tc.d, now); got != tc.want {
			t.Errorf("%s: untrusted = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// A nak of delivery n makes delivery n+1 of the same message our own retry, once;
// any other delivery is not.
func TestOwnNaks(t *testing.T) {
	var o ownNaks
	now := time.Now()
	if o.take(1, 2) {
		t.Error("a redelivery nothing naked taken for our retry")
	}
	o.add(1, 1, now)
	o.add(2, 3, now)
	if !o.take(1, 2) {
		t.Error("the delivery after our nak not taken for our retry")
	}
	if o.take(1, 3) {
		t.Error("a delivery after the retry (a crash while retrying) taken for our retry")
	}
	if o.take(2, 5) {
		t.Error("a delivery that skips one taken for our retry")
	}
	for i := range uint64(2000) {
		o.add(100+i, 1, now.Add(-2*ownNaksKept))
	}
	o.add(5000, 1, now)
	if n := len(o.m); n >= 2000 {
		t.Errorf("%d entries kept, want the stale ones forgotten", n)
	}
}
