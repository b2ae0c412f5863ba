package server

import (
	"context"
	"net"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc/peer"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Limits bound what one client may ask of a node. A client is its ACL
// token (by id) when it has one, a node by its certificate, and otherwise
// its IP address. Zero fields take the defaults.
type Limits struct {
	// Rate is the sustained requests per second of one client (unary calls
	// and stream starts); Burst how many it may send at once. Nodes are
	// not rate-limited: Raft's traffic rides on a few long streams.
	Rate  float64
	Burst int
	// Streams bounds the streams (watches, log follows, Raft streams and
	// snapshots) one client, node or not, holds open at once.
	Streams int
}

// Default limits: generous for any real client, a wall for a runaway one.
const (
	DefaultRate    = 10000
	DefaultBurst   = 20000
	DefaultStreams = 64
	// maxClients bounds the clients tracked; idle ones are forgotten first.
	maxClients = 10000
)

func (l Limits) withDefaults() Limits {
	if l.Rate <= 0 {
		l.Rate = DefaultRate
	}
	if l.Burst <= 0 {
		l.Burst = DefaultBurst
	}
	if l.Streams <= 0 {
		l.Streams = DefaultStreams
	}
	return l
}

// limiter applies Limits per client: a token bucket for requests and a
// count of open streams.
type limiter struct {
	l   Limits
	now func() time.Time

	mu      sync.Mutex
	clients map[string]*clientUse
}

type clientUse struct {
	tokens  float64
	last    time.Time
	streams int
}

func newLimiter(l Limits) *limiter {
	return &limiter{l: l.withDefaults(), now: time.Now, clients: map[string]*clientUse{}}
}

// use returns key's record, refilling its bucket. Called with mu held.
func (lm *limiter) use(key string) *clientUse {
	now := lm.now()
	u, ok := lm.clients[key]
	if !ok {
		if len(lm.clients) >= maxClients {
			lm.forgetIdle(now)
		}
		u = &clientUse{tokens: float64(lm.l.Burst), last: now}
		lm.clients[key] = u
		return u
	}
	if dt := now.Sub(u.last).Seconds(); dt > 0 {
		u.tokens = min(float64(lm.l.Burst), u.tokens+dt*lm.l.Rate)
		u.last = now
	}
	return u
}

// forgetIdle drops clients with no open stream and a full bucket (they
// would be made afresh the same), or, failing that, every client with no
// open stream.
func (lm *limiter) forgetIdle(now time.Time) {
	full := time.Duration(float64(lm.l.Burst) / lm.l.Rate * float64(time.Second))
	for k, u := range lm.clients {
		if u.streams == 0 && now.Sub(u.last) >= full {
			delete(lm.clients, k)
		}
	}
	if len(lm.clients) >= maxClients {
		for k, u := range lm.clients {
			if u.streams == 0 {
				delete(lm.clients, k)
			}
		}
	}
}

// allow takes one request from key's bucket.
func (lm *limiter) allow(key string) bool {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	u := lm.use(key)
	if u.tokens < 1 {
		return false
	}
	u.tokens--
	return true
}

// open counts a stream of key's, if it may have another; release ends it.
func (lm *limiter) open(key string) (release func(), ok bool) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	u := lm.use(key)
	if u.streams >= lm.l.Streams {
		return nil, false
	}
	u.streams++
	var once sync.Once
	return func() {
		once.Do(func() {
			lm.mu.Lock()
			defer lm.mu.Unlock()
			u.streams--
		})
	}, true
}

// clientKey names the caller for the limits.
func clientKey(ctx context.Context, c caller) string {
	switch {
	case c.node != 0:
		return "node:" + strconv.FormatUint(c.node, 10)
	case c.tokenID != "":
		return "token:" + c.tokenID
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
				// One IPv6 client holds a /64: keyed by it, fresh addresses
				// do not buy fresh buckets.
				return "ip6:" + ip.Mask(net.CIDRMask(64, 128)).String()
			}
			return "ip:" + host
		}
		return "addr:" + p.Addr.String()
	}
	return "unknown"
}

func rateRefusal() error {
	return StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED,
		Message: "too many requests from this client; slow down and retry"})
}

func streamRefusal(max int) error {
	return StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED,
		Message: "this client holds " + strconv.Itoa(max) + " streams open, the most a node allows; close some"})
}
