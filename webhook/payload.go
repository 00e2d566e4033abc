package webhook

import (
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tidwall/gjson"

	"github.com/runner-spawner/runner-spawner/internal/ghname"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
)

// ErrBadPayload marks a body that is not a usable workflow_job payload: the receiver
// answers 400 with the message, which is short and never echoes the body.
var ErrBadPayload = errors.New("bad payload")

// Limits on a job's labels, checked while parsing so that routing never sees more.
// GitHub allows at most 100 custom labels on a runner (the REST API's maxItems), so a
// job asking for more matches no runner anywhere. GitHub documents no length limit;
// 256 bytes is far beyond any label in use and keeps a payload's labels under 26 KB.
const (
	MaxLabels   = 100
	MaxLabelLen = 256
)

// workflowJobPayload holds the few fields of GitHub's workflow_job webhook we use.
// Pointers mark the fields whose absence must be told apart from a zero value.
type workflowJobPayload struct {
	Action       *string
	WorkflowJob  *workflowJob
	Repository   *repository
	Organization *organization
	Installation *installation
}

type workflowJob struct {
	ID           *int64
	RunID        *int64
	RunAttempt   int
	Name         string
	WorkflowName string
	URL          string
	HTMLURL      string
	Status       string
	Conclusion   *string
	Labels       *[]string
	RunnerID     *int64
	RunnerName   *string
	CreatedAt    *time.Time
	StartedAt    *time.Time
	CompletedAt  *time.Time
}

type repository struct{ FullName string }

type organization struct{ Login string }

type installation struct{ ID int64 }

// parseDelivery returns the workflow_job payload a delivery's body carries, in either
// of GitHub's content types.
func parseDelivery(contentType string, body []byte) (*workflowJobPayload, error) {
	doc, err := jsonBody(contentType, body)
	if err != nil {
		return nil, err
	}
	return parseWorkflowJob(doc)
}

// jsonBody returns the JSON document of a delivery: the body itself for
// application/json, the "payload" form field for application/x-www-form-urlencoded
// (GitHub's two content types).
func jsonBody(contentType string, body []byte) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(contentType)
	if contentType == "" {
		mt, err = "application/json", nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: unreadable content type", ErrBadPayload)
	}
	switch mt {
	case "application/json":
		return body, nil
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("%w: unreadable form body", ErrBadPayload)
		}
		p := form.Get("payload")
		if p == "" {
			return nil, fmt.Errorf("%w: form body has no payload field", ErrBadPayload)
		}
		return []byte(p), nil
	default:
		return nil, fmt.Errorf("%w: unsupported content type %q", ErrBadPayload, untrusted.Log(mt))
	}
}

// parseWorkflowJob checks a workflow_job payload and picks out the fields we use in
// one pass over it. GitHub's payload is 8-13 KB of which we need a dozen fields;
// walking it with gjson costs a fraction of a full encoding/json decode, which was
// the receiver's largest CPU cost.
func parseWorkflowJob(doc []byte) (*workflowJobPayload, error) {
	if !gjson.ValidBytes(doc) {
		return nil, fmt.Errorf("%w: malformed JSON", ErrBadPayload)
	}
	root := gjson.ParseBytes(doc)
	if !root.IsObject() {
		return nil, fmt.Errorf("%w: not a JSON object", ErrBadPayload)
	}
	var probs fieldProblems
	p := pickPayload(root, &probs)
	if err := probs.err(p.missing()); err != nil {
		return nil, err
	}
	// The repository goes into GitHub API paths, subjects of logs and operator tables:
	// "../..", a newline or an escape sequence must stop here.
	if err := ghname.ValidRepo(p.Repository.FullName); err != nil {
		return nil, fmt.Errorf("%w: repository.full_name is %v", ErrBadPayload, err)
	}
	return p, nil
}

// fieldProblems collects, during the one pass over a payload, the fields of the wrong
// type (bad) and those over a limit (over).
type fieldProblems struct{ bad, over []string }

// err reports the payload's problems, the fields of the wrong type first, then the
// missing ones, then those over a limit; nil when there are none.
func (f *fieldProblems) err(missing []string) error {
	switch {
	case len(f.bad) > 0:
		return fmt.Errorf("%w: wrong type for %s", ErrBadPayload, strings.Join(f.bad, ", "))
	case len(missing) > 0:
		return fmt.Errorf("%w: missing %s", ErrBadPayload, strings.Join(missing, ", "))
	case len(f.over) > 0:
		return fmt.Errorf("%w: %s", ErrBadPayload, strings.Join(f.over, ", "))
	}
	return nil
}

// pickPayload picks the top-level fields we use out of the payload object root. A
// field of the wrong type is left unset, and reported as missing if it is required.
func pickPayload(root gjson.Result, probs *fieldProblems) *workflowJobPayload {
	p := &workflowJobPayload{}
	root.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "action":
			setString(&p.Action, v)
		case "workflow_job":
			if v.IsObject() {
				p.WorkflowJob = parseJob(v, probs)
			}
		case "repository":
			if v.IsObject() {
				p.Repository = &repository{FullName: v.Get("full_name").String()}
			}
		case "organization":
			if v.IsObject() {
				p.Organization = &organization{Login: v.Get("login").String()}
			}
		case "installation":
			if v.IsObject() {
				p.Installation = &installation{ID: v.Get("id").Int()}
			}
		}
		return true
	})
	return p
}

// missing lists the required fields p lacks (or has empty or not positive).
func (p *workflowJobPayload) missing() []string {
	var missing []string
	if p.Action == nil || *p.Action == "" {
		missing = append(missing, "action")
	}
	if p.WorkflowJob == nil {
		missing = append(missing, "workflow_job")
	} else {
		if p.WorkflowJob.ID == nil || *p.WorkflowJob.ID <= 0 {
			missing = append(missing, "workflow_job.id")
		}
		if p.WorkflowJob.RunID == nil || *p.WorkflowJob.RunID <= 0 {
			missing = append(missing, "workflow_job.run_id")
		}
		if p.WorkflowJob.Labels == nil {
			missing = append(missing, "workflow_job.labels")
		}
	}
	if p.Repository == nil || p.Repository.FullName == "" {
		missing = append(missing, "repository.full_name")
	}
	return missing
}

func parseJob(obj gjson.Result, probs *fieldProblems) *workflowJob {
	j := &workflowJob{}
	obj.ForEach(func(k, v gjson.Result) bool {
		j.set(k.Str, v, probs)
		return true
	})
	return j
}

// set stores the workflow_job field key. The ids and labels we require note a wrong
// type in probs; the optional fields are left unset.
func (j *workflowJob) set(key string, v gjson.Result, probs *fieldProblems) {
	switch key {
	case "id":
		j.ID = positiveInt(v, "workflow_job.id", probs)
	case "run_id":
		j.RunID = positiveInt(v, "workflow_job.run_id", probs)
	case "run_attempt":
		j.RunAttempt = int(v.Int())
	case "name":
		j.Name = v.String()
	case "workflow_name":
		j.WorkflowName = v.String()
	case "url":
		j.URL = v.String()
	case "html_url":
		j.HTMLURL = v.String()
	case "status":
		j.Status = v.String()
	case "conclusion":
		setString(&j.Conclusion, v)
	case "labels":
		if labels := parseLabels(v, probs); labels != nil {
			j.Labels = labels
		}
	case "runner_id":
		setInt(&j.RunnerID, v)
	case "runner_name":
		setString(&j.RunnerName, v)
	case "created_at":
		j.CreatedAt = timestamp(v)
	case "started_at":
		j.StartedAt = timestamp(v)
	case "completed_at":
		j.CompletedAt = timestamp(v)
	}
}

// parseLabels returns the job's labels, stopping at the first that is not a string
// or over a limit (noted in probs); nil when v is not an array.
func parseLabels(v gjson.Result, probs *fieldProblems) *[]string {
	if !v.IsArray() {
		probs.bad = append(probs.bad, "workflow_job.labels")
		return nil
	}
	labels := []string{}
	v.ForEach(func(_, l gjson.Result) bool {
		switch {
		case l.Type != gjson.String:
			probs.bad = append(probs.bad, "workflow_job.labels")
			return false
		case len(labels) == MaxLabels:
			probs.over = append(probs.over, fmt.Sprintf("workflow_job.labels has more than %d entries", MaxLabels))
			return false
		case len(l.Str) > MaxLabelLen:
			probs.over = append(probs.over, fmt.Sprintf("a workflow_job.labels entry is longer than %d bytes", MaxLabelLen))
			return false
		}
		labels = append(labels, l.Str)
		return true
	})
	return &labels
}

// setString and setInt store v in dst when it has the type dst holds, and otherwise
// leave dst as it was.
func setString(dst **string, v gjson.Result) {
	if v.Type == gjson.String {
		s := v.Str
		*dst = &s
	}
}

func setInt(dst **int64, v gjson.Result) {
	if v.Type == gjson.Number {
		n := v.Int()
		*dst = &n
	}
}

func positiveInt(v gjson.Result, key string, probs *fieldProblems) *int64 {
	if v.Type != gjson.Number {
		probs.bad = append(probs.bad, key)
		return nil
	}
	n, err := strconv.ParseInt(v.Raw, 10, 64)
	if err != nil {
		probs.bad = append(probs.bad, key)
		return nil
	}
	return &n
}

func timestamp(v gjson.Result) *time.Time {
	if v.Type != gjson.String {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v.Str)
	if err != nil {
		return nil
	}
	return &t
}
