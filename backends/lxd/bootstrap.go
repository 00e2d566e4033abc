package lxd

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/runner-spawner/runner-spawner/backends"
)

// agentPoll is how often the exec bootstrap retries while a VM's lxd-agent comes up.
const agentPoll = time.Second

// execBootstrap pushes spec.Script into the started instance and starts it detached,
// with spec.Env as its environment. The environment goes only into the exec request,
// so the bootstrap token never lands in the instance's configuration, where anyone
// allowed to read instances would find it long after boot.
func (b *Backend) execBootstrap(ctx context.Context, spec backends.InstanceSpec) error {
	run := func(ctx context.Context) error {
		dir := path.Dir(b.o.ScriptPath)
		if dir != "/" {
			if err := b.c.CreateDirectory(ctx, spec.Name, dir, 0o700); err != nil {
				return fmt.Errorf("make directory %s: %w", dir, err)
			}
		}
		if err := b.c.PushFile(ctx, spec.Name, b.o.ScriptPath, []byte(spec.Script), 0o700); err != nil {
			return fmt.Errorf("push %s: %w", b.o.ScriptPath, err)
		}
		argv := []string{"/bin/sh", "-c", detachCommand, "spawner-bootstrap", b.o.ScriptPath + ".log"}
		if strings.HasPrefix(spec.Script, "#!") {
			argv = append(argv, b.o.ScriptPath) // its own interpreter
		} else {
			argv = append(argv, "/bin/sh", b.o.ScriptPath)
		}
		if _, err := b.c.Exec(ctx, spec.Name, ExecRequest{
			Command:     argv,
			Environment: spec.Env,
			Cwd:         "/",
		}); err != nil {
			return fmt.Errorf("run %s: %w", b.o.ScriptPath, err)
		}
		return nil
	}
	if b.o.Type != TypeVM {
		return run(ctx)
	}
	// A VM's files and exec go through its lxd-agent, which answers only some
	// seconds after the VM starts.
	actx, cancel := context.WithTimeout(ctx, b.o.AgentTimeout)
	defer cancel()
	for {
		err := run(actx)
		if err == nil || ctx.Err() != nil {
			return err
		}
		if actx.Err() != nil || !agentNotReady(err) {
			return err
		}
		select {
		case <-time.After(agentPoll):
		case <-actx.Done():
			return err
		}
	}
}

// detachCommand starts the command in "$@" (after the log file in $1) in its own
// session with its output in the log, and returns at once: the runner inside lives as long as its job, far longer than an
// exec call should, and must outlive LXD restarts. setsid is missing from some
// minimal images; nohup then keeps it from the hangup.
const detachCommand = `log=$1; shift; cd / && if command -v setsid >/dev/null 2>&1; then setsid "$@" </dev/null >>"$log" 2>&1 & else nohup "$@" </dev/null >>"$log" 2>&1 & fi`

// agentNotReady matches LXD's answers while a VM's agent is not up yet.
func agentNotReady(err error) bool {
	var le *Error
	if !errors.As(err, &le) {
		return false
	}
	m := strings.ToLower(le.Message)
	return strings.Contains(m, "agent") || errors.Is(err, ErrUnreachable)
}
