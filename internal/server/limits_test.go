package server

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

func TestLimiterRateAndBurst(t *testing.T) {
	now := time.Unix(1000, 0)
	lm := newLimiter(Limits{Rate: 2, Burst: 3, Streams: 2})
	lm.now = func() time.Time { return now }
	take := func(key string, n int) (got int) {
		for range n {
			if lm.allow(key) {
				got++
			}
		}
		return got
	}
	if got := take("a", 10); got != 3 {
		t.Fatalf("a burst of 10 let %d through, want the burst of 3", got)
	}
	if got := take("b", 1); got != 1 {
		t.Fatalf("another client was refused: clients share a bucket")
	}
	now = now.Add(time.Second) // refills 2
	if got := take("a", 10); got != 2 {
		t.Fatalf("after 1 s at 2/s, %d let through, want 2", got)
	}
	now = now.Add(time.Hour) // refills, but only up to the burst
	if got := take("a", 10); got != 3 {
		t.Fatalf("after an hour, %d let through, want the burst of 3", got)
	}
}

func TestLimiterStreams(t *testing.T) {
	lm := newLimiter(Limits{Streams: 2})
	r1, ok1 := lm.open("a")
	_, ok2 := lm.open("a")
	_, ok3 := lm.open("a")
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("opens = %v %v %v, want true true false", ok1, ok2, ok3)
	}
	if _, ok := lm.open("b"); !ok {
		t.Fatal("another client's stream was refused")
	}
	r1()
	r1() // a second release is a no-op
	if _, ok := lm.open("a"); !ok {
		t.Fatal("a stream was refused after one was released")
	}
	if _, ok := lm.open("a"); ok {
		t.Fatal("a double release freed two slots")
	}
}

func TestLimiterForgetsIdleClients(t *testing.T) {
	now := time.Unix(1000, 0)
	lm := newLimiter(Limits{Rate: 1000, Burst: 1, Streams: 1})
	lm.now = func() time.Time { return now }
	held, _ := lm.open("held")
	defer held()
	for i := range maxClients + 10 {
		lm.allow("ip:" + string(rune('a'+i%26)) + time.Duration(i).String())
		now = now.Add(time.Millisecond)
	}
	lm.mu.Lock()
	n := len(lm.clients)
	_, kept := lm.clients["held"]
	lm.mu.Unlock()
	if n > maxClients {
		t.Fatalf("%d clients tracked, want at most %d", n, maxClients)
	}
	if !kept {
		t.Fatal("a client with an open stream was forgotten")
	}
}

// TestRateLimitPerToken: over gRPC, a client past its burst is refused
// with ResourceExhausted and the backend does not see the call; another
// token is not affected.
func TestRateLimitPerToken(t *testing.T) {
	sec := newFakeSecurity()
	a, b := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_VIEWER), sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_VIEWER)
	back := &authBackend{}
	// A rate so low that no token comes back during the test.
	conn := dialWith(t, serveLimited(t, back, sec, nil, Limits{Rate: 1e-9, Burst: 2}), nil)
	vms := apiv1grpc.NewVmServiceClient(conn)
	var codesSeen []codes.Code
	for range 3 {
		_, err := vms.ListVms(bearerCtx(a), &apiv1.ListVmsRequest{})
		codesSeen = append(codesSeen, status.Code(err))
	}
	// The test backend answers ListVms with InvalidArgument: the call got
	// through the guard and the limit.
	if want := []codes.Code{codes.InvalidArgument, codes.InvalidArgument, codes.ResourceExhausted}; !slices.Equal(codesSeen, want) {
		t.Fatalf("codes = %v, want %v", codesSeen, want)
	}
	if n := len(back.requests()); n != 2 {
		t.Fatalf("the backend saw %d requests, want 2", n)
	}
	if _, err := vms.ListVms(bearerCtx(b), &apiv1.ListVmsRequest{}); status.Code(err) == codes.ResourceExhausted {
		t.Fatalf("another token was limited: %v", err)
	}
}
