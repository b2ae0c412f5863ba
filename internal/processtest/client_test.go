package processtest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
)

// follower returns a node of c that is neither the leader nor stopped.
func follower(t *testing.T, c *cluster) (*node, *apiv1.GetClusterStatusResponse) {
	t.Helper()
	st, leader := c.mustLeader()
	for _, n := range c.byID() {
		if n != leader && n.running() {
			return n, st
		}
	}
	t.Fatal("no follower")
	return nil, nil
}

// TestWriteToFollowerFollowsRedirect: a follower answers a write with
// NotLeader and the leader's address; a client that knows only the
// follower follows it and the write succeeds.
func TestWriteToFollowerFollowsRedirect(t *testing.T) {
	c := startCluster(t, 3)
	f, st := follower(t, c)
	leader := c.node(st.GetLeaderId())
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	req := &apiv1.CreateVmRequest{Name: "redirected", Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}}

	// One attempt only: the follower's own answer.
	opts := c.clientOptions()
	opts.Addrs, opts.MaxAttempts = []string{f.addr}, 1
	once, err := client.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer once.Close()
	_, err = once.CreateVm(ctx, req)
	e := client.ErrorOf(err)
	if e.GetCode() != apiv1.ErrorCode_ERROR_CODE_NOT_LEADER || e.GetLeaderId() != leader.id || e.GetLeaderAddress() != leader.addr {
		t.Fatalf("follower %d answered %v; want NotLeader naming leader %d at %s", f.id, err, leader.id, leader.addr)
	}

	// A client that knows only the follower follows the redirect.
	cl := c.client(f.addr)
	resp, err := cl.CreateVm(ctx, req)
	if err != nil {
		t.Fatalf("CreateVm through follower %d: %v", f.id, err)
	}
	if resp.GetVm().GetName() != "redirected" {
		t.Fatalf("CreateVm returned %v", resp.GetVm())
	}
	got, err := c.client(leader.addr).GetVm(ctx, &apiv1.GetVmRequest{Name: "redirected"})
	if err != nil {
		t.Fatalf("GetVm on the leader: %v", err)
	}
	if sp := got.GetVm().GetSpec(); sp.GetVcpus() != 1 || sp.GetMemoryMib() != 128 {
		t.Fatalf("the leader holds spec %v, want 1 vCPU and 128 MiB", sp)
	}
	// The follower applies it too.
	waitFor(t, callTimeout, "the VM on the follower", func() (bool, string) {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := f.staleClient().GetVm(rctx, &apiv1.GetVmRequest{Name: "redirected", Stale: true})
		return err == nil, errString(err)
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestRetriedCreateIsAppliedOnce: a create sent twice with the same client
// request id, the second time to another node, gets the same response
// twice and makes one VM.
func TestRetriedCreateIsAppliedOnce(t *testing.T) {
	c := startCluster(t, 3)
	f, st := follower(t, c)
	leader := c.node(st.GetLeaderId())
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	req := &apiv1.CreateVmRequest{
		ClientRequestId: client.NewRequestID(),
		Name:            "once",
		Spec:            &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128},
	}
	first, err := c.client(leader.addr).CreateVm(ctx, req)
	if err != nil {
		t.Fatalf("first CreateVm (to leader %d): %v", leader.id, err)
	}
	second, err := c.client(f.addr).CreateVm(ctx, req)
	if err != nil {
		t.Fatalf("retried CreateVm (to follower %d): %v", f.id, err)
	}
	if !proto.Equal(first, second) {
		t.Fatalf("the retry answered differently:\nfirst:  %v\nsecond: %v", first, second)
	}
	// The same create under a new id is a second, refused, create: so the
	// retry above was answered from the stored response.
	fresh := proto.CloneOf(req)
	fresh.ClientRequestId = client.NewRequestID()
	_, err = c.client(f.addr).CreateVm(ctx, fresh)
	if code := client.ErrorOf(err).GetCode(); code != apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS {
		t.Fatalf("a create of the same name under a new request id answered %v, want AlreadyExists", err)
	}
	list, err := c.client().ListVms(ctx, &apiv1.ListVmsRequest{})
	if err != nil {
		t.Fatalf("ListVms: %v", err)
	}
	if len(list.GetVms()) != 1 || list.GetVms()[0].GetName() != "once" {
		t.Fatalf("ListVms = %v, want the one VM \"once\"", list.GetVms())
	}
}
