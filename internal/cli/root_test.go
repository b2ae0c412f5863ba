package cli

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"
)

// run executes a fresh root command with args and returns what it wrote to
// stdout and stderr.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := NewRootCommand()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.Execute()
	return out.String(), errOut.String(), err
}

func TestRootHelp(t *testing.T) {
	stdout, stderr, err := run(t, "--help")
	if err != nil {
		t.Fatalf("blixard --help: %v (stderr %q)", err, stderr)
	}
	for _, want := range []string{
		"Blixard is a distributed orchestrator for microVMs.",
		"Raft",
		"the deterministic core, the",
		"durable store",
		"arrive with later work",
		"Usage:\n  blixard [command]",
		"\n  version ",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("blixard --help output lacks %q; got:\n%s", want, stdout)
		}
	}
	if stderr != "" {
		t.Errorf("blixard --help wrote to stderr: %q", stderr)
	}
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
	_, stderr, err := run(t, "vm", "list")
	if err == nil {
		t.Fatal("blixard vm list: got no error; a command that does not exist must fail")
	}
	if !strings.Contains(stderr, `unknown command "vm"`) {
		t.Errorf("stderr %q does not name the unknown command", stderr)
	}
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
