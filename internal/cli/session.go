package cli

import (
	"context"
	"crypto/tls"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/internal/pki"
)

const (
	defaultAddr = "127.0.0.1:7001"
	addrEnv     = "BLIXARD_ADDR"
	tokenEnv    = "BLIXARD_TOKEN"
	caEnv       = "BLIXARD_CA"
	insecureEnv = "BLIXARD_INSECURE"
	// devCAFile is the CA a client uses when neither --ca nor $BLIXARD_CA
	// names one and the file exists: where "blixard dev" run from the same
	// directory with its default --data-dir copies its cluster's CA.
	devCAFile = ".blixard-dev/ca.crt"
)

// globalFlags are the root's persistent flags, read by every command that
// talks to a cluster.
type globalFlags struct {
	addr     string
	output   string
	token    string
	ca       string
	insecure bool
	// quiet hides progress lines; commands without globalFlags (dev,
	// image build) read it with quietFlag.
	quiet bool
}

func (g *globalFlags) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.addr, "addr", defaultAddr,
		"comma-separated `host:port` list of cluster nodes to contact, any will do (overrides $"+addrEnv+")")
	f.StringVarP(&g.output, "output", "o", "table", "output `format`: table or json (protojson, snake_case names)")
	f.StringVar(&g.token, "token", "", "ACL `token` sent with every request (overrides $"+tokenEnv+")")
	f.StringVar(&g.ca, "ca", "", "PEM `file` of the cluster CA that nodes' certificates must chain to (overrides $"+caEnv+"; default ./"+devCAFile+" if it exists)")
	f.BoolVar(&g.insecure, "insecure", false, "talk plaintext without a token, to nodes started with --insecure (overrides $"+insecureEnv+"=1)")
	f.BoolVarP(&g.quiet, "quiet", "q", false, "show no progress lines on stderr while a command waits (--wait, image build, dev); results and errors still print")
}

// addrs returns the node addresses: --addr if given, else $BLIXARD_ADDR if
// set, else the default.
func (g *globalFlags) addrs(cmd *cobra.Command) ([]string, error) {
	value, source := g.addr, "--addr"
	if !changed(cmd, "addr") {
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

// security returns how to reach the cluster: the TLS config and token of
// a secure cluster, or nil and "" with --insecure (else
// $BLIXARD_INSECURE=1 or true), where any token given is not sent. A
// secure cluster needs its CA: --ca, else $BLIXARD_CA, else ./.blixard-dev/ca.crt
// if that exists. The token (--token, else $BLIXARD_TOKEN) may be empty:
// the cluster then answers Unauthenticated.
func (g *globalFlags) security(cmd *cobra.Command) (*tls.Config, string, error) {
	insecure := g.insecure
	if !changed(cmd, "insecure") {
		if env := os.Getenv(insecureEnv); env != "" {
			v, err := strconv.ParseBool(env)
			if err != nil {
				return nil, "", usageErrorf("%s: %q is not 1, true, 0 or false", insecureEnv, env)
			}
			insecure = v
		}
	}
	if insecure {
		return nil, "", nil
	}
	path, source := g.ca, "--ca"
	if !changed(cmd, "ca") {
		path, source = os.Getenv(caEnv), caEnv
		if path == "" {
			if st, err := os.Stat(devCAFile); err == nil && st.Mode().IsRegular() {
				path, source = devCAFile, devCAFile
			}
		}
	}
	if path == "" {
		return nil, "", usageErrorf("no cluster CA: pass --ca FILE, set %s, or --insecure for a node started with --insecure", caEnv)
	}
	bundle, err := pki.LoadBundleFile(path)
	if err != nil {
		return nil, "", usageErrorf("%s: %v", source, err)
	}
	token, source := g.token, "--token"
	if !changed(cmd, "token") {
		token, source = os.Getenv(tokenEnv), tokenEnv
	}
	token = strings.TrimSpace(token)
	if token != "" {
		if err := client.CheckToken(token); err != nil {
			return nil, "", usageErrorf("%s: %v", source, err)
		}
	}
	return pki.ClientOnlyTLS(bundle.Pool()), token, nil
}

// changed reports whether the flag name was given on cmd's command line.
func changed(cmd *cobra.Command, name string) bool {
	f := cmd.Flag(name)
	return f != nil && f.Changed
}

// session is one command's link to the cluster: a client, the output format
// and where to write.
type session struct {
	ctx    context.Context
	client *client.Client
	json   bool
	out    io.Writer // results
	errOut io.Writer // progress and notes
	// progress shows the waits of --wait on errOut.
	progress progressConfig
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
	tlsConfig, token, err := g.security(cmd)
	if err != nil {
		return nil, err
	}
	c, err := client.New(cmd.Context(), client.Options{Addrs: addrs, TLS: tlsConfig, Token: token})
	if err != nil {
		return nil, err
	}
	return &session{ctx: cmd.Context(), client: c, json: asJSON, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr(),
		progress: progressFor(cmd)}, nil
}

func (s *session) close() { _ = s.client.Close() }
