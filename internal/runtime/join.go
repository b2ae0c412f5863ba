package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/pki"
	"github.com/blixard/blixard/internal/server"
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
	reqID := "join-" + hex.EncodeToString(key[:])
	if n.joining != nil {
		// Bound to the node's key: a retry after a lost answer, even from
		// a restarted process, is the same request and gets a certificate.
		reqID = server.JoinRequestID(n.cfg.ID, n.joining.keyID, n.joining.secret.ID)
	}
	req := &apiv1.JoinClusterRequest{
		ClientRequestId: reqID,
		NodeId:          n.cfg.ID,
		Address:         n.addr,
		Role:            n.cfg.Role,
		Capacity:        n.cfg.Capacity,
		Labels:          n.cfg.Labels,
	}
	if n.joining != nil {
		req.Csr = n.joining.csr
	}
	targets := slices.Clone(n.cfg.Join)
	backoff := 200 * time.Millisecond
	failures := 0
	for attempt := 0; ctx.Err() == nil; attempt++ {
		target := targets[attempt%len(targets)]
		resp, err := n.callJoin(ctx, target, req)
		if err == nil {
			if n.joining != nil {
				if err := n.joining.accept(n.sec, n.cfg.ID, resp); err != nil {
					n.log.Error("the cluster's answer to the join is unusable", "err", err)
					n.postWait(func() { n.fatal = fmt.Errorf("join: %w", err) })
					return
				}
				n.log.Info("received the node's certificate", "ca", n.sec.CAFingerprint().String(), "ca_key", len(resp.GetCaKey()) > 0)
			}
			n.log.Info("joined the cluster", "cluster", resp.GetClusterId(), "via", target)
			return
		}
		if n.joining != nil && strings.Contains(err.Error(), pki.ErrFingerprintMismatch.Error()) {
			n.log.Error("the node at the join address is not of the cluster the join token names", "via", target, "err", err)
			n.postWait(func() { n.fatal = fmt.Errorf("join refused: %s does not present the CA the join token pins", target) })
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
			if n.joining != nil {
				// Another key joined as this id: this node has no way to a
				// certificate for it.
				n.log.Error("node id already a member, through another join", "err", e.GetMessage())
				n.postWait(func() {
					n.fatal = fmt.Errorf("join refused: node %d is already a member, joined with another key; remove it and join with a new id", n.cfg.ID)
				})
				return
			}
			n.log.Info("already a member of the cluster")
			return
		case apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
			n.log.Error("the cluster refused to add this node", "err", e.GetMessage())
			n.postWait(func() { n.fatal = errors.New("join refused: " + e.GetMessage()) })
			return
		}
		failures++
		if failures == 1 {
			n.log.Warn("join attempt failed; retrying", "via", target, "err", err)
		} else {
			n.log.Debug("join attempt failed; retrying", "via", target, "attempts", failures, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// callJoin asks target to add this node. A secure node checks, in the
// handshake, that target presents the CA its join token pins before it
// sends anything, and sends the token in the call's metadata.
func (n *Node) callJoin(ctx context.Context, target string, req *apiv1.JoinClusterRequest) (*apiv1.JoinClusterResponse, error) {
	creds := insecure.NewCredentials()
	if n.joining != nil {
		creds = credentials.NewTLS(pki.JoinTLS(n.joining.secret.CA))
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n.joining != nil {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+n.joining.token)
	}
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
		if addr := addrs[next%len(addrs)]; n.removedPer(ctx, addr) {
			n.log.Info("removed from the cluster (a peer reports it); stopping", "peer", addr)
			n.postWait(func() { n.fatal = ErrRemoved })
			return
		}
	}
}

func (n *Node) removedPer(ctx context.Context, addr string) bool {
	creds := insecure.NewCredentials()
	if n.sec != nil {
		creds = n.sec.clientCredentials(func(uint64) error { return nil })
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
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
