package cli

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/blixard/blixard/client/clienttest"
	"github.com/blixard/blixard/internal/runtime"
)

// TestNodeFlagErrors: bad node flags end the command with one line before
// the node opens its store or listens. Values of the right type are
// checked by the runtime's config (runtime.Config), in the flags' terms.
func TestNodeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--overcommit-vcpu", "0.5"}, "error: --overcommit-vcpu 0.5 must be between 1.0 and 16"},
		{[]string{"--overcommit-vcpu", "-1"}, "--overcommit-vcpu -1 must be between 1.0 and 16"},
		{[]string{"--overcommit-memory", "17"}, "--overcommit-memory 17 must be between 1.0 and 16"},
		{[]string{"--overcommit-vcpu", "lots"}, `invalid argument "lots" for "--overcommit-vcpu" flag`},
		{[]string{"--lease", "150ms"}, "--lease 150ms must be a non-negative multiple of the tick interval (100ms)"},
		{[]string{"--lease", "-5s"}, "--lease -5s must be a non-negative multiple of the tick interval (100ms)"},
		{[]string{"--tick", "200ms", "--lease", "3.1s"}, "--lease 3.1s must be a non-negative multiple of the tick interval (200ms)"},
		{[]string{"--disconnect-after", "50ms"}, "--disconnect-after 50ms must be a non-negative multiple of the tick interval (100ms)"},
		{[]string{"--down-after", "-1s"}, "--down-after -1s must be a non-negative multiple of the tick interval (100ms)"},
		{[]string{"--down-after", "soon"}, `invalid argument "soon" for "--down-after" flag`},
		{[]string{"--label", "zone"}, `error: --label "zone" is not KEY=VALUE (see 'blixard node --help')`},
		{[]string{"--label", "=a"}, `--label "=a" has an empty key`},
		{[]string{"--label", "zone=a", "--label", "zone=b"}, `--label gives "zone" twice`},
		{[]string{"--capacity-vcpus", "-2"}, `invalid argument "-2" for "--capacity-vcpus" flag`},
		{[]string{"--role", "boss"}, `--role: "boss" is not voter or worker`},
	} {
		dir := t.TempDir()
		args := append([]string{"node", "--id", "1", "--data-dir", dir, "--listen", "127.0.0.1:0", "--no-workloads",
			"--capacity-memory", "1024"}, tc.args...)
		stdout, stderr, err := run(t, args...)
		if err == nil {
			t.Fatalf("blixard %s: no error; stdout %q", strings.Join(args, " "), stdout)
		}
		if !strings.HasPrefix(stderr, "error: ") || strings.Count(stderr, "\n") != 1 || !strings.Contains(stderr, tc.want) {
			t.Errorf("blixard node %s: stderr %q, want one line with %q", strings.Join(tc.args, " "), stderr, tc.want)
		}
	}
}

// TestNodeLivenessFlagsReachTheCore: --lease, --disconnect-after and
// --down-after are checked together before the node runs: a --down-after
// too short for the lease, or a --disconnect-after not below it, is
// refused in the flags' own words.
func TestNodeLivenessFlagsReachTheCore(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--lease", "5s", "--down-after", "4s"}, "--down-after 4s must be at least --lease 5s plus the clock-drift margin: 5.8s"},
		{[]string{"--disconnect-after", "7s"}, "--disconnect-after 7s must be shorter than --down-after 6s"},
	} {
		args := append([]string{"node", "--id", "1", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0", "--no-workloads",
			"--capacity-vcpus", "1", "--capacity-memory", "1024", "--log-level", "error"}, tc.args...)
		stdout, stderr, err := run(t, args...)
		if err == nil {
			t.Fatalf("blixard %s: no error; stdout %q", strings.Join(args, " "), stdout)
		}
		if !strings.HasPrefix(stderr, "error: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("blixard node %s: stderr %q, want an error with %q", strings.Join(tc.args, " "), stderr, tc.want)
		}
	}
}

// nodeConfigOf runs "blixard node" with args up to the start of the node
// and returns the config the flags made.
func nodeConfigOf(t *testing.T, args ...string) runtime.Config {
	t.Helper()
	var got runtime.Config
	old := startNode
	startNode = func(_ context.Context, cfg runtime.Config) (*runtime.Node, error) {
		got = cfg
		return nil, errors.New("not started in tests")
	}
	t.Cleanup(func() { startNode = old })
	args = append([]string{"node", "--id", "2", "--data-dir", t.TempDir()}, args...)
	if _, stderr, err := run(t, args...); err == nil || !strings.Contains(stderr, "not started in tests") {
		t.Fatalf("blixard %s: err %v, stderr %q; want it to reach the start", strings.Join(args, " "), err, stderr)
	}
	return got
}

func TestNodeSecurityFlags(t *testing.T) {
	const token = "bxj.0123456789abcdef.00112233445566778899aabbccddeeff." + clienttest.FakeCAFingerprint
	cfg := nodeConfigOf(t, "--join", "127.0.0.1:7001", "--join-token", token)
	if cfg.JoinToken != token || cfg.Insecure {
		t.Errorf("--join-token: config has token %q, insecure %v", cfg.JoinToken, cfg.Insecure)
	}
	t.Setenv(joinTokenEnv, token+"\n")
	if cfg := nodeConfigOf(t, "--join", "127.0.0.1:7001"); cfg.JoinToken != token {
		t.Errorf("$%s: config has token %q, want %q", joinTokenEnv, cfg.JoinToken, token)
	}
	if cfg := nodeConfigOf(t, "--join", "127.0.0.1:7001", "--join-token", "bxj.flag"); cfg.JoinToken != "bxj.flag" {
		t.Errorf("--join-token with $%s set: config has token %q, want the flag's", joinTokenEnv, cfg.JoinToken)
	}
	t.Setenv(joinTokenEnv, "")
	if cfg := nodeConfigOf(t, "--insecure"); !cfg.Insecure || cfg.JoinToken != "" {
		t.Errorf("--insecure: config has insecure %v, token %q", cfg.Insecure, cfg.JoinToken)
	}
}
