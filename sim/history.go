package sim

import (
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Op is one client operation as its client saw it, from its first send
// (Call) to its definite answer or to giving up (Return).
type Op struct {
	Client uint64
	// Key is the write's client request id; "" for reads.
	Key   string
	Req   *apiv1.Request
	Write bool
	// Resp is the definite answer: a success, or an error that says the
	// request was refused. Nil when the client gave up.
	Resp         *apiv1.Response
	Call, Return time.Duration
	Attempts     int
	// Indeterminate marks a write that got no definite answer (none, or
	// OUTCOME_UNKNOWN as a Raw client's last word): it may or may not have
	// taken effect.
	Indeterminate bool
}

// Acked reports whether the operation was a write acknowledged as done.
func (o *Op) Acked() bool { return o.Write && o.Resp != nil && o.Resp.GetError() == nil }

// History is the operations of every client, in the order they ended.
type History struct {
	ops []*Op
}

func newHistory() *History { return &History{} }

func (h *History) add(op *Op) { h.ops = append(h.ops, op) }

// Ops returns the operations, in the order they ended.
func (h *History) Ops() []*Op { return append([]*Op(nil), h.ops...) }

// Summary counts the operations: acknowledged writes, writes refused with
// a definite error, indeterminate writes, answered reads and reads that got
// no answer.
func (h *History) Summary() (acked, refused, indeterminate, reads, unansweredReads int) {
	for _, op := range h.ops {
		switch {
		case op.Write && op.Indeterminate:
			indeterminate++
		case op.Acked():
			acked++
		case op.Write:
			refused++
		case op.Resp != nil:
			reads++
		default:
			unansweredReads++
		}
	}
	return
}
