package fakegithub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/runner-spawner/runner-spawner/internal/logkey"
)

// Signature returns the X-Hub-Signature-256 value GitHub sends for body: "sha256=" and
// the hex HMAC-SHA256 of the exact body bytes under secret.
func Signature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func signatureSHA1(secret string, body []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// sendJobEventLocked records a workflow_job delivery for j in its current state and
// queues it. The payload is a snapshot: later changes to the job do not alter it.
func (s *Server) sendJobEventLocked(action string, j *job) {
	payload := obj{
		"action":       action,
		"workflow_job": s.jobJSONLocked(j),
		"repository":   s.repoJSONLocked(j.repo),
		"sender":       s.senderJSONLocked(),
	}
	if j.repo.owner == s.opts.Owner {
		payload["organization"] = s.orgJSONLocked()
	}
	var installationID int64
	if s.opts.AppID != 0 {
		installationID = s.opts.InstallationID
		payload["installation"] = obj{"id": installationID, "node_id": nodeID("023:IntegrationInstallation", installationID)}
	}
	body, err := json.Marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("fakegithub: marshal payload: %v", err)) // maps of plain values always marshal
	}
	d := &delivery{
		id: s.newIDLocked(), guid: newGUID(), event: "workflow_job", action: action,
		jobID: j.id, repoID: j.repo.id, installationID: installationID, payload: body, createdAt: time.Now(),
	}
	s.deliveries = append(s.deliveries, d)
	s.whq.push(d)
}

// deliveryQueue is an unbounded FIFO: producers never block while holding Server.mu.
type deliveryQueue struct {
	mu     sync.Mutex
	items  []*delivery
	ready  chan struct{}
	closed bool
}

func newDeliveryQueue() *deliveryQueue { return &deliveryQueue{ready: make(chan struct{}, 1)} }

func (q *deliveryQueue) push(d *delivery) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.items = append(q.items, d)
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *deliveryQueue) take() []*delivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}

func (q *deliveryQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
}

// dispatchDeliveries applies the webhook faults in queue order (so a seed gives the same
// run every time) and hands attempts to the worker pool.
func (s *Server) dispatchDeliveries() {
	work := make(chan *delivery)
	var workers sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	client := &http.Client{Timeout: s.opts.Webhooks.Timeout}
	for range s.opts.Webhooks.Workers {
		workers.Go(func() {
			for d := range work {
				s.attempt(ctx, client, d)
			}
		})
	}
	defer func() {
		cancel()
		close(work)
		workers.Wait()
		client.CloseIdleConnections()
	}()

	var held *delivery
	var holdC <-chan time.Time
	send := func(d *delivery) bool {
		select {
		case work <- d:
			return true
		case <-s.done:
			return false
		}
	}
	for {
		select {
		case <-s.done:
			return
		case <-holdC:
			holdC = nil
			if held != nil && !send(held) {
				return
			}
			held = nil
			continue
		case <-s.whq.ready:
		}
		for _, d := range s.whq.take() {
			extra, hold, drop, holdFor := s.drawFaults(d)
			if drop {
				continue
			}
			if hold && held == nil {
				held, holdC = d, time.After(holdFor)
				continue
			}
			if !send(d) {
				return
			}
			for _, e := range extra {
				if !send(e) {
					return
				}
			}
			if held != nil {
				if !send(held) {
					return
				}
				held, holdC = nil, nil
			}
		}
	}
}

// drawFaults decides one delivery's fate. It always draws the same number of values so
// the sequence of decisions depends only on the seed and the order of deliveries.
func (s *Server) drawFaults(d *delivery) (extra []*delivery, hold, drop bool, holdFor time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.whFaults
	pDrop, pDup, pRedeliver, pReorder := s.whRand.Float64(), s.whRand.Float64(), s.whRand.Float64(), s.whRand.Float64()
	if f.DropNext > 0 || pDrop < f.DropRate {
		if f.DropNext > 0 {
			f.DropNext--
		}
		d.done, d.dropped = true, true
		d.deliveredAt = time.Now()
		d.url = s.webhookURL
		d.status = "Dropped by fault injection: failed to connect to host"
		d.err = "dropped"
		s.log.Info("fake github dropped delivery", logkey.DeliveryID, d.guid, logkey.Action, d.action)
		return nil, false, true, 0
	}
	if pDup < f.DuplicateRate {
		extra = append(extra, s.copyDeliveryLocked(d, false))
	}
	if pRedeliver < f.RedeliverRate {
		extra = append(extra, s.copyDeliveryLocked(d, true))
	}
	return extra, pReorder < f.ReorderRate, false, f.ReorderHold
}

// attempt sends one delivery and records its HTTP result, as GitHub shows it in the
// deliveries API.
func (s *Server) attempt(ctx context.Context, client *http.Client, d *delivery) {
	s.mu.Lock()
	target, secret := s.webhookURL, s.webhookSecret
	s.mu.Unlock()

	headers := map[string]string{
		"Accept":                                 "*/*",
		"Content-Type":                           "application/json",
		"User-Agent":                             "GitHub-Hookshot/fake",
		"X-GitHub-Event":                         d.event,
		"X-GitHub-Delivery":                      d.guid,
		"X-GitHub-Hook-ID":                       strconv.FormatInt(s.opts.HookID, 10),
		"X-GitHub-Hook-Installation-Target-Type": "repository",
		"X-GitHub-Hook-Installation-Target-ID":   strconv.FormatInt(d.repoID, 10),
	}
	if secret != "" {
		headers["X-Hub-Signature-256"] = Signature(secret, d.payload)
		headers["X-Hub-Signature"] = signatureSHA1(secret, d.payload)
	}
	start := time.Now()
	var (
		code        int
		status, msg string
		respHeaders = map[string]string{}
		respBody    string
	)
	if target == "" {
		status, msg = "No webhook target configured", "no target"
	} else {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(d.payload))
		if err == nil {
			for k, v := range headers {
				req.Header.Set(k, v)
			}
			var resp *http.Response
			resp, err = client.Do(req)
			if err == nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				resp.Body.Close()
				code, respBody = resp.StatusCode, string(b)
				for k := range resp.Header {
					respHeaders[k] = resp.Header.Get(k)
				}
				status = "OK"
				if code < 200 || code > 299 {
					status = fmt.Sprintf("Invalid HTTP Response: %d", code)
				}
			}
		}
		if err != nil {
			msg = err.Error()
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				status = "timed out"
			default:
				status = "failed to connect to host"
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.done = true
	d.url = target
	d.deliveredAt = start
	d.duration = time.Since(start)
	d.statusCode, d.status, d.err = code, status, msg
	d.reqHeaders, d.respHeaders, d.respBody = headers, respHeaders, respBody
	s.log.Debug("fake github delivered webhook", logkey.DeliveryID, d.guid, logkey.Action, d.action, "status_code", code, "status", status)
}
