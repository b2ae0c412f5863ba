package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// joinLoop asks the cluster, through the Join addresses, to add this node,
// following the leader hint of a NotLeader answer, until it is added or ctx
// ends. One client request id serves every attempt, so a retry after an
// unknown outcome cannot add the node twice.
func (n *Node) joinLoop(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-n.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	var key [8]byte
	_, _ = rand.Read(key[:])
	req := &apiv1.JoinClusterRequest{
		ClientRequestId: "join-" + hex.EncodeToString(key[:]),
		NodeId:          n.cfg.ID,
		Address:         n.addr,
		Role:            n.cfg.Role,
		Capacity:        n.cfg.Capacity,
		Labels:          n.cfg.Labels,
	}
	targets := slices.Clone(n.cfg.Join)
	backoff := 200 * time.Millisecond
	for attempt := 0; ctx.Err() == nil; attempt++ {
		target := targets[attempt%len(targets)]
		resp, err := n.callJoin(ctx, target, req)
		if err == nil {
			n.log.Info("joined the cluster", "cluster", resp.GetClusterId(), "via", target)
			return
		}
		e := apiErrorOf(err)
		switch e.GetCode() {
		case apiv1.ErrorCode_ERROR_CODE_NOT_LEADER:
			if a := e.GetLeaderAddress(); a != "" {
				targets = append([]string{a}, n.cfg.Join...)
				attempt = -1
				continue
			}
		case apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:
			n.log.Info("already a member of the cluster")
			return
		case apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION:
			n.log.Error("the cluster refused to add this node", "err", e.GetMessage())
			n.postWait(func() { n.fatal = errors.New("join refused: " + e.GetMessage()) })
			return
		}
		n.log.Info("join attempt failed; retrying", "via", target, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (n *Node) callJoin(ctx context.Context, target string, req *apiv1.JoinClusterRequest) (*apiv1.JoinClusterResponse, error) {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return apiv1grpc.NewClusterServiceClient(conn).JoinCluster(ctx, req)
}

// apiErrorOf extracts the core error a status carries.
func apiErrorOf(err error) *apiv1.Error {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	for _, d := range st.Details() {
		if e, ok := d.(*apiv1.Error); ok {
			return e
		}
	}
	return nil
}

// removalWatch asks its peers, every few seconds, whether the cluster
// removed this node: a removed node may never receive the entry that
// removed it, since the leader stops sending to it. Peers' answers are
// stale reads of their own state; one is asked per look.
func (n *Node) removalWatch(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	next := 0
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.stopped:
			return
		case <-t.C:
		}
		// Every look, not only when leaderless: a removed learner may keep
		// believing in its old leader for good.
		addrs := n.peerAddrs()
		if len(addrs) == 0 {
			continue
		}
		next++
		if n.removedPer(ctx, addrs[next%len(addrs)]) {
			n.postWait(func() { n.fatal = ErrRemoved })
			return
		}
	}
}

func (n *Node) removedPer(ctx context.Context, addr string) bool {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := apiv1grpc.NewClusterServiceClient(conn).GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{Stale: true})
	if err != nil {
		return false
	}
	return slices.Contains(st.GetCluster().GetMembership().GetRemoved(), n.cfg.ID)
}
