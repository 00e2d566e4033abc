package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/queue"
)

func consumerCommand(g *globalFlags) *cobra.Command {
	return roleCommand(g, "consumer", "Run consumer workers and the bootstrap endpoint (run as many replicas as you like)",
		func(ctx context.Context, a *app, conn *queue.Conn) ([]runFunc, error) {
			parts, err := a.consumerParts(ctx, conn)
			if err == nil {
				var names []string
				for _, f := range a.asm.ServedFlavors() {
					names = append(names, f.Name)
				}
				a.logger.Info("consumer running", "flavors", names, "workers", a.cfg.Consumer.Workers, "bootstrap", a.bootstrapListen)
			}
			return parts, err
		})
}
