package fakegithub

import (
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// This file renders the fake's state in the JSON shapes of the real API. Every object
// carries at least the fields of the examples in testdata/rest and testdata/webhooks
// (shapes_test.go checks that); values that the fake has no notion of are plausible
// constants.

type obj = map[string]any

func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339)
}

func nodeID(kind string, id int64) string {
	return base64.StdEncoding.EncodeToString(fmt.Appendf(nil, "%s%d", kind, id))
}

func strOrNil(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func idOrNil(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func (s *Server) userJSONLocked(login string, id int64, typ string) obj {
	api := s.apiBaseLocked()
	u := api + "/users/" + login
	return obj{
		"login":               login,
		"id":                  id,
		"node_id":             nodeID("04:User", id),
		"avatar_url":          fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", id),
		"gravatar_id":         "",
		"url":                 u,
		"html_url":            htmlBase + "/" + login,
		"followers_url":       u + "/followers",
		"following_url":       u + "/following{/other_user}",
		"gists_url":           u + "/gists{/gist_id}",
		"starred_url":         u + "/starred{/owner}{/repo}",
		"subscriptions_url":   u + "/subscriptions",
		"organizations_url":   u + "/orgs",
		"repos_url":           u + "/repos",
		"events_url":          u + "/events{/privacy}",
		"received_events_url": u + "/received_events",
		"type":                typ,
		"site_admin":          false,
	}
}

const orgAccountID = 38302899

func (s *Server) orgJSONLocked() obj {
	api := s.apiBaseLocked()
	o := api + "/orgs/" + s.opts.Owner
	return obj{
		"login":              s.opts.Owner,
		"id":                 orgAccountID,
		"node_id":            nodeID("012:Organization", orgAccountID),
		"url":                o,
		"repos_url":          o + "/repos",
		"events_url":         o + "/events",
		"hooks_url":          o + "/hooks",
		"issues_url":         o + "/issues",
		"members_url":        o + "/members{/member}",
		"public_members_url": o + "/public_members{/member}",
		"avatar_url":         fmt.Sprintf("https://avatars.githubusercontent.com/u/%d?v=4", orgAccountID),
		"description":        "",
	}
}

func (s *Server) senderJSONLocked() obj { return s.userJSONLocked("octocat", 1, "User") }

func (s *Server) repoJSONLocked(r *repo) obj {
	api := s.apiBaseLocked() + "/repos/" + r.full()
	html := htmlBase + "/" + r.full()
	ownerType := "User"
	ownerID := int64(1)
	if r.owner == s.opts.Owner {
		ownerType, ownerID = "Organization", orgAccountID
	}
	created := time.Date(2021, 1, 26, 19, 1, 12, 0, time.UTC)
	return obj{
		"id":                          r.id,
		"node_id":                     nodeID("010:Repository", r.id),
		"name":                        r.name,
		"full_name":                   r.full(),
		"private":                     true,
		"owner":                       s.userJSONLocked(r.owner, ownerID, ownerType),
		"html_url":                    html,
		"description":                 "A repository of the fake GitHub",
		"fork":                        false,
		"url":                         api,
		"archive_url":                 api + "/{archive_format}{/ref}",
		"assignees_url":               api + "/assignees{/user}",
		"blobs_url":                   api + "/git/blobs{/sha}",
		"branches_url":                api + "/branches{/branch}",
		"collaborators_url":           api + "/collaborators{/collaborator}",
		"comments_url":                api + "/comments{/number}",
		"commits_url":                 api + "/commits{/sha}",
		"compare_url":                 api + "/compare/{base}...{head}",
		"contents_url":                api + "/contents/{+path}",
		"contributors_url":            api + "/contributors",
		"deployments_url":             api + "/deployments",
		"downloads_url":               api + "/downloads",
		"events_url":                  api + "/events",
		"forks_url":                   api + "/forks",
		"git_commits_url":             api + "/git/commits{/sha}",
		"git_refs_url":                api + "/git/refs{/sha}",
		"git_tags_url":                api + "/git/tags{/sha}",
		"git_url":                     "git://github.com/" + r.full() + ".git",
		"issue_comment_url":           api + "/issues/comments{/number}",
		"issue_events_url":            api + "/issues/events{/number}",
		"issues_url":                  api + "/issues{/number}",
		"keys_url":                    api + "/keys{/key_id}",
		"labels_url":                  api + "/labels{/name}",
		"languages_url":               api + "/languages",
		"merges_url":                  api + "/merges",
		"milestones_url":              api + "/milestones{/number}",
		"notifications_url":           api + "/notifications{?since,all,participating}",
		"pulls_url":                   api + "/pulls{/number}",
		"releases_url":                api + "/releases{/id}",
		"ssh_url":                     "git@github.com:" + r.full() + ".git",
		"stargazers_url":              api + "/stargazers",
		"statuses_url":                api + "/statuses/{sha}",
		"subscribers_url":             api + "/subscribers",
		"subscription_url":            api + "/subscription",
		"tags_url":                    api + "/tags",
		"teams_url":                   api + "/teams",
		"trees_url":                   api + "/git/trees{/sha}",
		"clone_url":                   html + ".git",
		"mirror_url":                  nil,
		"hooks_url":                   api + "/hooks",
		"svn_url":                     html,
		"homepage":                    nil,
		"language":                    "Go",
		"forks_count":                 0,
		"stargazers_count":            0,
		"watchers_count":              0,
		"size":                        108,
		"default_branch":              "main",
		"open_issues_count":           0,
		"is_template":                 false,
		"topics":                      []string{},
		"has_issues":                  true,
		"has_projects":                true,
		"has_wiki":                    true,
		"has_pages":                   false,
		"has_downloads":               true,
		"has_discussions":             false,
		"archived":                    false,
		"disabled":                    false,
		"visibility":                  "private",
		"pushed_at":                   ts(created.Add(time.Hour)),
		"created_at":                  ts(created),
		"updated_at":                  ts(created.Add(2 * time.Hour)),
		"permissions":                 obj{"admin": true, "maintain": true, "push": true, "triage": true, "pull": true},
		"allow_rebase_merge":          true,
		"template_repository":         nil,
		"temp_clone_token":            "",
		"allow_squash_merge":          true,
		"allow_auto_merge":            false,
		"delete_branch_on_merge":      false,
		"allow_merge_commit":          true,
		"allow_forking":               false,
		"subscribers_count":           1,
		"network_count":               0,
		"license":                     obj{"key": "mit", "name": "MIT License", "url": s.apiBaseLocked() + "/licenses/mit", "spdx_id": "MIT", "node_id": "MDc6TGljZW5zZW1pdA==", "html_url": htmlBase + "/licenses/mit"},
		"forks":                       0,
		"open_issues":                 0,
		"watchers":                    0,
		"web_commit_signoff_required": false,
		"custom_properties":           obj{},
	}
}

func labelType(name string) string {
	switch strings.ToLower(name) {
	case "self-hosted", "linux", "windows", "macos", "x64", "arm", "arm64":
		return "read-only"
	}
	return "custom"
}

func (s *Server) labelsJSONLocked(labels []string) []obj {
	out := make([]obj, 0, len(labels))
	for _, l := range labels {
		key := strings.ToLower(l)
		id, ok := s.labelIDs[key]
		if !ok {
			id = int64(len(s.labelIDs) + 1)
			s.labelIDs[key] = id
		}
		out = append(out, obj{"id": id, "name": l, "type": labelType(l)})
	}
	return out
}

func (s *Server) runnerJSONLocked(r *runner) obj {
	status := "offline"
	if r.online {
		status = "online"
	}
	return obj{
		"id":              r.id,
		"name":            r.name,
		"os":              "linux",
		"status":          status,
		"busy":            r.busy(),
		"ephemeral":       true,
		"version":         "2.323.0",
		"runner_group_id": r.groupID,
		"labels":          s.labelsJSONLocked(r.labels),
	}
}

func (s *Server) groupJSONLocked(g *runnerGroup) obj {
	o := s.apiBaseLocked() + "/orgs/" + s.opts.Owner + "/actions/runner-groups/" + fmt.Sprint(g.id)
	visibility := "all"
	if !g.isDefault {
		visibility = "selected"
	}
	return obj{
		"id":                              g.id,
		"name":                            g.name,
		"visibility":                      visibility,
		"default":                         g.isDefault,
		"selected_repositories_url":       o + "/repositories",
		"runners_url":                     o + "/runners",
		"hosted_runners_url":              o + "/hosted-runners",
		"network_configuration_id":        nil,
		"inherited":                       false,
		"allows_public_repositories":      false,
		"restricted_to_workflows":         false,
		"selected_workflows":              []string{},
		"workflow_restrictions_read_only": false,
	}
}

func (s *Server) stepsJSONLocked(j *job) []obj {
	step := func(n int, name, status, conclusion string, start, end time.Time) obj {
		return obj{"name": name, "status": status, "conclusion": strOrNil(conclusion), "number": n, "started_at": ts(start), "completed_at": ts(end)}
	}
	switch {
	case j.status == statusInProgress:
		return []obj{step(1, "Set up job", statusInProgress, "", j.startedAt, time.Time{})}
	case j.status == statusCompleted && j.runnerID != 0:
		return []obj{
			step(1, "Set up job", statusCompleted, "success", j.startedAt, j.startedAt),
			step(2, "Run job", statusCompleted, j.conclusion, j.startedAt, j.completedAt),
			step(3, "Complete job", statusCompleted, "success", j.completedAt, j.completedAt),
		}
	}
	return []obj{}
}

func (s *Server) jobJSONLocked(j *job) obj {
	api := s.apiBaseLocked() + "/repos/" + j.repo.full()
	started := j.startedAt
	if started.IsZero() {
		// GitHub reports a queued job's started_at as its creation time.
		started = j.createdAt
	}
	return obj{
		"id":                j.id,
		"run_id":            j.runID,
		"run_url":           fmt.Sprintf("%s/actions/runs/%d", api, j.runID),
		"run_attempt":       j.attempt,
		"node_id":           nodeID("CR_", j.id),
		"head_sha":          j.headSHA,
		"head_branch":       "main",
		"url":               fmt.Sprintf("%s/actions/jobs/%d", api, j.id),
		"html_url":          fmt.Sprintf("%s/%s/actions/runs/%d/job/%d", htmlBase, j.repo.full(), j.runID, j.id),
		"status":            j.status,
		"conclusion":        strOrNil(j.conclusion),
		"created_at":        ts(j.createdAt),
		"started_at":        ts(started),
		"completed_at":      ts(j.completedAt),
		"name":              j.name,
		"steps":             s.stepsJSONLocked(j),
		"check_run_url":     fmt.Sprintf("%s/check-runs/%d", api, j.id),
		"labels":            append([]string{}, j.labels...),
		"runner_id":         idOrNil(j.runnerID),
		"runner_name":       strOrNil(j.runnerName),
		"runner_group_id":   idOrNil(j.groupID),
		"runner_group_name": strOrNil(j.groupName),
		"workflow_name":     j.workflow,
	}
}

func (s *Server) runJSONLocked(rn *run) obj {
	api := s.apiBaseLocked() + "/repos/" + rn.repo.full()
	runURL := fmt.Sprintf("%s/actions/runs/%d", api, rn.id)
	status, conclusion := rn.state()
	actor := s.senderJSONLocked()
	return obj{
		"id":                  rn.id,
		"name":                rn.workflow,
		"node_id":             nodeID("WFR_", rn.id),
		"check_suite_id":      rn.id + 7,
		"check_suite_node_id": nodeID("CS_", rn.id+7),
		"head_branch":         "main",
		"head_sha":            rn.headSHA,
		"path":                ".github/workflows/ci.yml",
		"run_number":          rn.number,
		"event":               "push",
		"display_title":       "Fake commit " + rn.headSHA[:7],
		"status":              status,
		"conclusion":          strOrNil(conclusion),
		"workflow_id":         159038,
		"url":                 runURL,
		"html_url":            fmt.Sprintf("%s/%s/actions/runs/%d", htmlBase, rn.repo.full(), rn.id),
		"pull_requests":       []obj{},
		"created_at":          ts(rn.createdAt),
		"updated_at":          ts(rn.updatedAt),
		"actor":               actor,
		"run_attempt":         rn.attempt,
		"run_started_at":      ts(rn.createdAt),
		"triggering_actor":    actor,
		"jobs_url":            runURL + "/jobs",
		"logs_url":            runURL + "/logs",
		"check_suite_url":     fmt.Sprintf("%s/check-suites/%d", api, rn.id+7),
		"artifacts_url":       runURL + "/artifacts",
		"cancel_url":          runURL + "/cancel",
		"rerun_url":           runURL + "/rerun",
		"workflow_url":        api + "/actions/workflows/159038",
		"head_commit": obj{
			"id":        rn.headSHA,
			"tree_id":   rn.headSHA,
			"message":   "Fake commit",
			"timestamp": ts(rn.createdAt),
			"author":    obj{"name": "Octo Cat", "email": "octocat@github.com"},
			"committer": obj{"name": "GitHub", "email": "noreply@github.com"},
		},
		"repository":      s.repoJSONLocked(rn.repo),
		"head_repository": s.repoJSONLocked(rn.repo),
	}
}

func (s *Server) deliveryJSONLocked(d *delivery, full bool) obj {
	o := obj{
		"id":              d.id,
		"guid":            d.guid,
		"delivered_at":    ts(d.deliveredAt),
		"redelivery":      d.redelivery,
		"duration":        d.duration.Seconds(),
		"status":          d.status,
		"status_code":     d.statusCode,
		"event":           d.event,
		"action":          strOrNil(d.action),
		"installation_id": idOrNil(d.installationID),
		"repository_id":   idOrNil(d.repoID),
		"throttled_at":    nil,
	}
	if full {
		o["url"] = d.url
		reqHeaders := obj{}
		for k, v := range d.reqHeaders {
			reqHeaders[k] = v
		}
		respHeaders := obj{}
		for k, v := range d.respHeaders {
			respHeaders[k] = v
		}
		o["request"] = obj{"headers": reqHeaders, "payload": rawJSON(d.payload)}
		o["response"] = obj{"headers": respHeaders, "payload": strOrNil(d.respBody)}
	}
	return o
}

func (s *Server) installationJSONLocked() obj {
	api := s.apiBaseLocked()
	return obj{
		"id":                        s.opts.InstallationID,
		"account":                   s.userJSONLocked(s.opts.Owner, orgAccountID, "Organization"),
		"repository_selection":      "all",
		"access_tokens_url":         fmt.Sprintf("%s/app/installations/%d/access_tokens", api, s.opts.InstallationID),
		"repositories_url":          api + "/installation/repositories",
		"html_url":                  fmt.Sprintf("%s/organizations/%s/settings/installations/%d", htmlBase, s.opts.Owner, s.opts.InstallationID),
		"app_id":                    s.opts.AppID,
		"app_slug":                  "fake-runner-spawner",
		"target_id":                 orgAccountID,
		"target_type":               "Organization",
		"permissions":               obj{"administration": "write", "actions": "read", "organization_self_hosted_runners": "write", "organization_hooks": "read", "repository_hooks": "read"},
		"events":                    []string{"workflow_job"},
		"created_at":                ts(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)),
		"updated_at":                ts(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)),
		"single_file_name":          nil,
		"has_multiple_single_files": false,
		"single_file_paths":         []string{},
		"suspended_by":              nil,
		"suspended_at":              nil,
	}
}
