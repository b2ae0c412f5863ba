package cli

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

// Checks of flag and argument values, made before any request is sent. The
// cluster checks everything again; these catch what is plainly wrong with a
// message in the command line's own terms.

// exactArgs wants exactly the named positional arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == len(names) {
			return nil
		}
		if len(names) == 0 {
			return usageErrorf("%s takes no arguments; got %q", cmd.CommandPath(), args[0])
		}
		return usageErrorf("%s takes %d argument(s), %s; got %d", cmd.CommandPath(), len(names), strings.Join(names, " "), len(args))
	}
}

// noArgs refuses positional arguments, naming the first as a command that
// does not exist (for commands that group others).
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{msg}
}

// parseID parses a node or task id: a positive integer.
func parseID(what, s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageErrorf("%s %q is not a positive integer", what, s)
	}
	return id, nil
}

// checkVcpus checks --vcpus.
func checkVcpus(n int) (uint32, error) {
	if n < 1 || int64(n) > math.MaxUint32 {
		return 0, usageErrorf("--vcpus must be at least 1, got %d", n)
	}
	return uint32(n), nil
}

// checkMemory checks --memory, in MiB.
func checkMemory(mib int64) (uint64, error) {
	if mib < 1 {
		return 0, usageErrorf("--memory must be at least 1 (MiB), got %d", mib)
	}
	return uint64(mib), nil
}

// parseKeyValues parses repeated KEY=VALUE flags into a map. Keys must be
// non-empty and appear once.
func parseKeyValues(flag string, pairs []string) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		switch {
		case !ok:
			return nil, usageErrorf("--%s %q is not KEY=VALUE", flag, p)
		case k == "":
			return nil, usageErrorf("--%s %q has an empty key", flag, p)
		}
		if _, dup := m[k]; dup {
			return nil, usageErrorf("--%s gives %q twice", flag, k)
		}
		m[k] = v
	}
	return m, nil
}

// limitFlag checks --limit: 0 for all.
func limitFlag(n int) (uint32, error) {
	if n < 0 || int64(n) > math.MaxUint32 {
		return 0, usageErrorf("--limit must be 0 (all) or more, got %d", n)
	}
	return uint32(n), nil
}

// sortedUnique returns the values of a repeated flag sorted, each once, as
// the API wants sets of names; nil for none.
func sortedUnique(values []string) []string {
	if len(values) == 0 {
		return nil
	}
	return slices.Compact(slices.Sorted(slices.Values(values)))
}
