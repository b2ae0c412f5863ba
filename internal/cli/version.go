package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// develVersion is reported for a binary built from a working tree, which the go
// command does not stamp with a module version.
const develVersion = "devel"

func newVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this blixard binary",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info, ok := debug.ReadBuildInfo()
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "blixard %s\n", moduleVersion(info, ok))
			return err
		},
	}
}

// moduleVersion returns the main module's version as the go command recorded
// it in the binary (for example v0.3.0 after `go install ...@v0.3.0`), or
// "devel" when none was recorded.
func moduleVersion(info *debug.BuildInfo, ok bool) string {
	if !ok || info == nil {
		return develVersion
	}
	switch v := info.Main.Version; v {
	case "", "(devel)":
		return develVersion
	default:
		return v
	}
}
