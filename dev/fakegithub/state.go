package fakegithub

import (
	"encoding/json"
	"net/http"
	"slices"
	"time"

	"github.com/runner-spawner/runner-spawner/dev/fakerunner"
)

// Job and run statuses and conclusions, as GitHub spells them.
const (
	statusQueued     = "queued"
	statusInProgress = "in_progress"
	statusCompleted  = "completed"

	conclusionSuccess   = "success"
	conclusionFailure   = "failure"
	conclusionCancelled = "cancelled"
)

type repo struct {
	id          int64
	owner, name string
}

func (r *repo) full() string { return r.owner + "/" + r.name }

type runnerGroup struct {
	id        int64
	name      string
	isDefault bool
}

type runner struct {
	id         int64
	name       string
	labels     []string
	groupID    int64
	repo       *repo // nil: org-level runner
	credential string
	createdAt  time.Time

	online    bool
	connected bool
	polling   int // long polls in flight: the runner is alive while one is open
	lastSeen  time.Time
	idleSince time.Time
	state     string // fakerunner.State*; "" until the runner program connects
	jobID     int64
	result    string        // with StateFinish
	notify    chan struct{} // closed and replaced on every state change
}

func (r *runner) busy() bool {
	switch r.state {
	case fakerunner.StateAssigned, fakerunner.StateRunning, fakerunner.StateFinish, fakerunner.StateCancelled:
		return true
	}
	return false
}

func (r *runner) changed() {
	close(r.notify)
	r.notify = make(chan struct{})
}

type job struct {
	id          int64
	runID       int64
	attempt     int
	repo        *repo
	name        string
	workflow    string
	labels      []string
	headSHA     string
	duration    time.Duration
	hasDur      bool
	fail        bool
	event       string          // the event that started the workflow
	payload     json.RawMessage // its payload, as the runner writes it to GITHUB_EVENT_PATH
	status      string
	conclusion  string
	runnerID    int64
	runnerName  string
	groupID     int64
	groupName   string
	cancelling  bool
	createdAt   time.Time
	startedAt   time.Time
	completedAt time.Time
}

type run struct {
	id        int64
	repo      *repo
	attempt   int
	number    int
	workflow  string
	headSHA   string
	createdAt time.Time
	updatedAt time.Time
	jobs      []*job
}

// state derives a run's status and conclusion from its jobs, as GitHub does.
func (rn *run) state() (status, conclusion string) {
	queued, running, failed, cancelled := 0, 0, 0, 0
	for _, j := range rn.jobs {
		switch j.status {
		case statusQueued:
			queued++
		case statusInProgress:
			running++
		}
		switch j.conclusion {
		case conclusionFailure:
			failed++
		case conclusionCancelled:
			cancelled++
		}
	}
	switch {
	case running > 0 || (queued > 0 && queued < len(rn.jobs)):
		return statusInProgress, ""
	case queued > 0:
		return statusQueued, ""
	case failed > 0:
		return statusCompleted, conclusionFailure
	case cancelled > 0:
		return statusCompleted, conclusionCancelled
	}
	return statusCompleted, conclusionSuccess
}

type installationToken struct {
	expires time.Time
}

type delivery struct {
	id             int64
	guid           string
	event, action  string
	redelivery     bool
	jobID          int64
	repoID         int64
	installationID int64
	payload        []byte
	createdAt      time.Time

	// Filled when the attempt ends.
	done        bool
	dropped     bool
	url         string
	deliveredAt time.Time
	duration    time.Duration
	statusCode  int
	status      string
	err         string
	reqHeaders  map[string]string
	respHeaders map[string]string
	respBody    string
}

func rawJSON(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	return json.RawMessage(b)
}

// JobSpec describes a workflow job for CreateJob.
type JobSpec struct {
	// Repo is "owner/name" or "name" (under Options.Owner); default the first repo.
	// An unknown repo is created.
	Repo string `json:"repo"`
	// Labels are the job's runs-on labels (default ["self-hosted"]).
	Labels []string `json:"labels"`
	// Name of the job (default "build").
	Name string `json:"name"`
	// RunAttempt (default 1).
	RunAttempt int `json:"run_attempt"`
	// RunID adds the job to an existing run of the repo; 0 (or unknown) starts a new run.
	RunID int64 `json:"run_id"`
	// Duration overrides Options.JobDuration for this job when non-zero (negative: 0).
	Duration time.Duration `json:"duration"`
	// Fail makes the job's steps fail: the runner reports a non-zero exit, conclusion failure.
	Fail bool `json:"fail"`
	// Event is the event that started the workflow (GITHUB_EVENT_NAME in the job;
	// default push) and EventPayload its payload, which the runner writes to the file
	// GITHUB_EVENT_PATH names (default: none).
	Event        string          `json:"event,omitempty"`
	EventPayload json.RawMessage `json:"event_payload,omitempty"`
}

// Job is a snapshot of a workflow job.
type Job struct {
	ID          int64     `json:"id"`
	RunID       int64     `json:"run_id"`
	RunAttempt  int       `json:"run_attempt"`
	Repo        string    `json:"repo"`
	Name        string    `json:"name"`
	Labels      []string  `json:"labels"`
	Status      string    `json:"status"`     // queued | in_progress | completed
	Conclusion  string    `json:"conclusion"` // "" until completed; success | failure | cancelled
	RunnerID    int64     `json:"runner_id"`
	RunnerName  string    `json:"runner_name"`
	CreatedAt   time.Time `json:"created_at"`
	StartedAt   time.Time `json:"started_at"`
	CompletedAt time.Time `json:"completed_at"`
}

func (j *job) snapshot() Job {
	return Job{
		ID: j.id, RunID: j.runID, RunAttempt: j.attempt, Repo: j.repo.full(), Name: j.name,
		Labels: slices.Clone(j.labels), Status: j.status, Conclusion: j.conclusion,
		RunnerID: j.runnerID, RunnerName: j.runnerName,
		CreatedAt: j.createdAt, StartedAt: j.startedAt, CompletedAt: j.completedAt,
	}
}

// Runner is a snapshot of a runner registration.
type Runner struct {
	ID        int64    `json:"id"`
	Name      string   `json:"name"`
	Labels    []string `json:"labels"`
	Repo      string   `json:"repo"` // "" for an org-level runner
	GroupID   int64    `json:"group_id"`
	Status    string   `json:"status"` // online | offline
	Busy      bool     `json:"busy"`
	Connected bool     `json:"connected"` // a runner program is attached
	State     string   `json:"state"`     // fakerunner.State*, "" before the program connected
	JobID     int64    `json:"job_id"`
}

func (r *runner) snapshot() Runner {
	out := Runner{ID: r.id, Name: r.name, Labels: slices.Clone(r.labels), GroupID: r.groupID,
		Status: "offline", Busy: r.busy(), Connected: r.connected, State: r.state, JobID: r.jobID}
	if r.online {
		out.Status = "online"
	}
	if r.repo != nil {
		out.Repo = r.repo.full()
	}
	return out
}

// Delivery is a snapshot of one webhook delivery attempt.
type Delivery struct {
	ID          int64           `json:"id"`
	GUID        string          `json:"guid"` // X-GitHub-Delivery; the same on a redelivery
	Event       string          `json:"event"`
	Action      string          `json:"action"`
	Redelivery  bool            `json:"redelivery"`
	JobID       int64           `json:"job_id"`
	Done        bool            `json:"done"`    // the attempt ended (sent, failed or dropped)
	Dropped     bool            `json:"dropped"` // failed by fault injection, never sent
	URL         string          `json:"url"`
	DeliveredAt time.Time       `json:"delivered_at"`
	Duration    time.Duration   `json:"duration"`
	StatusCode  int             `json:"status_code"` // 0 when no HTTP answer came
	Status      string          `json:"status"`      // "OK" or GitHub's failure text
	Error       string          `json:"error"`
	Payload     json.RawMessage `json:"payload"` // the exact body sent

	Headers http.Header `json:"headers"`
}

// OK reports whether the delivery got a 2xx answer.
func (d Delivery) OK() bool { return d.StatusCode >= 200 && d.StatusCode < 300 }

func (d *delivery) snapshot() Delivery {
	h := http.Header{}
	for k, v := range d.reqHeaders {
		h.Set(k, v)
	}
	return Delivery{
		ID: d.id, GUID: d.guid, Event: d.event, Action: d.action, Redelivery: d.redelivery, JobID: d.jobID,
		Done: d.done, Dropped: d.dropped, URL: d.url, DeliveredAt: d.deliveredAt, Duration: d.duration,
		StatusCode: d.statusCode, Status: d.status, Error: d.err, Payload: json.RawMessage(slices.Clone(d.payload)), Headers: h,
	}
}

// Call is one recorded REST API call (runner protocol and control calls are not recorded).
type Call struct {
	Time       time.Time     `json:"time"`
	Method     string        `json:"method"`
	Path       string        `json:"path"`
	Op         string        `json:"op"` // operation id, e.g. "actions/generate-runner-jitconfig-for-org"
	Status     int           `json:"status"`
	Credential string        `json:"credential"` // "pat", "installation:ID", "app:ID", "anonymous" or "" (rejected)
	Duration   time.Duration `json:"duration"`
}

// Calls returns every recorded REST call in order (the most recent 100,000).
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// CallCount returns how many calls operation op received ("" counts all), including
// rejected ones.
func (s *Server) CallCount(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if op == "" {
		n := 0
		for _, c := range s.callCounts {
			n += c
		}
		return n
	}
	return s.callCounts[op]
}

// CallCounts returns calls per operation.
func (s *Server) CallCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.callCounts))
	for k, v := range s.callCounts {
		out[k] = v
	}
	return out
}

// ResetCalls forgets recorded calls and counts.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
	s.callCounts = map[string]int{}
}

const maxCalls = 100_000

func (s *Server) recordCall(c Call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.callCounts[c.Op]++
	if len(s.calls) >= maxCalls {
		s.calls = slices.Delete(s.calls, 0, len(s.calls)/10)
	}
	s.calls = append(s.calls, c)
}

// Jobs returns all jobs in creation order.
func (s *Server) Jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Job, 0, len(s.jobOrder))
	for _, j := range s.jobOrder {
		out = append(out, j.snapshot())
	}
	return out
}

// Job returns one job.
func (s *Server) Job(id int64) (Job, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[id]
	if !ok {
		return Job{}, false
	}
	return j.snapshot(), true
}

// Runners returns the registered runners by id.
func (s *Server) Runners() []Runner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Runner, 0, len(s.runners))
	for _, r := range s.runners {
		out = append(out, r.snapshot())
	}
	slices.SortFunc(out, func(a, b Runner) int { return int(a.ID - b.ID) })
	return out
}

// Deliveries returns every delivery attempt in creation order, pending ones included.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, 0, len(s.deliveries))
	for _, d := range s.deliveries {
		out = append(out, d.snapshot())
	}
	return out
}
