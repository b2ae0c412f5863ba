package sim

import (
	"fmt"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// ClientOptions shape a simulated client. Zero fields take the defaults.
type ClientOptions struct {
	// Target is the node each operation is first sent to; 0 picks a random
	// node per operation.
	Target uint64
	// AttemptTimeout is how long one attempt waits for an answer (default 1 s).
	AttemptTimeout time.Duration
	// MaxAttempts bounds the attempts of one operation (default 30).
	MaxAttempts int
	// Backoff is the wait before retrying after UNAVAILABLE or an unknown
	// outcome (default 50 ms).
	Backoff time.Duration
	// Raw makes the first answer end the operation, whatever it says: no
	// following of hints, no retries (to observe a node's own answers).
	Raw bool
	// NoKey sends writes without a client request id, as a broken client
	// would (to see nodes refuse them).
	NoKey bool
}

// Client is a simulated API client. It runs its operations one at a time,
// sends the same api/v1 request messages the gRPC services carry, follows
// NotLeader hints, retries a write with the same client request id, and
// records every operation in the world's history.
type Client struct {
	w    *World
	id   uint64
	opts ClientOptions

	queue   []*apiv1.Request
	op      *Op
	attempt uint64 // id of the attempt in flight; answers to others are stale
	target  uint64
	nextKey int
}

// clientIDBase keeps client ids apart from node ids on the network.
const clientIDBase = 1_000_000

// NewClient adds a client to the world.
func (w *World) NewClient(opts ClientOptions) *Client {
	if opts.AttemptTimeout == 0 {
		opts.AttemptTimeout = time.Second
	}
	if opts.MaxAttempts == 0 {
		opts.MaxAttempts = 30
	}
	if opts.Backoff == 0 {
		opts.Backoff = 50 * time.Millisecond
	}
	c := &Client{w: w, id: clientIDBase + uint64(len(w.clients)) + 1, opts: opts}
	w.clients = append(w.clients, c)
	return c
}

func (w *World) client(id uint64) *Client {
	i := int(id - clientIDBase - 1)
	if id <= clientIDBase || i >= len(w.clients) {
		return nil
	}
	return w.clients[i]
}

// Clients are the world's clients, in the order they were made.
func (w *World) Clients() []*Client { return append([]*Client(nil), w.clients...) }

// ClientsIdle reports whether every client has finished all its operations.
func (w *World) ClientsIdle() bool {
	for _, c := range w.clients {
		if !c.Idle() {
			return false
		}
	}
	return true
}

// ID is the client's network id.
func (c *Client) ID() uint64 { return c.id }

// Idle reports whether the client has nothing queued or in flight.
func (c *Client) Idle() bool { return c.op == nil && len(c.queue) == 0 }

// Do queues a request. A write without a client request id gets one, unique
// to this client and operation, that all its retries reuse.
func (c *Client) Do(req *apiv1.Request) {
	if IsWrite(req) && ClientRequestID(req) == "" && !c.opts.NoKey {
		c.nextKey++
		setClientRequestID(req, fmt.Sprintf("c%d-%d", c.id-clientIDBase, c.nextKey))
	}
	c.queue = append(c.queue, req)
	if c.op == nil {
		c.next()
	}
}

func (c *Client) next() {
	if len(c.queue) == 0 {
		c.op = nil
		return
	}
	req := c.queue[0]
	c.queue = c.queue[1:]
	c.op = &Op{Client: c.id, Key: ClientRequestID(req), Req: req, Write: IsWrite(req), Call: c.w.now}
	c.target = c.opts.Target
	if c.target == 0 {
		c.target = c.randomNode()
	}
	c.send()
}

func (c *Client) randomNode() uint64 {
	return c.w.ids[c.w.rng.IntN(len(c.w.ids))]
}

// send makes one attempt of the current operation.
func (c *Client) send() {
	if c.op.Attempts >= c.opts.MaxAttempts {
		c.finish(nil)
		return
	}
	c.op.Attempts++
	c.w.seq++
	c.attempt = c.w.seq
	attempt := c.attempt
	c.w.net.sendRequest(c, c.target, attempt, c.op.Req)
	c.w.at(c.w.now+c.opts.AttemptTimeout, func() {
		if c.op != nil && c.attempt == attempt {
			c.w.note("client %d: attempt %d timed out", c.id, attempt)
			c.target = c.randomNode()
			c.send()
		}
	})
}

func (c *Client) retryLater(target uint64) {
	attempt := c.attempt
	c.w.at(c.w.now+c.opts.Backoff, func() {
		if c.op != nil && c.attempt == attempt {
			c.target = target
			c.send()
		}
	})
}

// onResponse handles an answer from node from to attempt.
func (c *Client) onResponse(from uint64, attempt uint64, resp *apiv1.Response) {
	if c.op == nil || attempt != c.attempt {
		return // an answer to an attempt given up on
	}
	if c.opts.Raw {
		c.finish(resp)
		return
	}
	e := resp.GetError()
	switch e.GetCode() {
	case apiv1.ErrorCode_ERROR_CODE_NOT_LEADER:
		c.attempt = 0
		if l := e.GetLeaderId(); l != 0 {
			if _, ok := c.w.nodes[l]; ok {
				c.target = l
				c.send()
				return
			}
		}
		c.attempt = attempt
		c.retryLater(c.randomNode())
	case apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN:
		c.retryLater(c.randomNode())
	default:
		c.finish(resp)
	}
}

// finish records the operation's end: resp is the definite answer, or nil
// when the attempts ran out.
func (c *Client) finish(resp *apiv1.Response) {
	op := c.op
	op.Return = c.w.now
	op.Resp = resp
	unknown := resp.GetError().GetCode() == apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN
	if op.Write && unknown {
		op.Indeterminate = true // a Raw client's last word
	}
	if resp == nil {
		if op.Write {
			op.Indeterminate = true
		}
		c.w.note("client %d: gave up on %q after %d attempts", c.id, op.Key, op.Attempts)
	}
	c.w.history.add(op)
	if resp != nil && op.Write && resp.GetError() == nil {
		c.w.onAck(op)
	}
	c.attempt = 0
	c.next()
}

// IsWrite reports whether req changes the state.
func IsWrite(req *apiv1.Request) bool {
	switch req.GetKind().(type) {
	case *apiv1.Request_CreateVm, *apiv1.Request_StartVm, *apiv1.Request_StopVm, *apiv1.Request_DeleteVm,
		*apiv1.Request_SubmitTask, *apiv1.Request_CancelTask, *apiv1.Request_JoinCluster, *apiv1.Request_LeaveCluster,
		*apiv1.Request_DrainNode:
		return true
	}
	return false
}

// ClientRequestID is a write's idempotency key ("" for reads).
func ClientRequestID(req *apiv1.Request) string {
	switch k := req.GetKind().(type) {
	case *apiv1.Request_CreateVm:
		return k.CreateVm.GetClientRequestId()
	case *apiv1.Request_StartVm:
		return k.StartVm.GetClientRequestId()
	case *apiv1.Request_StopVm:
		return k.StopVm.GetClientRequestId()
	case *apiv1.Request_DeleteVm:
		return k.DeleteVm.GetClientRequestId()
	case *apiv1.Request_SubmitTask:
		return k.SubmitTask.GetClientRequestId()
	case *apiv1.Request_CancelTask:
		return k.CancelTask.GetClientRequestId()
	case *apiv1.Request_JoinCluster:
		return k.JoinCluster.GetClientRequestId()
	case *apiv1.Request_LeaveCluster:
		return k.LeaveCluster.GetClientRequestId()
	case *apiv1.Request_DrainNode:
		return k.DrainNode.GetClientRequestId()
	}
	return ""
}

func setClientRequestID(req *apiv1.Request, key string) {
	switch k := req.GetKind().(type) {
	case *apiv1.Request_CreateVm:
		k.CreateVm.ClientRequestId = key
	case *apiv1.Request_StartVm:
		k.StartVm.ClientRequestId = key
	case *apiv1.Request_StopVm:
		k.StopVm.ClientRequestId = key
	case *apiv1.Request_DeleteVm:
		k.DeleteVm.ClientRequestId = key
	case *apiv1.Request_SubmitTask:
		k.SubmitTask.ClientRequestId = key
	case *apiv1.Request_CancelTask:
		k.CancelTask.ClientRequestId = key
	case *apiv1.Request_JoinCluster:
		k.JoinCluster.ClientRequestId = key
	case *apiv1.Request_LeaveCluster:
		k.LeaveCluster.ClientRequestId = key
	case *apiv1.Request_DrainNode:
		k.DrainNode.ClientRequestId = key
	}
}
