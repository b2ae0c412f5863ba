package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/guest/wire"
)

// Consoles is the part of a Backend that knows where the console logs of
// the VMs on this node are.
type Consoles interface {
	// ConsoleLog returns the path of VM name's console log on this node;
	// the file may not exist (the VM never ran here).
	ConsoleLog(name string) (string, error)
}

// logPollInterval is how often a followed log is checked for growth.
const logPollInterval = 200 * time.Millisecond

// maxLogChunk bounds one VmLogChunk.
const maxLogChunk = 32 << 10

// StreamVmLogs streams the console log this node keeps of a VM: only the
// node the VM runs on (or last ran on) has it; any other answers
// FAILED_PRECONDITION naming the node to ask.
func (s *vmService) StreamVmLogs(r *apiv1.StreamVmLogsRequest, stream grpc.ServerStreamingServer[apiv1.VmLogChunk]) error {
	c, ok := s.b.(Consoles)
	if !ok {
		return status.Error(codes.Unimplemented, "this node keeps no VM consoles")
	}
	ctx := stream.Context()
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: r.GetName(), Stale: true}}})
	if err != nil {
		return err
	}
	path, err := c.ConsoleLog(r.GetName())
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		vm := resp.GetGetVm().GetVm()
		if vm.GetNodeId() == 0 {
			return status.Errorf(codes.FailedPrecondition, "VM %q has not run on any node yet (it is %s)", r.GetName(), vm.GetState())
		}
		return StatusOf(&apiv1.Error{
			Code:    apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			Message: fmt.Sprintf("this node has no console log of VM %q (the VM is placed on node %d; ask that node)", r.GetName(), vm.GetNodeId()),
		})
	}
	if err != nil {
		return status.Errorf(codes.Internal, "open the console log: %v", err)
	}
	defer f.Close()
	from, err := tailFrom(f, r.GetTailBytes())
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	// A followed log ends once the file is gone (the VM was deleted here).
	gone := func() bool {
		_, err := os.Stat(path)
		return errors.Is(err, fs.ErrNotExist)
	}
	return streamConsole(ctx, from, r.GetFollow(), gone, func(b []byte) error {
		return stream.Send(&apiv1.VmLogChunk{Data: b})
	})
}

// tailFrom positions f at the start of the first whole line of its last
// tail bytes (all of it with tail 0) and returns the reader to use.
func tailFrom(f *os.File, tail uint64) (io.Reader, error) {
	st, err := f.Stat()
	if err != nil || tail == 0 || uint64(st.Size()) <= tail {
		return f, nil
	}
	if _, err := f.Seek(st.Size()-int64(tail), io.SeekStart); err != nil {
		return nil, fmt.Errorf("seek in the console log: %w", err)
	}
	// Start at a line: a frame cut in two would show as noise.
	br := bufio.NewReader(f)
	if _, err := br.ReadSlice('\n'); err != nil && !errors.Is(err, bufio.ErrBufferFull) && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read the console log: %w", err)
	}
	return br, nil
}

// ConsoleTail renders the last tail bytes of the console log at path as
// `vm logs --tail` would. A missing file is fs.ErrNotExist.
func ConsoleTail(path string, tail uint64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	from, err := tailFrom(f, tail)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = streamConsole(context.Background(), from, false, nil, func(b []byte) error {
		out = append(out, b...)
		return nil
	})
	return out, err
}

// streamConsole renders the console in f line by line to send, and with
// follow waits for more until ctx ends or gone says the log is no more.
func streamConsole(ctx context.Context, f io.Reader, follow bool, gone func() bool, send func([]byte) error) error {
	br := bufio.NewReaderSize(f, 64<<10)
	var (
		out     []byte
		partial []byte
	)
	flush := func() error {
		if len(out) == 0 {
			return nil
		}
		err := send(out)
		out = nil
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		partial = append(partial, line...)
		switch {
		case err == nil || (errors.Is(err, bufio.ErrBufferFull) && len(partial) >= wire.MaxLine):
			out = append(out, RenderConsoleLine(bytes.TrimSuffix(partial, []byte("\n")))...)
			partial = partial[:0]
			if len(out) >= maxLogChunk {
				if err := flush(); err != nil {
					return err
				}
			}
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case !errors.Is(err, io.EOF):
			return status.Errorf(codes.Internal, "read the console log: %v", err)
		}
		// At the end of what is written so far.
		if err := flush(); err != nil {
			return err
		}
		if !follow || gone() {
			if len(partial) > 0 {
				return send(RenderConsoleLine(partial))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(logPollInterval):
		}
	}
}

// RenderConsoleLine turns one console line into what a reader of the log
// sees, with its newline: text as it is; the agent's frames as short
// bracketed notes (heartbeats not at all); a task's output as its bytes.
func RenderConsoleLine(line []byte) []byte {
	text, f, ok := wire.ParseLine(line)
	if !ok {
		return append(bytes.TrimSuffix(text, []byte("\r")), '\n')
	}
	var out []byte
	if len(text) > 0 {
		out = append(append(out, text...), '\n')
	}
	switch f.Kind {
	case wire.KindReady:
		var r wire.Ready
		if f.Decode(&r) == nil {
			out = fmt.Appendf(out, "[agent ready: kernel %s, %d ms after boot]\n", r.Kernel, r.UptimeMillis)
		}
	case wire.KindHeartbeat:
	case wire.KindOutput:
		var o wire.Output
		if f.Decode(&o) == nil {
			out = append(out, o.Data...)
		}
	case wire.KindExit:
		var e wire.Exit
		if f.Decode(&e) == nil {
			switch {
			case e.TimedOut:
				out = fmt.Appendf(out, "[task killed at its timeout after %d ms]\n", e.DurationMillis)
			case e.Error != "":
				out = fmt.Appendf(out, "[task ended with code %d: %s]\n", e.Code, e.Error)
			default:
				out = fmt.Appendf(out, "[task exited with code %d after %d ms]\n", e.Code, e.DurationMillis)
			}
		}
	default:
		out = fmt.Appendf(out, "[%s]\n", f.Kind)
	}
	return out
}
