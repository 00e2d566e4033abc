package webhook

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

// receive is the innermost handler: the receiver's own steps, once the middleware has
// checked the headers, read the body and checked its signature. It answers a ping,
// passes over other events, parses the payload, routes the job and publishes it.
func (h *Handler) receive(w http.ResponseWriter, r *http.Request) {
	d := deliveryOf(r)
	if d.event != "workflow_job" {
		answerOtherEvent(w, d)
		return
	}
	p, err := parseDelivery(r.Header.Get("Content-Type"), d.body)
	if err != nil {
		d.logger.Warn("delivery rejected: bad payload", logkey.Error, err)
		answer(w, d, http.StatusBadRequest, reply{Result: outcomeBadRequest, Reason: err.Error()})
		return
	}
	job := p.WorkflowJob
	d.action = *p.Action
	d.logger = d.logger.With(logkey.JobID, *job.ID, logkey.Action, untrusted.Log(d.action))
	if !knownAction(d.action) {
		answer(w, d, http.StatusAccepted, reply{Result: outcomeIgnored, Reason: "action not handled", JobID: *job.ID})
		return
	}
	flavor, norm, reason := h.opts.Router.Route(*job.Labels)
	if flavor == "" {
		h.answerNotForwarded(w, d, job, reason)
		return
	}
	d.logger = d.logger.With(logkey.Flavor, flavor)
	h.publish(r.Context(), w, d, buildEvent(p, d.id, d.received, flavor, norm))
}

// answerOtherEvent answers an event other than workflow_job: a ping (GitHub's test
// delivery when a hook is created) with pong, anything else as ignored.
func answerOtherEvent(w http.ResponseWriter, d *delivery) {
	if d.event == "ping" {
		answer(w, d, http.StatusOK, reply{Result: outcomePong})
		return
	}
	answer(w, d, http.StatusAccepted, reply{Result: outcomeIgnored, Reason: "event not handled"})
}

// answerNotForwarded answers a job no flavor takes: it is meant for other runners
// (GitHub-hosted, another fleet), so the answer is 2xx and GitHub does not list the
// delivery as failed; the metric counts why.
func (h *Handler) answerNotForwarded(w http.ResponseWriter, d *delivery, job *workflowJob, reason string) {
	h.metrics.notForwarded.WithLabelValues(reason).Inc()
	d.logger.Debug("job not forwarded", "reason", reason, "labels", untrusted.Log(strings.Join(*job.Labels, ",")))
	answer(w, d, http.StatusOK, reply{Result: outcomeNotForwarded, Reason: reason, JobID: *job.ID})
}

// publish stores the job event and answers: 200 only once JetStream has stored it
// (or already held it: a duplicate), 413 for an event that can never be stored, and
// 503 with Retry-After when it was not stored.
func (h *Handler) publish(ctx context.Context, w http.ResponseWriter, d *delivery, ev *queue.JobEvent) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.PublishTimeout)
	defer cancel()
	pubStart := time.Now()
	res, err := h.opts.Publisher.PublishJobEvent(ctx, ev)
	h.metrics.publishSeconds.Observe(time.Since(pubStart).Seconds())
	switch {
	case errors.Is(err, queue.ErrEventTooLarge):
		// It will never fit: no retry, and GitHub is told it was our refusal, not an
		// outage worth redelivering.
		d.logger.Warn("delivery rejected: job event too large to store", logkey.Error, err)
		answer(w, d, http.StatusRequestEntityTooLarge, reply{Result: outcomeTooLarge, Reason: "job event too large to store"})
		return
	case err != nil:
		d.logger.Error("job event not stored; GitHub will list the delivery as failed", logkey.Error, err)
		w.Header().Set("Retry-After", "5")
		answer(w, d, http.StatusServiceUnavailable, reply{Result: outcomeUnavailable, Reason: "queue unavailable"})
		return
	}
	h.metrics.routed.WithLabelValues(ev.Flavor, ev.Action).Inc()
	outcome := outcomeStored
	if res.Duplicate {
		outcome = outcomeDuplicate
	}
	d.logger.Info("job event stored", "duplicate", res.Duplicate, "seq", res.Sequence)
	answer(w, d, http.StatusOK, reply{Result: outcome, Flavor: ev.Flavor, JobID: ev.JobID})
}

func buildEvent(p *workflowJobPayload, deliveryID string, received time.Time, flavor string, norm []string) *queue.JobEvent {
	job := p.WorkflowJob
	ev := &queue.JobEvent{
		DeliveryID:   deliveryID,
		ReceivedAt:   received.UTC(),
		Source:       queue.SourceWebhook,
		Action:       *p.Action,
		JobID:        *job.ID,
		RunID:        *job.RunID,
		RunAttempt:   max(job.RunAttempt, 1),
		JobName:      job.Name,
		WorkflowName: job.WorkflowName,
		Repo:         p.Repository.FullName,
		Labels:       *job.Labels,
		NormLabels:   norm,
		Flavor:       flavor,
		JobURL:       job.URL,
		HTMLURL:      job.HTMLURL,
		Status:       job.Status,
		CreatedAt:    job.CreatedAt,
		StartedAt:    job.StartedAt,
		CompletedAt:  job.CompletedAt,
	}
	if p.Organization != nil {
		ev.Org = p.Organization.Login
	}
	if p.Installation != nil {
		ev.InstallationID = p.Installation.ID
	}
	if job.Conclusion != nil {
		ev.Conclusion = *job.Conclusion
	}
	if job.RunnerID != nil {
		ev.RunnerID = *job.RunnerID
	}
	if job.RunnerName != nil {
		ev.RunnerName = *job.RunnerName
	}
	return ev
}

func knownAction(a string) bool {
	for _, k := range queue.Actions {
		if a == k {
			return true
		}
	}
	return false
}
