package vmm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// The control protocol: a client connects to DIR/ctl.sock and writes one
// request, a JSON object on one line; the supervisor answers with JSON lines
// and closes the connection.
//
//	{"op":"status"}                 → one reply: the current status
//	{"op":"watch"}                  → a reply with the current status, then one
//	                                  per change, the last one final
//	{"op":"stop","grace_ms":N}      → one reply once the hypervisor is gone:
//	                                  the final status. N (default: the VM's
//	                                  stop grace) is the time given to each
//	                                  stage: the agent's poweroff, QMP quit,
//	                                  SIGKILL.
//	{"op":"kill"}                   → SIGKILL now; one reply once it is gone
//	{"op":"renew","lease_until_mono_ns":T}
//	                                → extend the fencing lease to T, an
//	                                  instant of CLOCK_MONOTONIC; one reply
//
// A reply is {"status":{...}} or {"error":"..."}. A watcher that reads too
// slowly may miss intermediate statuses (at most ctlWatchBuffer are queued;
// the oldest go first), never the final one.
type ctlRequest struct {
	Op               string `json:"op"`
	GraceMillis      int64  `json:"grace_ms,omitempty"`
	LeaseUntilMonoNs int64  `json:"lease_until_mono_ns,omitempty"`
}

type ctlReply struct {
	Status *Status `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
}

// Control operations.
const (
	opStatus = "status"
	opWatch  = "watch"
	opStop   = "stop"
	opKill   = "kill"
	opRenew  = "renew"
)

const (
	// ctlRequestTimeout bounds how long the supervisor waits for a client's
	// request line, and how long it tries to write one reply.
	ctlRequestTimeout = 5 * time.Second
	// ctlWatchBuffer bounds the statuses queued for one watcher.
	ctlWatchBuffer = 16
	// maxCtlLine bounds a request line.
	maxCtlLine = 4096
)

// errNoSupervisor: nothing answers on the VM's control socket (the
// supervisor is gone, or not listening yet).
var errNoSupervisor = errors.New("no supervisor answers")

// ctlDial connects to the control socket of the VM in dir and sends req.
func ctlDial(ctx context.Context, dir string, req ctlRequest) (net.Conn, *bufio.Reader, error) {
	conn, err := dialUnix(ctx, dir, ctlSocket)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", errNoSupervisor, err)
	}
	line, _ := json.Marshal(req)
	_ = conn.SetWriteDeadline(time.Now().Add(ctlRequestTimeout))
	if _, err := conn.Write(append(line, '\n')); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("control %s: %w", req.Op, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, bufio.NewReaderSize(conn, 64<<10), nil
}

// readCtlReply reads one reply line.
func readCtlReply(r *bufio.Reader) (Status, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		if errors.Is(err, io.EOF) && len(line) == 0 {
			return Status{}, io.EOF
		}
		if !errors.Is(err, io.EOF) {
			return Status{}, err
		}
	}
	var rep ctlReply
	if err := json.Unmarshal(line, &rep); err != nil {
		return Status{}, fmt.Errorf("control reply: %w", err)
	}
	if rep.Error != "" {
		return Status{}, errors.New(rep.Error)
	}
	if rep.Status == nil {
		return Status{}, errors.New("control reply carries no status")
	}
	return *rep.Status, nil
}

// ctlCall sends req to the supervisor in dir and returns its one reply,
// within ctx.
func ctlCall(ctx context.Context, dir string, req ctlRequest) (Status, error) {
	conn, r, err := ctlDial(ctx, dir, req)
	if err != nil {
		return Status{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	st, err := readCtlReply(r)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return Status{}, fmt.Errorf("control %s of %s: %w", req.Op, dir, err)
	}
	return st, nil
}

// ctlWatch streams the statuses of the VM in dir to fn until the supervisor
// closes the stream (after the final status, or because it died) or ctx
// ends. It returns nil after a final status, else why the stream ended.
func ctlWatch(ctx context.Context, dir string, fn func(Status)) error {
	conn, r, err := ctlDial(ctx, dir, ctlRequest{Op: opWatch})
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	for {
		st, err := readCtlReply(r)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch %s: %w", dir, err)
		}
		fn(st)
		if st.State.Final() {
			return nil
		}
	}
}

// writeCtlReply writes one reply line within ctlRequestTimeout.
func writeCtlReply(conn net.Conn, rep ctlReply) error {
	line, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(ctlRequestTimeout))
	_, err = conn.Write(append(line, '\n'))
	return err
}

// readCtlRequest reads a client's request line within ctlRequestTimeout.
func readCtlRequest(conn net.Conn) (ctlRequest, error) {
	var req ctlRequest
	_ = conn.SetReadDeadline(time.Now().Add(ctlRequestTimeout))
	line, err := bufio.NewReaderSize(io.LimitReader(conn, maxCtlLine), maxCtlLine).ReadBytes('\n')
	if err != nil {
		return req, fmt.Errorf("read control request: %w", err)
	}
	_ = conn.SetReadDeadline(time.Time{})
	if err := json.Unmarshal(line, &req); err != nil {
		return req, fmt.Errorf("control request: %w", err)
	}
	switch req.Op {
	case opStatus, opWatch, opStop, opKill, opRenew:
	default:
		return req, fmt.Errorf("control request: unknown op %q", req.Op)
	}
	if req.GraceMillis < 0 {
		return req, fmt.Errorf("control request: negative grace_ms %d", req.GraceMillis)
	}
	return req, nil
}
