package vmm

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// A reader that does not read never blocks a writer; when it reads, it
// gets each VM's latest status, in the order the VMs became pending.
func TestEventQueueCoalesces(t *testing.T) {
	q := newEventQueue()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go q.run(ctx)
	// The runner takes a's first status and waits to send it.
	q.push(Status{Name: "a", State: StateStarting})
	taken := time.Now().Add(5 * time.Second)
	for {
		q.mu.Lock()
		waiting := len(q.order)
		q.mu.Unlock()
		if waiting == 0 {
			break
		}
		if time.Now().After(taken) {
			t.Fatal("the runner never took the first status")
		}
		runtime.Gosched()
	}
	pushed := make(chan struct{})
	go func() {
		for range 1000 {
			q.push(Status{Name: "b", State: StateStarting})
			q.push(Status{Name: "a", State: StateRunning})
		}
		q.push(Status{Name: "b", State: StateStopped})
		close(pushed)
	}()
	select {
	case <-pushed:
	case <-time.After(5 * time.Second):
		t.Fatal("push blocked on a reader that does not read")
	}
	var got []Status
	timeout := time.After(5 * time.Second)
	for len(got) < 3 {
		select {
		case st := <-q.out:
			got = append(got, st)
		case <-timeout:
			t.Fatalf("got %v, want 3 statuses", got)
		}
	}
	if got[0].Name != "a" || got[0].State != StateStarting ||
		got[1].Name != "b" || got[1].State != StateStopped ||
		got[2].Name != "a" || got[2].State != StateRunning {
		t.Fatalf("got %v", got)
	}
	select {
	case st := <-q.out:
		t.Fatalf("an extra status %v", st)
	case <-time.After(20 * time.Millisecond):
	}
	cancel()
	if _, ok := <-q.out; ok {
		t.Fatal("out not closed after the context ended")
	}
}
