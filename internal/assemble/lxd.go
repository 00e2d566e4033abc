package assemble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
	"github.com/runner-spawner/runner-spawner/backends/lxd"
	"github.com/runner-spawner/runner-spawner/config"
)

// newLXDBackends returns one backend per flavor whose backend is lxd, keyed by flavor
// name. The flavors share one client of the configured server, and with it the
// server's limit on concurrent operations. It does not connect: the first call does.
// With no lxd flavor it returns an empty map.
func newLXDBackends(cfg *config.File, logger *slog.Logger) (map[string]backends.Backend, error) {
	out := map[string]backends.Backend{}
	if !cfg.UsesBackend(config.BackendLXD) {
		return out, nil
	}
	client, err := newLXDClient(cfg, logger)
	if err != nil {
		return nil, err
	}
	for _, fl := range cfg.Flavors {
		if fl.Backend != config.BackendLXD || fl.LXD == nil {
			continue
		}
		f := fl.LXD.WithDefaults()
		b, err := lxd.New(client, lxd.Options{
			DeploymentID:  cfg.DeploymentID,
			Flavor:        fl.Name,
			Image:         f.Image,
			ImageServer:   f.Remote,
			ImageProtocol: f.RemoteProtocol,
			Type:          f.Type,
			Profiles:      f.Profiles,
			CPU:           f.Limits.CPU,
			Memory:        f.Limits.Memory,
			Disk:          f.Limits.Disk,
			StoragePool:   f.StoragePool,
			Network:       f.Network,
			Config:        f.Config,
			Ephemeral:     *f.Ephemeral,
			NoPowerOff:    fl.Runner.PowerOff != nil && !*fl.Runner.PowerOff,
			Bootstrap:     f.Bootstrap,
			Logger:        logger,
		})
		if err != nil {
			return nil, fmt.Errorf("flavor %s: %w", fl.Name, err)
		}
		out[fl.Name] = b
	}
	return out, nil
}

// newLXDClient builds the client of the server in cfg's lxd section, reading its
// certificate files.
func newLXDClient(cfg *config.File, logger *slog.Logger) (*lxd.Client, error) {
	lc := cfg.LXD
	opts := lxd.ClientOptions{
		Socket:                  lc.Socket,
		URL:                     lc.URL,
		Project:                 lc.Project,
		MaxConcurrentOperations: lc.MaxConcurrentOperations,
		AdaptiveOperations:      lc.AdaptiveOperations,
		Timeout:                 lc.Timeout,
		OperationTimeout:        lc.OperationTimeout,
		Logger:                  logger,
	}
	for _, f := range []struct {
		key  string
		path string
		dst  *[]byte
	}{
		{"lxd.client_cert_file", lc.ClientCertFile, &opts.ClientCert},
		{"lxd.client_key_file", lc.ClientKeyFile, &opts.ClientKey},
		{"lxd.server_cert_file", lc.ServerCertFile, &opts.ServerCert},
	} {
		if f.path == "" {
			continue
		}
		data, err := os.ReadFile(f.path)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", f.key, err)
		}
		*f.dst = data
	}
	client, err := lxd.NewClient(opts)
	if err != nil {
		return nil, fmt.Errorf("lxd: %w", err)
	}
	return client, nil
}

// lxdReachableTimeout bounds LXDReachable when ctx has no earlier deadline: it
// decides at start-up whether to use LXD, so it must answer quickly either way.
const lxdReachableTimeout = 5 * time.Second

// LXDReachable reports whether the LXD server in cfg answers, trusts us and holds
// the local images of cfg's lxd flavors. nil means the lxd backends can be used;
// the error says what is missing (run scripts/lxd-setup.sh for the local sandbox).
func LXDReachable(ctx context.Context, cfg *config.File) error {
	ctx, cancel := context.WithTimeout(ctx, lxdReachableTimeout)
	defer cancel()
	client, err := newLXDClient(cfg, nil)
	if err != nil {
		return err
	}
	defer client.Close()
	srv, err := client.Server(ctx)
	if err != nil {
		return fmt.Errorf("reach lxd at %s: %w", client.Endpoint(), err)
	}
	if srv.Auth != "trusted" {
		return fmt.Errorf("reach lxd at %s: the server does not trust this client's certificate (lxc config trust add)", client.Endpoint())
	}
	var errs []error
	for _, fl := range cfg.Flavors {
		if fl.Backend != config.BackendLXD || fl.LXD == nil || fl.LXD.Remote != "" {
			continue // images from a remote server are pulled on first use
		}
		ok, err := client.HasImage(ctx, fl.LXD.Image)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("look up image %q of flavor %s: %w", fl.LXD.Image, fl.Name, err))
		case !ok:
			errs = append(errs, fmt.Errorf("flavor %s: lxd at %s has no image %q", fl.Name, client.Endpoint(), fl.LXD.Image))
		}
	}
	return errors.Join(errs...)
}
