// Command pulumi-language-python is a minimal Pulumi language host for Python.
//
// It exists because the upstream host's Go module
// (github.com/pulumi/pulumi/sdk/python/cmd/pulumi-language-python/v3) is not served by the Go module
// proxy this project builds from. It does what our deployments need: Run a program through
// pulumi-language-python-exec (shipped in the sdk module), and RunPlugin for Python plugins and policy
// packs. Plugin discovery, dependency installation and code generation are deliberately left out: the
// engine finds plugins on PATH / in PULUMI_HOME, and virtualenvs are prepared by our own tooling.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/cmdutil"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/logging"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/rpcutil"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc"
)

const (
	executorName = "pulumi-language-python-exec"
	// Exit code of the executor meaning "the error was already shown to the user".
	exitAfterUserMessage = 32
)

// parseArgs reads the CLI's arguments: "-name value", "-name=value" or "--name ...". Flags known to
// take a value consume the next argument, others (e.g. --logtostderr) are ignored as booleans. The last
// positional argument is the engine address.
func parseArgs(args []string) (flags map[string]string, engine string) {
	takesValue := map[string]bool{"tracing": true, "root": true, "virtualenv": true, "toolchain": true,
		"typechecker": true}
	flags = map[string]string{}
	for i := 0; i < len(args); i++ {
		if !strings.HasPrefix(args[i], "-") {
			engine = args[i]
			continue
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !hasValue && takesValue[name] && i+1 < len(args) {
			i++
			value = args[i]
		}
		flags[name] = value
	}
	return flags, engine
}

func main() {
	flags, engine := parseArgs(os.Args[1:])
	logging.InitLogging(false, 0, false)
	cmdutil.InitTracing("pulumi-language-python", "pulumi-language-python", flags["tracing"])
	executor, err := findExecutor()
	if err != nil {
		cmdutil.Exit(err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	cancel := make(chan bool)
	go func() { <-ctx.Done(); close(cancel) }()
	if engine != "" { // exit when the engine goes away
		if err := rpcutil.Healthcheck(ctx, engine, 5*time.Minute, stop); err != nil {
			cmdutil.Exit(fmt.Errorf("could not start health check: %w", err))
		}
	}

	h := &host{executor: executor, engine: engine, tracing: flags["tracing"],
		root: flags["root"], virtualenv: flags["virtualenv"]}
	handle, err := rpcutil.ServeWithOptions(rpcutil.ServeOptions{
		Cancel: cancel,
		Init:   func(srv *grpc.Server) error { pulumirpc.RegisterLanguageRuntimeServer(srv, h); return nil },
	})
	if err != nil {
		cmdutil.Exit(fmt.Errorf("could not start language host RPC server: %w", err))
	}
	fmt.Printf("%d\n", handle.Port) // the CLI reads our port from stdout
	if err := <-handle.Done; err != nil {
		cmdutil.Exit(fmt.Errorf("language host RPC stopped serving: %w", err))
	}
}

// findExecutor looks for pulumi-language-python-exec next to this binary (symlinks resolved, then
// as invoked), then on PATH.
func findExecutor() (string, error) {
	var dirs []string
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		dirs = append(dirs, filepath.Dir(self))
	}
	if invoked, err := exec.LookPath(os.Args[0]); err == nil {
		dirs = append(dirs, filepath.Dir(invoked))
	}
	for _, dir := range dirs {
		if p := filepath.Join(dir, executorName); isFile(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath(executorName); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("could not find %s in %v or on PATH", executorName, dirs)
}

func isFile(path string) bool {
	st, err := os.Stat(path)
	return err == nil && !st.IsDir()
}

// pulumiVersion is the version of the Pulumi SDK module this host was built against.
func pulumiVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == "github.com/pulumi/pulumi/sdk/v3" {
				return strings.TrimPrefix(dep.Version, "v")
			}
		}
	}
	return "3.259.0"
}

// python returns the interpreter for a program or plugin and the environment to run it with, built
// from env (later entries win). The virtualenv comes from the runtime options, else the -virtualenv
// flag, else defaultVenv, relative to the root directory; without one, PULUMI_PYTHON_CMD or python3.
func (h *host) python(info *pulumirpc.ProgramInfo, env []string, defaultVenv string) (string, []string, error) {
	option, _ := info.GetOptions().AsMap()["virtualenv"].(string)
	venv := cmp.Or(option, h.virtualenv, defaultVenv)
	if venv == "" {
		name := cmp.Or(lookupEnv(env, "PULUMI_PYTHON_CMD"), "python3")
		path, err := exec.LookPath(name)
		if err != nil {
			return "", nil, fmt.Errorf("could not find %q on PATH: is Python 3 installed?", name)
		}
		return path, env, nil
	}
	if !filepath.IsAbs(venv) {
		venv = filepath.Join(cmp.Or(info.GetRootDirectory(), h.root), venv)
	}
	bin := filepath.Join(venv, "bin")
	if !isFile(filepath.Join(bin, "python")) {
		return "", nil, fmt.Errorf("the 'virtualenv' option is set to %q, but %s/bin/python does not exist; "+
			"create it with: python3 -m venv %s && %s/bin/pip install -r requirements.txt", venv, venv, venv, venv)
	}
	// Activate the virtualenv: its bin first on PATH, VIRTUAL_ENV set, PYTHONHOME unset.
	activated := []string{"PATH=" + bin + string(os.PathListSeparator) + lookupEnv(env, "PATH"), "VIRTUAL_ENV=" + venv}
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k != "PATH" && k != "PYTHONHOME" && k != "VIRTUAL_ENV" {
			activated = append(activated, kv)
		}
	}
	return filepath.Join(bin, "python"), activated, nil
}

// lookupEnv returns the effective value of key in env (the last entry wins, as in os/exec).
func lookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(env[i], "="); k == key {
			return v
		}
	}
	return ""
}

// exitCode returns the exit status of a command that ran and exited (not killed by a signal).
func exitCode(err error) (int, bool) {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() >= 0 {
		return exitErr.ExitCode(), true
	}
	return 0, false
}

// command runs python with args, sending SIGTERM when ctx ends and SIGKILL after a grace period.
// (SIGINT would make Python print a KeyboardInterrupt traceback when the engine abandons a run.)
func command(ctx context.Context, python string, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, python, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	cmd.Env = env
	return cmd
}
