package openstacktest

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// image serves Glance's GET /v2/images (filters name and status, newest first) and
// GET /v2/images/{id}, whose 404 is an HTML page as Glance's is.
func (c *Cloud) image(w http.ResponseWriter, r *http.Request) {
	if strings.Trim(r.URL.Path, "/") == "image" {
		// Glance's version document answers 300 Multiple Choices.
		writeJSON(w, http.StatusMultipleChoices, map[string]any{"versions": []map[string]any{
			{"id": "v2.16", "status": "CURRENT", "links": []map[string]any{{"rel": "self", "href": c.URL + "/image/v2/"}}},
			{"id": "v2.15", "status": "SUPPORTED", "links": []map[string]any{{"rel": "self", "href": c.URL + "/image/v2/"}}},
		}})
		return
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/image/v2"), "/")
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := strings.CutPrefix(rest, "images/"); ok {
		i := slices.IndexFunc(c.images, func(im Image) bool { return im.ID == id })
		if i < 0 {
			w.Header().Set("Content-Type", "text/html; charset=UTF-8")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  No image found with ID %s<br /><br />\n\n\n </body>\n</html>", id)
			return
		}
		writeJSON(w, http.StatusOK, imageView(c.images[i]))
		return
	}
	if rest != "images" {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	out := []map[string]any{}
	imgs := slices.Clone(c.images)
	slices.SortFunc(imgs, func(a, b Image) int { return b.Created.Compare(a.Created) })
	for _, im := range imgs {
		if (q.Get("name") == "" || q.Get("name") == im.Name) && (q.Get("status") == "" || q.Get("status") == im.Status) {
			out = append(out, imageView(im))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": out, "first": "/v2/images", "schema": "/v2/schemas/images"})
}

func imageView(im Image) map[string]any {
	ts := im.Created.UTC().Format(time.RFC3339)
	return map[string]any{"id": im.ID, "name": im.Name, "status": im.Status, "created_at": ts, "updated_at": ts,
		"visibility": "public", "container_format": "bare", "disk_format": "raw", "min_disk": 0, "min_ram": 0,
		"protected": false, "tags": []string{}, "size": 1048576, "self": "/v2/images/" + im.ID,
		"file": "/v2/images/" + im.ID + "/file", "schema": "/v2/schemas/image"}
}

// network serves Neutron's networks and security-groups, list (filters name and
// project_id) and get, with Neutron's error envelope.
func (c *Cloud) network(w http.ResponseWriter, r *http.Request) {
	if strings.Trim(r.URL.Path, "/") == "network" {
		writeJSON(w, http.StatusOK, map[string]any{"versions": []map[string]any{
			{"id": "v2.0", "status": "CURRENT", "links": []map[string]any{{"rel": "self", "href": c.URL + "/network/v2.0/"}}},
		}})
		return
	}
	rest := strings.Trim(strings.TrimPrefix(r.URL.Path, "/network/v2.0"), "/")
	if r.Method != http.MethodGet {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	keep := func(name, project string) bool {
		return (q.Get("name") == "" || q.Get("name") == name) && (q.Get("project_id") == "" || q.Get("project_id") == project)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := time.Now().UTC().Format(time.RFC3339)
	netView := func(n Network) map[string]any {
		return map[string]any{"id": n.ID, "name": n.Name, "project_id": n.ProjectID, "tenant_id": n.ProjectID,
			"shared": n.Shared, "status": "ACTIVE", "subnets": []string{}, "admin_state_up": true,
			"created_at": ts, "updated_at": ts, "tags": []string{}}
	}
	sgView := func(g SecGroup) map[string]any {
		return map[string]any{"id": g.ID, "name": g.Name, "project_id": g.ProjectID, "tenant_id": g.ProjectID,
			"description": "", "security_group_rules": []any{}, "stateful": true, "created_at": ts, "updated_at": ts, "tags": []string{}}
	}
	neutronErr := func(typ, msg string) {
		writeJSON(w, http.StatusNotFound, map[string]any{"NeutronError": map[string]any{"type": typ, "message": msg, "detail": ""}})
	}
	switch {
	case rest == "networks":
		out := []map[string]any{}
		for _, n := range c.networks {
			if keep(n.Name, n.ProjectID) {
				out = append(out, netView(n))
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"networks": out})
	case strings.HasPrefix(rest, "networks/"):
		id := strings.TrimPrefix(rest, "networks/")
		i := slices.IndexFunc(c.networks, func(n Network) bool { return n.ID == id })
		if i < 0 {
			neutronErr("NetworkNotFound", fmt.Sprintf("Network %s could not be found.", id))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"network": netView(c.networks[i])})
	case rest == "security-groups":
		out := []map[string]any{}
		for _, g := range c.secgroups {
			if keep(g.Name, g.ProjectID) {
				out = append(out, sgView(g))
			}
		}
		writeJSON(w, http.StatusOK, map[string]any{"security_groups": out})
	case strings.HasPrefix(rest, "security-groups/"):
		id := strings.TrimPrefix(rest, "security-groups/")
		i := slices.IndexFunc(c.secgroups, func(g SecGroup) bool { return g.ID == id })
		if i < 0 {
			neutronErr("SecurityGroupNotFound", fmt.Sprintf("Security group %s does not exist", id))
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"security_group": sgView(c.secgroups[i])})
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}
