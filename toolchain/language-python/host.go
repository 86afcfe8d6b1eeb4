package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	sdk "github.com/pulumi/pulumi/sdk/v3"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/emptypb"
)

// host implements the LanguageRuntime gRPC service; RPCs not defined here answer Unimplemented.
type host struct {
	pulumirpc.UnimplementedLanguageRuntimeServer

	executor, engine, tracing string
	root, virtualenv          string // -root / -virtualenv flags, passed by older CLIs
}

func (h *host) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: pulumiVersion()}, nil
}

// GetRequiredPlugins reports none: the engine resolves plugins from PATH / PULUMI_HOME.
func (h *host) GetRequiredPlugins(context.Context, *pulumirpc.GetRequiredPluginsRequest,
) (*pulumirpc.GetRequiredPluginsResponse, error) {
	return &pulumirpc.GetRequiredPluginsResponse{}, nil
}

// GetRequiredPackages reports none, like GetRequiredPlugins.
func (h *host) GetRequiredPackages(context.Context, *pulumirpc.GetRequiredPackagesRequest,
) (*pulumirpc.GetRequiredPackagesResponse, error) {
	return &pulumirpc.GetRequiredPackagesResponse{}, nil
}

// InstallDependencies does nothing: virtualenvs are prepared outside Pulumi.
func (h *host) InstallDependencies(*pulumirpc.InstallDependenciesRequest,
	pulumirpc.LanguageRuntime_InstallDependenciesServer,
) error {
	return nil
}

// Run executes a program through pulumi-language-python-exec, passing its stdout/stderr through.
func (h *host) Run(ctx context.Context, req *pulumirpc.RunRequest) (*pulumirpc.RunResponse, error) {
	python, env, err := h.python(req.GetInfo(), os.Environ(), "")
	if err != nil {
		return nil, err
	}
	args := []string{"-u", h.executor}
	for _, kv := range [][2]string{
		{"monitor", req.GetMonitorAddress()}, {"engine", h.engine}, {"project", req.GetProject()},
		{"root_directory", req.GetInfo().GetRootDirectory()}, {"stack", req.GetStack()}, {"pwd", req.GetPwd()},
		{"dry_run", strconv.FormatBool(req.GetDryRun())}, {"parallel", strconv.Itoa(int(req.GetParallel()))},
		{"tracing", h.tracing}, {"organization", req.GetOrganization()},
	} {
		if kv[1] != "" {
			args = append(args, "--"+kv[0], kv[1])
		}
	}
	args = append(args, cmp.Or(req.GetInfo().GetEntryPoint(), req.GetProgram(), "."))
	args = append(args, req.GetArgs()...)

	if req.GetConfig() != nil {
		env = append(env, "PULUMI_CONFIG="+mustJSON(req.GetConfig()))
	}
	env = append(env, "PULUMI_CONFIG_SECRET_KEYS="+mustJSON(append([]string{}, req.GetConfigSecretKeys()...)))

	cmd := command(ctx, python, env, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err = cmd.Run()
	code, exited := exitCode(err)
	switch {
	case err == nil:
		return &pulumirpc.RunResponse{}, nil
	case exited && code == exitAfterUserMessage:
		return &pulumirpc.RunResponse{Bail: true}, nil
	case exited:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("program exited with non-zero exit code: %d", code)}, nil
	default:
		return &pulumirpc.RunResponse{Error: fmt.Sprintf("problem executing program with %s: %v", python, err)}, nil
	}
}

// RunPlugin runs a Python plugin directory (`python <dir> args...`, i.e. its __main__.py), or, for kind
// "analyzer", a policy pack as `python -m pulumi.policy args... <dir>` inside the pack's directory, like
// the upstream host. Output and the exit code are streamed back to the engine.
func (h *host) RunPlugin(req *pulumirpc.RunPluginRequest, server pulumirpc.LanguageRuntime_RunPluginServer) error {
	ctx, dir := server.Context(), req.GetInfo().GetProgramDirectory()
	isPolicy := req.GetKind() == string(apitype.AnalyzerPlugin)
	defaultVenv := "venv" // upstream requires a virtualenv for plugins, but not for policy packs
	if isPolicy {
		defaultVenv = ""
	}
	python, env, err := h.python(req.GetInfo(), append(os.Environ(), req.GetEnv()...), defaultVenv)
	if err != nil {
		return err
	}

	var mu sync.Mutex // a gRPC stream takes one sender at a time
	send := func(resp *pulumirpc.RunPluginResponse) error {
		mu.Lock()
		defer mu.Unlock()
		return server.Send(resp)
	}
	var stdout io.Writer = writerFunc(func(b []byte) error {
		return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stdout{Stdout: b}})
	})
	stderr := writerFunc(func(b []byte) error {
		return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Stderr{Stderr: b}})
	})

	args, workDir := append([]string{"-u", dir}, req.GetArgs()...), req.GetPwd()
	var proxy *sdk.PolicyProxy
	if isPolicy {
		args = append(append([]string{"-u", "-m", "pulumi.policy"}, req.GetArgs()...), dir)
		workDir = dir // policy packs have always run in their own directory
		// The engine first talks to a proxy, to hand over the stack's configuration, which the pack reads
		// from its environment; the proxy then forwards every call to the started pack.
		if proxy, stdout, err = sdk.NewPolicyProxy(ctx, stdout); err != nil {
			return fmt.Errorf("could not start policy pack proxy: %w", err)
		}
		stack, err := proxy.AwaitConfiguration(ctx)
		if err != nil {
			return fmt.Errorf("could not get stack configuration: %w", err)
		}
		if stack != nil {
			for k, v := range map[string]string{"PULUMI_ORGANIZATION": stack.GetOrganization(),
				"PULUMI_PROJECT": stack.GetProject(), "PULUMI_STACK": stack.GetStack(),
				"PULUMI_DRY_RUN": strconv.FormatBool(stack.GetDryRun())} {
				if v != "" { // unset, not empty, when unknown (no organization with a DIY backend)
					env = append(env, k+"="+v)
				}
			}
			if stack.GetConfig() != nil {
				env = append(env, "PULUMI_CONFIG="+mustJSON(stack.GetConfig()))
			}
		}
	}

	cmd := command(ctx, python, env, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = workDir, stdout, stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("could not run plugin with %s: %w", python, err)
	}
	if proxy != nil {
		err = proxy.Attach(ctx, cmd) // waits for the pack to exit
	} else {
		err = cmd.Wait()
	}
	if code, ok := exitCode(err); ok {
		return send(&pulumirpc.RunPluginResponse{Output: &pulumirpc.RunPluginResponse_Exitcode{Exitcode: int32(code)}})
	}
	return err
}

// About reports the interpreter a program runs with.
func (h *host) About(ctx context.Context, req *pulumirpc.AboutRequest) (*pulumirpc.AboutResponse, error) {
	out, err := h.pythonOutput(ctx, req.GetInfo(), "-c", "import sys; print(sys.executable, sys.version.split()[0])")
	if fields := strings.Fields(out); err == nil && len(fields) == 2 {
		return &pulumirpc.AboutResponse{Executable: fields[0], Version: fields[1],
			Metadata: map[string]string{"toolchain": "pip"}}, nil
	}
	return nil, cmp.Or(err, fmt.Errorf("unexpected output from python: %q", out))
}

// GetProgramDependencies lists the packages installed in the program's environment (pip list).
func (h *host) GetProgramDependencies(ctx context.Context, req *pulumirpc.GetProgramDependenciesRequest,
) (*pulumirpc.GetProgramDependenciesResponse, error) {
	args := []string{"-m", "pip", "list", "--format", "json"}
	if !req.GetTransitiveDependencies() {
		args = append(args, "--not-required")
	}
	out, err := h.pythonOutput(ctx, req.GetInfo(), args...)
	var pkgs []struct{ Name, Version string }
	if err == nil {
		err = json.Unmarshal([]byte(out), &pkgs)
	}
	resp := &pulumirpc.GetProgramDependenciesResponse{}
	for _, p := range pkgs {
		resp.Dependencies = append(resp.Dependencies, &pulumirpc.DependencyInfo{Name: p.Name, Version: p.Version})
	}
	return resp, err
}

// pythonOutput runs the program's interpreter with args and returns its stdout.
func (h *host) pythonOutput(ctx context.Context, info *pulumirpc.ProgramInfo, args ...string) (string, error) {
	python, env, err := h.python(info, os.Environ(), "")
	if err != nil {
		return "", err
	}
	out, err := command(ctx, python, env, args...).Output()
	if exitErr := (*exec.ExitError)(nil); errors.As(err, &exitErr) {
		err = fmt.Errorf("python %s: %w: %s", strings.Join(args, " "), err, exitErr.Stderr)
	}
	return string(out), err
}

// writerFunc adapts a send function to io.Writer.
type writerFunc func([]byte) error

func (f writerFunc) Write(p []byte) (int, error) {
	if err := f(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// mustJSON marshals the string maps and lists used here, which cannot fail.
func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
