package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/backends/sim"
	"github.com/runner-spawner/runner-spawner/github/githubtest/fakerunner"
	"github.com/runner-spawner/runner-spawner/internal/httpserve"
)

// devSimCloudCommand is "spawner dev sim-cloud": a simulated cloud shared over HTTP,
// so that several spawner processes (flavors with sim.url set) create their simulated
// instances in one place, and instances outlive a consumer that dies, as real ones do.
func devSimCloudCommand() *cobra.Command {
	var listen string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "sim-cloud",
		Short: "Serve a simulated cloud for sim flavors with sim.url (test tool)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			cloud := sim.NewCloud(sim.CloudOptions{Runner: fakerunner.SimRunner(logger), Logger: logger})
			defer cloud.Close()
			mux := http.NewServeMux()
			mux.Handle("/", cloud.Handler())
			mux.Handle("GET /_sim/stats", simStatsHandler(cloud))
			srv, err := httpserve.Listen("sim-cloud", listen, mux, logger)
			if err != nil {
				return err
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8090", "address to serve the simulated cloud on")
	cmd.Flags().BoolVar(&verbose, "verbose", false, "log every instance")
	return cmd
}

// simStats is what GET /_sim/stats answers: the counters a load test of a deployment
// checks capacity and leftovers with, as the cloud itself counted them.
type simStats struct {
	Created int `json:"created"`
	Deleted int `json:"deleted"`
	// Live and MaxLive count instances per flavor: now, and at most at one moment.
	Live    map[string]int `json:"live"`
	MaxLive map[string]int `json:"max_live"`
	// Instances are those that exist now, of every deployment.
	Instances []simInstance `json:"instances"`
}

type simInstance struct {
	Name   string `json:"name"`
	Flavor string `json:"flavor"`
	State  string `json:"state"`
}

func simStatsHandler(cloud *sim.Cloud) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		st := cloud.Stats()
		out := simStats{Created: st.Created, Deleted: st.Deleted, Live: st.Live, MaxLive: st.MaxLive, Instances: []simInstance{}}
		for _, in := range cloud.All() {
			out.Instances = append(out.Instances, simInstance{Name: in.Name, Flavor: in.Flavor, State: string(in.State)})
		}
		w.Header().Set("Content-Type", "application/json")
		// An encode error is a client gone away: nothing left to answer.
		_ = json.NewEncoder(w).Encode(out)
	}
}
