package cli

import (
	"context"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/blixard/blixard/client"
)

const (
	defaultAddr = "127.0.0.1:7001"
	addrEnv     = "BLIXARD_ADDR"
)

// globalFlags are the root's persistent flags, read by every command that
// talks to a cluster.
type globalFlags struct {
	addr   string
	output string
}

func (g *globalFlags) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.addr, "addr", defaultAddr,
		"comma-separated `host:port` list of cluster nodes to contact, any will do (overrides $"+addrEnv+")")
	f.StringVarP(&g.output, "output", "o", "table", "output `format`: table or json (protojson, snake_case names)")
}

// addrs returns the node addresses: --addr if given, else $BLIXARD_ADDR if
// set, else the default.
func (g *globalFlags) addrs(cmd *cobra.Command) ([]string, error) {
	value, source := g.addr, "--addr"
	if f := cmd.Flag("addr"); f == nil || !f.Changed {
		if env := os.Getenv(addrEnv); env != "" {
			value, source = env, addrEnv
		}
	}
	var addrs []string
	for _, a := range strings.Split(value, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		if err := client.CheckAddr(a); err != nil {
			return nil, usageErrorf("%s: %v", source, err)
		}
		addrs = append(addrs, a)
	}
	if len(addrs) == 0 {
		return nil, usageErrorf("%s: no address given", source)
	}
	return addrs, nil
}

// session is one command's link to the cluster: a client, the output format
// and where to write.
type session struct {
	ctx    context.Context
	client *client.Client
	json   bool
	out    io.Writer // results
	errOut io.Writer // progress and notes
}

// open checks the global flags and makes a client. It sends nothing.
func (g *globalFlags) open(cmd *cobra.Command) (*session, error) {
	var asJSON bool
	switch g.output {
	case "table":
	case "json":
		asJSON = true
	default:
		return nil, usageErrorf("-o/--output: %q is not table or json", g.output)
	}
	addrs, err := g.addrs(cmd)
	if err != nil {
		return nil, err
	}
	c, err := client.New(cmd.Context(), client.Options{Addrs: addrs})
	if err != nil {
		return nil, err
	}
	return &session{ctx: cmd.Context(), client: c, json: asJSON, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}, nil
}

func (s *session) close() { _ = s.client.Close() }
