package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("client: closed")

// Client talks to a Blixard cluster. See the package documentation for how
// it retries.
type Client struct {
	opts     Options
	dialOpts []grpc.DialOption

	mu sync.Mutex
	// addrs is Options.Addrs followed by addresses learned from NotLeader
	// answers. Invariant: no duplicates; len(addrs) <= len(Options.Addrs) +
	// maxLearnedAddrs; never shrinks, so an index stays valid.
	addrs []string
	// current indexes the address the next attempt goes to.
	// Invariant: 0 <= current < len(addrs).
	current int
	// conns holds the connection to each address dialled so far: those of
	// addrs, and those of nodes dialled for a VM's console (see conn).
	conns  map[string]*grpc.ClientConn
	closed bool
}

// New returns a client for the nodes at opts.Addrs. It dials nothing:
// connections are made on first use, so New fails only on bad options or a
// ctx that is already done.
func New(ctx context.Context, opts Options) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	var dialOpts []grpc.DialOption
	if o.TLS != nil {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(credentials.NewTLS(o.TLS.Clone())))
	} else {
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	if o.Token != "" {
		dialOpts = append(dialOpts, grpc.WithPerRPCCredentials(bearer(o.Token)))
	}
	dialOpts = append(dialOpts, o.DialOptions...)
	return &Client{
		opts:     o,
		dialOpts: dialOpts,
		addrs:    slices.Clone(o.Addrs),
		conns:    make(map[string]*grpc.ClientConn),
	}, nil
}

// Close closes every connection. Calls in flight fail; later calls return
// ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	for _, addr := range slices.Sorted(maps.Keys(c.conns)) {
		errs = append(errs, c.conns[addr].Close())
	}
	c.conns = nil
	return errors.Join(errs...)
}

// pick returns the address the next attempt goes to and its connection,
// dialling it if need be.
func (c *Client) pick() (string, *grpc.ClientConn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return "", nil, ErrClosed
	}
	addr := c.addrs[c.current]
	if cc, ok := c.conns[addr]; ok {
		return addr, cc, nil
	}
	// NewClient only parses the target and sets up the channel; it connects
	// in the background on the first RPC.
	cc, err := grpc.NewClient(addr, c.dialOpts...)
	if err != nil {
		return "", nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return addr, cc, nil
}

// skip moves the next attempt on from addr to the following address, unless
// another call has already moved it.
func (c *Client) skip(addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addrs[c.current] == addr {
		c.current = (c.current + 1) % len(c.addrs)
	}
}

// follow points the next attempt at the leader's address, learning it if it
// is new. It reports false if the address is new and no more may be learned.
func (c *Client) follow(leader string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.addrs, leader); i >= 0 {
		c.current = i
		return true
	}
	if len(c.addrs) >= len(c.opts.Addrs)+maxLearnedAddrs {
		return false
	}
	c.addrs = append(c.addrs, leader)
	c.current = len(c.addrs) - 1
	return true
}

// conn returns a connection to addr, which need not be one of the client's
// addresses (a node that runs a VM), dialling it if need be.
func (c *Client) conn(addr string) (*grpc.ClientConn, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	if cc, ok := c.conns[addr]; ok {
		return cc, nil
	}
	cc, err := grpc.NewClient(addr, c.dialOpts...)
	if err != nil {
		return nil, fmt.Errorf("client: dial %s: %w", addr, err)
	}
	c.conns[addr] = cc
	return cc, nil
}
