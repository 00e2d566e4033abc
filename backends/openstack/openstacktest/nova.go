package openstacktest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// SetDeleteDelay makes deletes asynchronous, as Nova's are: a deleted server stays
// listed with task_state "deleting" for d.
func (c *Cloud) SetDeleteDelay(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deleteDelay = d
}

// microversion parses the request's compute microversion ("2.1" when absent) and
// refuses, with 406 as Nova does, one beyond the announced maximum.
func (c *Cloud) microversion(w http.ResponseWriter, r *http.Request) (minor int, ok bool) {
	v := r.Header.Get("X-OpenStack-Nova-API-Version")
	if v == "" {
		v = "2.1"
	}
	minor = minorOf(v)
	if minor < 1 || minor > minorOf(c.opts.MaxMicroversion) {
		novaError(w, http.StatusNotAcceptable, fmt.Sprintf("Version %s is not supported by the API. Minimum is 2.1 and maximum is %s.", v, c.opts.MaxMicroversion))
		return 0, false
	}
	return minor, true
}

func minorOf(v string) int {
	_, m, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(m)
	if err != nil {
		return -1
	}
	return n
}

func (c *Cloud) compute(w http.ResponseWriter, r *http.Request) {
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/compute/v2.1"), "/")
	if rest == "" {
		writeJSON(w, http.StatusOK, map[string]any{"version": map[string]any{
			"id": "v2.1", "status": "CURRENT", "version": c.opts.MaxMicroversion, "min_version": "2.1",
			"updated": "2013-07-23T11:33:21Z", "links": []map[string]any{{"rel": "self", "href": c.URL + "/compute/v2.1/"}},
		}})
		return
	}
	mv, ok := c.microversion(w, r)
	if !ok {
		return
	}
	parts := strings.Split(rest, "/")
	switch {
	case rest == "servers" && r.Method == http.MethodPost:
		c.createServer(w, r, mv)
	case rest == "servers/detail" && r.Method == http.MethodGet:
		c.listServers(w, r, mv)
	case len(parts) == 2 && parts[0] == "servers" && r.Method == http.MethodGet:
		c.getServer(w, parts[1], mv)
	case len(parts) == 2 && parts[0] == "servers" && r.Method == http.MethodDelete:
		c.deleteServer(w, parts[1])
	case rest == "flavors/detail" && r.Method == http.MethodGet:
		c.mu.Lock()
		out := []map[string]any{}
		for _, f := range c.flavors {
			out = append(out, flavorView(f))
		}
		c.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]any{"flavors": out})
	case len(parts) == 2 && parts[0] == "flavors" && r.Method == http.MethodGet:
		c.mu.Lock()
		i := slices.IndexFunc(c.flavors, func(f Flavor) bool { return f.ID == parts[1] })
		var f Flavor
		if i >= 0 {
			f = c.flavors[i]
		}
		c.mu.Unlock()
		if i < 0 {
			novaError(w, http.StatusNotFound, fmt.Sprintf("Flavor %s could not be found.", parts[1]))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"flavor": flavorView(f)})
	default:
		novaError(w, http.StatusNotFound, "The resource could not be found.")
	}
}

func flavorView(f Flavor) map[string]any {
	return map[string]any{"id": f.ID, "name": f.Name, "ram": 512, "vcpus": 1, "disk": 1, "swap": "",
		"OS-FLV-EXT-DATA:ephemeral": 0, "os-flavor-access:is_public": true, "rxtx_factor": 1.0,
		"links": []map[string]any{}}
}

func (c *Cloud) createServer(w http.ResponseWriter, r *http.Request, mv int) {
	var req struct {
		Server map[string]json.RawMessage `json:"server"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Server == nil {
		novaError(w, http.StatusBadRequest, "Malformed request body")
		return
	}
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(req.Server[k], &s)
		return s
	}
	if _, has := req.Server["tags"]; has && mv < 52 {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server. Value: {...}. Additional properties are not allowed ('tags' was unexpected)")
		return
	}
	if _, has := req.Server["networks"]; !has && mv >= 37 {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute server. Value: {...}. 'networks' is a required property")
		return
	}
	s := &Server{Name: str("name"), FlavorID: str("flavorRef"), ImageID: str("imageRef"), KeyName: str("key_name"),
		AvailabilityZone: str("availability_zone"), UserData: str("user_data"), Microversion: fmt.Sprintf("2.%d", mv)}
	var nets []struct {
		UUID string `json:"uuid"`
	}
	_ = json.Unmarshal(req.Server["networks"], &nets)
	var groups []struct {
		Name string `json:"name"`
	}
	_ = json.Unmarshal(req.Server["security_groups"], &groups)
	_ = json.Unmarshal(req.Server["metadata"], &s.Metadata)
	_ = json.Unmarshal(req.Server["tags"], &s.Tags)
	_ = json.Unmarshal(req.Server["config_drive"], &s.ConfigDrive)
	_ = json.Unmarshal(req.Server["block_device_mapping_v2"], &s.BlockDevices)
	if s.Name == "" {
		novaError(w, http.StatusBadRequest, "Invalid input for field/attribute name. Value: None. None is not of type 'string'")
		return
	}
	if raw, err := base64.StdEncoding.DecodeString(s.UserData); err != nil || len(s.UserData) > 65535 {
		novaError(w, http.StatusBadRequest, fmt.Sprintf("Invalid input for field/attribute user_data. Value: %.20s. '%.20s' is not a 'base64'", s.UserData, s.UserData))
		return
	} else if len(raw) == 0 {
		s.UserData = ""
	}
	bootImage := s.ImageID
	for _, bd := range s.BlockDevices {
		if bd["source_type"] == "image" && fmt.Sprint(bd["boot_index"]) == "0" {
			bootImage, _ = bd["uuid"].(string)
		}
	}

	c.mu.Lock()
	c.reapLocked()
	msg, status := "", 0
	switch {
	case !slices.ContainsFunc(c.images, func(i Image) bool { return i.ID == bootImage }):
		msg, status = fmt.Sprintf("Image %s could not be found.", bootImage), 400
	case !slices.ContainsFunc(c.images, func(i Image) bool { return i.ID == bootImage && i.Status == "active" }):
		msg, status = fmt.Sprintf("Image %s is not active.", bootImage), 400
	case !slices.ContainsFunc(c.flavors, func(f Flavor) bool { return f.ID == s.FlavorID }):
		msg, status = fmt.Sprintf("Flavor %s could not be found.", s.FlavorID), 400
	case s.KeyName != "" && !slices.Contains(c.keypairs, s.KeyName):
		msg, status = "Invalid key_name provided.", 400
	case s.AvailabilityZone != "" && s.AvailabilityZone != "nova":
		msg, status = "The requested availability zone is not available", 400
	case c.opts.InstanceQuota > 0 && len(c.servers) >= c.opts.InstanceQuota:
		msg, status = fmt.Sprintf("Quota exceeded for instances: Requested 1, but already used %d of %d instances", len(c.servers), c.opts.InstanceQuota), 403
	}
	for _, n := range nets {
		if status == 0 && !slices.ContainsFunc(c.networks, func(x Network) bool { return x.ID == n.UUID }) {
			msg, status = fmt.Sprintf("Network %s could not be found.", n.UUID), 400
		}
		s.Networks = append(s.Networks, n.UUID)
	}
	for _, g := range groups {
		if status == 0 && !slices.ContainsFunc(c.secgroups, func(x SecGroup) bool {
			return x.ProjectID == ProjectID && (x.ID == g.Name || x.Name == g.Name)
		}) {
			msg, status = fmt.Sprintf("Security group %s not found.", g.Name), 400
		}
		s.SecurityGroups = append(s.SecurityGroups, g.Name)
	}
	if status != 0 {
		c.mu.Unlock()
		novaError(w, status, msg)
		return
	}
	s.ID = newUUID()
	s.Status = "BUILD"
	s.Created = c.now().UTC().Truncate(time.Second)
	c.servers = append(c.servers, s)
	delay := c.createDelay
	c.mu.Unlock()

	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	sgs := []map[string]any{}
	for _, g := range s.SecurityGroups {
		sgs = append(sgs, map[string]any{"name": g})
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"server": map[string]any{
		"id": s.ID, "OS-DCF:diskConfig": "MANUAL", "adminPass": "Zx9fake", "security_groups": sgs,
		"links": []map[string]any{{"rel": "self", "href": c.URL + "/compute/v2.1/servers/" + s.ID}},
	}})
}

// settleLocked moves a BUILD server on: the fake "boots" at once, to ACTIVE, or to
// ERROR with a fault for the flavors no host can take.
func (c *Cloud) settleLocked(s *Server) {
	if s.Status != "BUILD" {
		return
	}
	if fault, bad := c.errorFlavors[s.FlavorID]; bad {
		s.Status, s.Fault = "ERROR", fault
		return
	}
	s.Status = "ACTIVE"
}

// view is a server as Nova shows it; the fault only in the single-server view (show),
// as Nova leaves it out of lists.
func (c *Cloud) view(s *Server, mv int, show bool) map[string]any {
	vmState := strings.ToLower(s.Status)
	if s.Status == "BUILD" {
		vmState = "building"
	}
	var task any
	if s.TaskState != "" {
		task = s.TaskState
	}
	v := map[string]any{
		"id": s.ID, "name": s.Name, "status": s.Status, "tenant_id": ProjectID, "user_id": "u-" + Username,
		"metadata": orEmpty(s.Metadata), "created": s.Created.Format(time.RFC3339), "updated": s.Created.Format(time.RFC3339),
		"hostId": "", "addresses": map[string]any{}, "key_name": nilIfEmpty(s.KeyName),
		"image":                 map[string]any{"id": s.ImageID},
		"flavor":                map[string]any{"id": s.FlavorID},
		"links":                 []map[string]any{{"rel": "self", "href": c.URL + "/compute/v2.1/servers/" + s.ID}},
		"OS-EXT-STS:task_state": task, "OS-EXT-STS:vm_state": vmState, "OS-EXT-STS:power_state": 0,
		"OS-EXT-AZ:availability_zone": "nova", "config_drive": map[bool]string{true: "True"}[s.ConfigDrive],
		"accessIPv4": "", "accessIPv6": "", "progress": 0,
	}
	if s.ImageID == "" {
		v["image"] = ""
	}
	if s.Status == "ERROR" && show {
		v["fault"] = map[string]any{"code": 500, "message": s.Fault, "created": s.Created.Format(time.RFC3339)}
	}
	if mv >= 26 {
		v["tags"] = orEmptySlice(s.Tags)
	}
	return v
}

func (c *Cloud) listServers(w http.ResponseWriter, r *http.Request, mv int) {
	q := r.URL.Query()
	var nameRE *regexp.Regexp
	if n := q.Get("name"); n != "" {
		var err error
		if nameRE, err = regexp.Compile(n); err != nil {
			novaError(w, http.StatusBadRequest, "Invalid regular expression for name")
			return
		}
	}
	var wantTags []string
	if t := q.Get("tags"); t != "" {
		if mv < 26 {
			novaError(w, http.StatusBadRequest, "Invalid filter field: tags.")
			return
		}
		wantTags = strings.Split(t, ",")
	}
	limit := c.opts.PageSize
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 && l < limit {
		limit = l
	}
	c.mu.Lock()
	c.reapLocked()
	var match []*Server
	for _, s := range c.servers {
		c.settleLocked(s)
		if nameRE != nil && !nameRE.MatchString(s.Name) {
			continue
		}
		if !allIn(wantTags, s.Tags) {
			continue
		}
		match = append(match, s)
	}
	// Nova's default order: newest first, then by id.
	slices.SortStableFunc(match, func(a, b *Server) int {
		if d := b.Created.Compare(a.Created); d != 0 {
			return d
		}
		return strings.Compare(b.ID, a.ID)
	})
	if m := q.Get("marker"); m != "" {
		i := slices.IndexFunc(match, func(s *Server) bool { return s.ID == m })
		if i < 0 {
			c.mu.Unlock()
			novaError(w, http.StatusBadRequest, fmt.Sprintf("marker [%s] not found", m))
			return
		}
		match = match[i+1:]
	}
	more := len(match) > limit
	if more {
		match = match[:limit]
	}
	out := make([]map[string]any, 0, len(match))
	for _, s := range match {
		out = append(out, c.view(s, mv, false))
	}
	c.mu.Unlock()
	body := map[string]any{"servers": out}
	if more {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("limit", strconv.Itoa(limit))
		next.Set("marker", match[len(match)-1].ID)
		body["servers_links"] = []map[string]any{{"rel": "next", "href": c.URL + "/compute/v2.1/servers/detail?" + next.Encode()}}
	}
	writeJSON(w, http.StatusOK, body)
}

func (c *Cloud) getServer(w http.ResponseWriter, id string, mv int) {
	c.mu.Lock()
	c.reapLocked()
	i := slices.IndexFunc(c.servers, func(s *Server) bool { return s.ID == id })
	if i < 0 {
		c.mu.Unlock()
		novaError(w, http.StatusNotFound, fmt.Sprintf("Instance %s could not be found.", id))
		return
	}
	c.settleLocked(c.servers[i])
	v := c.view(c.servers[i], mv, true)
	c.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"server": v})
}

func (c *Cloud) deleteServer(w http.ResponseWriter, id string) {
	c.mu.Lock()
	c.reapLocked()
	i := slices.IndexFunc(c.servers, func(s *Server) bool { return s.ID == id })
	if i < 0 {
		c.mu.Unlock()
		novaError(w, http.StatusNotFound, fmt.Sprintf("Instance %s could not be found.", id))
		return
	}
	s := c.servers[i]
	// A repeated delete is accepted and may finish the deletion sooner, never later.
	if gone := c.now().Add(c.deleteDelay); s.TaskState != "deleting" || gone.Before(s.goneAt) {
		s.goneAt = gone
	}
	s.TaskState = "deleting"
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func allIn(want, have []string) bool {
	for _, t := range want {
		if !slices.Contains(have, t) {
			return false
		}
	}
	return true
}

func orEmpty(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func orEmptySlice(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
