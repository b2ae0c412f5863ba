package vmm

import (
	"context"
	"sync"
)

// eventQueue delivers statuses to one reader without ever blocking the
// writers. It keeps at most one pending status per VM, the latest: a reader
// that falls behind skips a VM's intermediate statuses but always gets its
// latest one, and the queue holds at most one status per VM known.
// Statuses go out in the order their VMs first became pending.
type eventQueue struct {
	mu sync.Mutex
	// pending holds the latest undelivered status of each VM in order.
	// Invariant: the names in order are exactly the keys of pending.
	pending map[string]Status
	order   []string
	// wake has room for one signal: something was pushed.
	wake chan struct{}
	out  chan Status
}

func newEventQueue() *eventQueue {
	return &eventQueue{pending: map[string]Status{}, wake: make(chan struct{}, 1), out: make(chan Status)}
}

// push queues st, replacing an undelivered status of the same VM.
func (q *eventQueue) push(st Status) {
	q.mu.Lock()
	if _, ok := q.pending[st.Name]; !ok {
		q.order = append(q.order, st.Name)
	}
	q.pending[st.Name] = st
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run delivers statuses on out until ctx ends, then closes out.
func (q *eventQueue) run(ctx context.Context) {
	defer close(q.out)
	for {
		q.mu.Lock()
		if len(q.order) == 0 {
			q.mu.Unlock()
			select {
			case <-q.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		name := q.order[0]
		st := q.pending[name]
		q.order = q.order[1:]
		delete(q.pending, name)
		q.mu.Unlock()
		select {
		case q.out <- st:
		case <-ctx.Done():
			return
		}
	}
}
