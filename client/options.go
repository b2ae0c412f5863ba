package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"google.golang.org/grpc"
)

// Defaults for the zero values of Options.
const (
	DefaultTimeout        = 5 * time.Second
	DefaultMaxAttempts    = 10
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 2 * time.Second
)

// maxLearnedAddrs bounds the addresses a client adds to Options.Addrs from
// NotLeader answers (and so the connections it holds). A cluster names only
// its own members; the bound protects against a misbehaving server.
const maxLearnedAddrs = 64

// Options configure a Client. Zero values take the defaults above.
type Options struct {
	// Addrs lists nodes as host:port. At least one is required; any node
	// will do, the client finds the leader itself.
	Addrs []string
	// TLS, if set, secures every connection: for a Blixard cluster, a
	// TLS 1.3 client config that verifies the nodes against the cluster's
	// CA (what the blixard command line builds from --ca). Nil dials in
	// plaintext, as a node started with --insecure serves. The client
	// uses a copy; later changes to the config have no effect.
	TLS *tls.Config
	// Token is an ACL token ("bxa.<id>.<secret>") sent with every call,
	// unary and streaming, as the gRPC metadata "authorization: Bearer
	// <token>". It is never sent in plaintext: New refuses a Token without
	// TLS. Empty sends no credentials; a secure node then answers
	// Unauthenticated to all but its public calls.
	Token string
	// DialOptions are added after the client's own (the transport
	// credentials TLS asks for, and Token's per-call credentials), so an
	// option here overrides them.
	DialOptions []grpc.DialOption
	// Timeout bounds one attempt (default 5s). The whole call is bounded by
	// its context.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call, redirects included
	// (default 10).
	MaxAttempts int
	// BackoffInitial is the pause after the first retryable failure (default
	// 100ms); each further pause doubles, up to BackoffMax (default 2s). A
	// pause is drawn at random between half and all of its nominal length.
	BackoffInitial time.Duration
	BackoffMax     time.Duration
}

// withDefaults checks o and fills in its zero values.
func (o Options) withDefaults() (Options, error) {
	if len(o.Addrs) == 0 {
		return o, errors.New("client: no address given")
	}
	seen := make(map[string]bool, len(o.Addrs))
	addrs := make([]string, 0, len(o.Addrs))
	for _, a := range o.Addrs {
		if err := CheckAddr(a); err != nil {
			return o, fmt.Errorf("client: %w", err)
		}
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	o.Addrs = addrs
	if o.Token != "" {
		if err := CheckToken(o.Token); err != nil {
			return o, fmt.Errorf("client: %w", err)
		}
		if o.TLS == nil {
			return o, errors.New("client: a token needs TLS (Options.TLS): it is never sent in plaintext")
		}
	}
	if o.Timeout < 0 || o.MaxAttempts < 0 || o.BackoffInitial < 0 || o.BackoffMax < 0 {
		return o, errors.New("client: Timeout, MaxAttempts and the backoff bounds must not be negative")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BackoffInitial == 0 {
		o.BackoffInitial = DefaultBackoffInitial
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = DefaultBackoffMax
	}
	if o.BackoffMax < o.BackoffInitial {
		o.BackoffMax = o.BackoffInitial
	}
	return o, nil
}

// CheckAddr reports whether addr is a node address the client can dial:
// host:port with a non-empty host and a port from 1 to 65535 ("10.0.0.1:7001",
// "node-1:7001", "[::1]:7001").
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q is not host:port", addr)
	}
	if host == "" {
		return fmt.Errorf("address %q has no host", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("address %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// maxTokenBytes bounds a token's length, as the cluster does.
const maxTokenBytes = 256

// CheckToken reports whether token can be sent as credentials: 1 to 256
// printable ASCII characters with no space (a token read from a file with
// its newline left on fails here). It does not say whether the cluster
// knows the token.
func CheckToken(token string) error {
	if token == "" {
		return errors.New("token is empty")
	}
	if len(token) > maxTokenBytes {
		return fmt.Errorf("token is %d bytes long, more than the %d a token may be", len(token), maxTokenBytes)
	}
	for i := 0; i < len(token); i++ {
		if c := token[i]; c <= ' ' || c > '~' {
			// The character itself is not shown: it is part of a secret.
			return fmt.Errorf("token has a character a token never holds, at byte %d (a space, a newline or non-ASCII)", i)
		}
	}
	return nil
}
