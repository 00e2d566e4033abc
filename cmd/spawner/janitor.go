package main

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/runner-spawner/runner-spawner/queue"
)

func janitorCommand(g *globalFlags) *cobra.Command {
	return roleCommand(g, "janitor", "Run a janitor: reconcile, flush on command, recover lost webhooks (one is active; others stand by)",
		func(ctx context.Context, a *app, conn *queue.Conn) ([]runFunc, error) {
			return a.janitorParts(ctx, conn)
		})
}
