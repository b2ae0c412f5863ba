package cli

import (
	"bytes"
	"context"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/blixard/blixard/client/clienttest"
)

// run executes a fresh root command with args, as Execute does, and returns
// what it wrote to stdout and stderr.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runContext(t, context.Background(), args...)
}

func runContext(t *testing.T, ctx context.Context, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = execute(ctx, root)
	return out.String(), errOut.String(), err
}

// TestMain clears the environment variables the command line reads, so
// that the shell the tests run from does not change what they see.
func TestMain(m *testing.M) {
	for _, env := range []string{addrEnv, tokenEnv, caEnv, insecureEnv, joinTokenEnv} {
		os.Unsetenv(env)
	}
	os.Exit(m.Run())
}

// runAt runs the command line against the fake node n, which serves
// plaintext (see runSecureAt for TLS).
func runAt(t *testing.T, n *clienttest.Node, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return run(t, append([]string{"--addr", n.Addr, "--insecure"}, args...)...)
}

// mustRunAt runs the command line against n and fails the test if it fails
// or writes to stderr.
func mustRunAt(t *testing.T, n *clienttest.Node, args ...string) string {
	t.Helper()
	stdout, stderr, err := runAt(t, n, args...)
	if err != nil || stderr != "" {
		t.Fatalf("blixard %s: err %v, stderr %q", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

// failAt runs the command line against n, wants it to fail with one line on
// stderr containing want, and returns that line.
func failAt(t *testing.T, n *clienttest.Node, want string, args ...string) string {
	t.Helper()
	stdout, stderr, err := runAt(t, n, args...)
	if err == nil {
		t.Fatalf("blixard %s: no error; stdout %q", strings.Join(args, " "), stdout)
	}
	if !strings.HasPrefix(stderr, "error: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
		t.Errorf("blixard %s: stderr %q, want one line starting with \"error: \"", strings.Join(args, " "), stderr)
	}
	if !strings.Contains(stderr, want) {
		t.Errorf("blixard %s: stderr %q does not contain %q", strings.Join(args, " "), stderr, want)
	}
	return stderr
}

func TestRootHelp(t *testing.T) {
	stdout, stderr, err := run(t, "--help")
	if err != nil {
		t.Fatalf("blixard --help: %v (stderr %q)", err, stderr)
	}
	for _, want := range []string{
		"Blixard is a distributed orchestrator for microVMs.",
		"Raft",
		"--addr, or BLIXARD_ADDR",
		"QEMU microVM",
		"\"vm logs\" shows a VM's console",
		"Usage:\n  blixard [command]",
		"\n  version ",
		"\n  cluster ",
		"\n  vm ",
		"\n  task ",
		"\n  acl ",
		"--addr host:port",
		"-o, --output format",
		"--token token",
		"--ca file",
		"--insecure",
		"TLS 1.3",
		"admin.token",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("blixard --help output lacks %q; got:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("blixard --help wrote to stderr: %q", stderr)
	}
}

// TestHelpSaysWorkloadsRun walks every command's help: none may still claim
// that VMs or tasks are not run.
func TestHelpSaysWorkloadsRun(t *testing.T) {
	stale := []string{"not yet run", "stays pending until", "do not run", "does not run", "stored and replicated but"}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		text := c.Short + "\n" + c.Long + "\n" + c.Example + "\n" + c.Flags().FlagUsages()
		for _, s := range stale {
			if strings.Contains(strings.Join(strings.Fields(text), " "), s) {
				t.Errorf("%s --help still says %q", c.CommandPath(), s)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewRootCommand())
}

func TestVersion(t *testing.T) {
	stdout, stderr, err := run(t, "version")
	if err != nil {
		t.Fatalf("blixard version: %v (stderr %q)", err, stderr)
	}
	info, ok := debug.ReadBuildInfo()
	want := "blixard " + moduleVersion(info, ok) + "\n"
	if stdout != want {
		t.Errorf("blixard version printed %q, want %q", stdout, want)
	}
}

func TestVersionRejectsArguments(t *testing.T) {
	if _, _, err := run(t, "version", "extra"); err == nil {
		t.Error("blixard version extra: got no error, want one for the unexpected argument")
	}
}

func TestUnknownCommandFails(t *testing.T) {
	for _, args := range [][]string{{"frobnicate"}, {"vm", "frobnicate"}, {"cluster", "frobnicate"}, {"task", "frobnicate"},
		{"acl", "frobnicate"}, {"acl", "token", "frobnicate"}, {"cluster", "token", "frobnicate"}, {"cluster", "ca", "frobnicate"}} {
		_, stderr, err := run(t, args...)
		if err == nil {
			t.Errorf("blixard %s: got no error; a command that does not exist must fail", strings.Join(args, " "))
			continue
		}
		if !strings.Contains(stderr, `unknown command "frobnicate"`) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("blixard %s: stderr %q, want one line naming the unknown command", strings.Join(args, " "), stderr)
		}
	}
}

func TestUnknownSubcommandSuggests(t *testing.T) {
	_, stderr, _ := run(t, "vm", "creat")
	want := `error: unknown command "creat" for "blixard vm"; did you mean create? (see 'blixard vm --help')` + "\n"
	if stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
}

func TestGroupCommandsShowHelp(t *testing.T) {
	for _, group := range [][]string{{"cluster"}, {"vm"}, {"task"}, {"acl"}, {"acl", "token"}, {"cluster", "token"}, {"cluster", "ca"}} {
		stdout, stderr, err := run(t, group...)
		if err != nil || stderr != "" {
			t.Errorf("blixard %s: err %v, stderr %q", group, err, stderr)
		}
		if !strings.Contains(stdout, "Available Commands:") {
			t.Errorf("blixard %s printed %q, want its help", group, stdout)
		}
	}
}

func TestEveryCommandHasAnExample(t *testing.T) {
	var walk func(prefix string, cmds []*cobra.Command)
	walk = func(prefix string, cmds []*cobra.Command) {
		for _, c := range cmds {
			path := prefix + " " + c.Name()
			if c.HasSubCommands() {
				walk(path, c.Commands())
				continue
			}
			if c.Name() == "help" || c.Name() == "completion" || c.Name() == "version" {
				continue
			}
			if c.Example == "" {
				t.Errorf("%s has no --help example", path)
			}
		}
	}
	walk("blixard", NewRootCommand().Commands())
}

func TestModuleVersion(t *testing.T) {
	tests := []struct {
		name string
		info *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "devel"},
		{"working tree build", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel"},
		{"empty version", &debug.BuildInfo{Main: debug.Module{}}, true, "devel"},
		{"released module", &debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"}}, true, "v0.3.0"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20260101000000-0123456789ab+dirty"}}, true, "v0.0.0-20260101000000-0123456789ab+dirty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := moduleVersion(tc.info, tc.ok); got != tc.want {
				t.Errorf("moduleVersion = %q, want %q", got, tc.want)
			}
		})
	}
}
