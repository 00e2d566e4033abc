package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"strings"
	"time"
)

// ErrBadPayload marks a body that is not a usable workflow_job payload: the receiver
// answers 400 with the message, which is short and never echoes the body.
var ErrBadPayload = errors.New("bad payload")

// workflowJobPayload holds the few fields of GitHub's workflow_job webhook we use.
// Pointers mark the fields whose absence must be told apart from a zero value.
type workflowJobPayload struct {
	Action      *string `json:"action"`
	WorkflowJob *struct {
		ID           *int64     `json:"id"`
		RunID        *int64     `json:"run_id"`
		RunAttempt   int        `json:"run_attempt"`
		Name         string     `json:"name"`
		WorkflowName string     `json:"workflow_name"`
		URL          string     `json:"url"`
		HTMLURL      string     `json:"html_url"`
		Status       string     `json:"status"`
		Conclusion   *string    `json:"conclusion"`
		Labels       *[]string  `json:"labels"`
		RunnerID     *int64     `json:"runner_id"`
		RunnerName   *string    `json:"runner_name"`
		CreatedAt    *time.Time `json:"created_at"`
		StartedAt    *time.Time `json:"started_at"`
		CompletedAt  *time.Time `json:"completed_at"`
	} `json:"workflow_job"`
	Repository *struct {
		FullName string `json:"full_name"`
	} `json:"repository"`
	Organization *struct {
		Login string `json:"login"`
	} `json:"organization"`
	Installation *struct {
		ID int64 `json:"id"`
	} `json:"installation"`
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
		return nil, fmt.Errorf("%w: unsupported content type %q", ErrBadPayload, mt)
	}
}

// parseWorkflowJob decodes and checks a workflow_job payload.
func parseWorkflowJob(doc []byte) (*workflowJobPayload, error) {
	var p workflowJobPayload
	dec := json.NewDecoder(bytes.NewReader(doc))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: malformed JSON", ErrBadPayload)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON document", ErrBadPayload)
	}
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
	if p.Repository == nil || !strings.Contains(p.Repository.FullName, "/") {
		missing = append(missing, "repository.full_name")
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: missing %s", ErrBadPayload, strings.Join(missing, ", "))
	}
	return &p, nil
}
