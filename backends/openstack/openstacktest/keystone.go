package openstacktest

import (
	"encoding/json"
	"net/http"
	"time"
)

// tokensHandler is Keystone's POST /v3/auth/tokens for password and
// application-credential logins, answering with a catalog of the fake's endpoints.
func (c *Cloud) tokensHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"error": map[string]any{"code": 405, "message": "method not allowed"}})
		return
	}
	var req struct {
		Auth struct {
			Identity struct {
				Methods  []string `json:"methods"`
				Password struct {
					User struct {
						Name     string `json:"name"`
						Password string `json:"password"`
					} `json:"user"`
				} `json:"password"`
				AppCred struct {
					ID     string `json:"id"`
					Secret string `json:"secret"`
				} `json:"application_credential"`
			} `json:"identity"`
		} `json:"auth"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"code": 400, "title": "Bad Request", "message": err.Error()}})
		return
	}
	id := req.Auth.Identity
	ok := false
	for _, m := range id.Methods {
		switch m {
		case "password":
			ok = id.Password.User.Name == Username && id.Password.User.Password == Password
		case "application_credential":
			ok = id.AppCred.ID == AppCredID && id.AppCred.Secret == AppCredSecr
		}
	}
	if !ok {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": map[string]any{
			"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})
		return
	}
	token := "gAAAAA" + newUUID()
	c.mu.Lock()
	now := c.now()
	expires := now.Add(c.opts.TokenTTL)
	c.tokens[token] = expires
	c.issued++
	c.mu.Unlock()

	endpoint := func(url string) []map[string]any {
		out := []map[string]any{}
		for _, iface := range []string{"public", "internal", "admin"} {
			out = append(out, map[string]any{"id": newUUID(), "interface": iface, "region": Region, "region_id": Region, "url": url})
		}
		return out
	}
	w.Header().Set("X-Subject-Token", token)
	writeJSON(w, http.StatusCreated, map[string]any{"token": map[string]any{
		"methods":    id.Methods,
		"expires_at": expires.UTC().Format("2006-01-02T15:04:05.000000Z"),
		"issued_at":  now.UTC().Format(time.RFC3339Nano),
		"user":       map[string]any{"id": "u-" + Username, "name": Username, "domain": map[string]any{"id": "default", "name": "Default"}},
		"project":    map[string]any{"id": ProjectID, "name": ProjectName, "domain": map[string]any{"id": "default", "name": "Default"}},
		"roles":      []map[string]any{{"id": "r-member", "name": "member"}},
		"catalog": []map[string]any{
			{"id": "s-keystone", "type": "identity", "name": "keystone", "endpoints": endpoint(c.URL + "/identity/v3")},
			{"id": "s-nova", "type": "compute", "name": "nova", "endpoints": endpoint(c.URL + "/compute/v2.1")},
			{"id": "s-glance", "type": "image", "name": "glance", "endpoints": endpoint(c.URL + "/image")},
			{"id": "s-neutron", "type": "network", "name": "neutron", "endpoints": endpoint(c.URL + "/network")},
		},
	}})
}
