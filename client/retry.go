package client

import (
	"context"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// verdict is what a call does after a failed attempt.
type verdict int

const (
	giveUp   verdict = iota // return the error to the caller
	redirect                // send the request to the leader at once
	backOff                 // pause, then try the next address
)

// judge classifies the error of one attempt whose call context is still
// live. For a redirect it also returns the leader's address.
func judge(err error) (verdict, string) {
	st, ok := status.FromError(err)
	if !ok {
		return giveUp, ""
	}
	switch st.Code() {
	case codes.Unauthenticated, codes.PermissionDenied:
		// The same credentials get the same answer from every node, and
		// retrying a refused token only hammers the cluster: give up
		// whatever detail the status carries.
		return giveUp, ""
	}
	if e := detailOf(st); e != nil {
		switch e.GetCode() {
		case apiv1.ErrorCode_ERROR_CODE_NOT_LEADER:
			if e.GetLeaderAddress() != "" && CheckAddr(e.GetLeaderAddress()) == nil {
				return redirect, e.GetLeaderAddress()
			}
			// A leader without a known address: wait for the cluster to
			// settle, asking elsewhere meanwhile.
			return backOff, ""
		case apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN:
			return backOff, ""
		}
	}
	switch st.Code() {
	case codes.Unavailable:
		// No leader, a dropped proposal, an outcome unknown, or no
		// connection at all: a write keeps its id, so retrying is safe.
		return backOff, ""
	case codes.DeadlineExceeded:
		// The attempt's own timeout (the call's context is still live): the
		// node did not answer in time.
		return backOff, ""
	}
	return giveUp, ""
}

// call runs one logical call: attempts of rpc against the cluster until one
// succeeds, one fails for good, ctx ends or Options.MaxAttempts have failed
// (the loop's bound).
func call[Resp any](ctx context.Context, c *Client, rpc func(context.Context, grpc.ClientConnInterface) (Resp, error)) (Resp, error) {
	var zero Resp
	var last error      // error of the last failed attempt, if any
	var lastAddr string // where it failed
	pause := c.opts.BackoffInitial
	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return zero, ctxError(err, attempt-1, lastAddr, last)
		}
		addr, cc, err := c.pick()
		if err != nil {
			return zero, err
		}
		actx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
		resp, err := rpc(actx, cc)
		cancel()
		if err == nil {
			return resp, nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return zero, ctxError(cerr, attempt-1, lastAddr, last)
		}
		v, leader := judge(err)
		if v == giveUp {
			return zero, err
		}
		last, lastAddr = err, addr
		if attempt >= c.opts.MaxAttempts {
			return zero, &RetryError{Attempts: attempt, Addr: addr, Err: err}
		}
		if v == redirect && leader != addr && c.follow(leader) {
			continue
		}
		// A redirect to the address just asked, or to one that may not be
		// learned, is a cluster still settling: treat it as unavailable.
		c.skip(addr)
		if err := sleep(ctx, jitter(pause)); err != nil {
			return zero, ctxError(err, attempt, lastAddr, last)
		}
		pause = min(2*pause, c.opts.BackoffMax)
	}
}

// ctxError is the error of a call whose context ended after attempts tries,
// the last of which (if any) failed with last at addr.
func ctxError(ctxErr error, attempts int, addr string, last error) error {
	if last == nil {
		return ctxErr
	}
	return &RetryError{Attempts: attempts, Addr: addr, Err: last, Context: ctxErr}
}

// jitter draws a pause between half and all of d, so that clients that
// failed together do not retry together.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// sleep waits for d or until ctx ends, whichever comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
