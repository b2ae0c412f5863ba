package client

import (
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
	// DialOptions are added after the client's own, which ask for plaintext
	// (insecure) transport: pass grpc.WithTransportCredentials to use TLS.
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
