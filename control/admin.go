package control

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/fleet"
	"github.com/runner-spawner/runner-spawner/internal/logkey"
	"github.com/runner-spawner/runner-spawner/internal/secret"
	"github.com/runner-spawner/runner-spawner/internal/untrusted"
	"github.com/runner-spawner/runner-spawner/queue"
)

// AdminOptions configures the admin HTTP endpoint.
type AdminOptions struct {
	Conn  *queue.Conn
	State *queue.State
	Fleet *fleet.Fleet
	// Token is the bearer token every request must carry. Required.
	Token secret.Value
	// Flavors are listed in status even before they have any record.
	Flavors []string
	// FlushTimeout bounds one flush request (default DefaultFlushTimeout).
	FlushTimeout time.Duration
	Logger       *slog.Logger
}

// AdminPathPrefix is where the admin routes live.
const AdminPathPrefix = "/admin/v1"

// AdminHandler serves the admin endpoint: POST /admin/v1/flush ({"mode","flavor"}: the
// same as `spawner flush`), POST /admin/v1/reconcile (`spawner reconcile`) and GET
// /admin/v1/status. Every request needs the bearer
// token; without a token configured the endpoint is not built (an open admin API
// could flush every runner).
func AdminHandler(opts AdminOptions) (http.Handler, error) {
	if opts.Conn == nil || opts.State == nil || opts.Fleet == nil {
		panic("control: AdminHandler needs Conn, State and Fleet")
	}
	if opts.Token.IsZero() {
		return nil, errors.New("admin endpoint: no token configured")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.FlushTimeout <= 0 {
		opts.FlushTimeout = DefaultFlushTimeout
	}
	a := &admin{opts: opts, logger: opts.Logger.With(logkey.Component, "admin"), want: sha256.Sum256([]byte(opts.Token.Reveal()))}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+AdminPathPrefix+"/flush", a.flush)
	mux.HandleFunc("POST "+AdminPathPrefix+"/reconcile", a.reconcile)
	mux.HandleFunc("GET "+AdminPathPrefix+"/status", a.status)
	return a.auth(mux), nil
}

type admin struct {
	opts   AdminOptions
	logger *slog.Logger
	want   [32]byte
}

// auth checks the bearer token in constant time (both sides hashed first, so the
// comparison does not even leak the token's length).
func (a *admin) auth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(got[:], a.want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="spawner-admin"`)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *admin) flush(w http.ResponseWriter, r *http.Request) {
	// The body is an edge: its mode is parsed here, once.
	var body struct {
		Mode   string `json:"mode"`
		Flavor string `json:"flavor"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "bad request body"})
		return
	}
	mode, err := ParseMode(body.Mode)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": untrusted.Log(err.Error())})
		return
	}
	req := FlushRequest{Mode: mode, Flavor: body.Flavor}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.FlushTimeout)
	defer cancel()
	a.logger.Info("flush requested over the admin endpoint", logkey.Mode, req.Mode, logkey.Flavor, untrusted.Log(req.Flavor), "remote", r.RemoteAddr)
	res, err := Flush(ctx, a.opts.Conn, req)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, res)
	case errors.Is(err, ErrFlushIncomplete):
		// Carried out in part: the body says what was done.
		writeJSON(w, http.StatusBadGateway, res)
	case errors.Is(err, ErrNoJanitor), errors.Is(err, context.DeadlineExceeded):
		res.Error = err.Error()
		writeJSON(w, http.StatusServiceUnavailable, res)
	default:
		a.logger.Warn("admin flush failed", logkey.Error, err)
		res.Error = "flush not carried out"
		writeJSON(w, http.StatusServiceUnavailable, res)
	}
}

func (a *admin) reconcile(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	a.logger.Info("reconcile requested over the admin endpoint", "remote", r.RemoteAddr)
	sum, err := Reconcile(ctx, a.opts.Conn)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, sum)
	case errors.Is(err, ErrNoJanitor), errors.Is(err, context.DeadlineExceeded):
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		a.logger.Warn("admin reconcile failed", logkey.Error, err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "reconcile not carried out"})
	}
}

func (a *admin) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	snap, err := Snapshot(ctx, a.opts.State, a.opts.Fleet, a.opts.Flavors...)
	if err != nil {
		a.logger.Warn("admin status failed", logkey.Error, err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "state unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
