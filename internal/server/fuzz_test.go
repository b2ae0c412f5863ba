package server

import (
	"bytes"
	"context"
	"testing"

	"github.com/blixard/blixard/internal/guest/wire"
)

// FuzzStreamConsole renders a console log as StreamVmLogs does (without
// follow): head, then fill repeated n times (modulo 2*wire.MaxLine+2, so
// that lines longer than wire.MaxLine come cheaply), then tail. The log is
// written by the guest, so it is untrusted. Rendering must not panic, every
// chunk sent must stay within maxLogChunk plus one rendered line, and each
// line must render to at most three times its size plus a short note (JSON
// decoding turns an invalid UTF-8 byte into the 3-byte U+FFFD).
func FuzzStreamConsole(f *testing.F) {
	var seeds [][]byte
	for _, fr := range []struct {
		kind wire.Kind
		v    any
	}{
		{wire.KindReady, wire.Ready{Version: 1, Kernel: "6.1.0-13-amd64", UptimeMillis: 812}},
		{wire.KindHeartbeat, wire.Heartbeat{Seq: 7, UptimeMillis: 9000}},
		{wire.KindOutput, wire.Output{Stream: "stdout", Data: []byte("hello\n\x00\x01binary\n")}},
		{wire.KindExit, wire.Exit{Code: 3, DurationMillis: 12}},
		{wire.KindExit, wire.Exit{Code: 137, TimedOut: true, DurationMillis: 2000}},
		{wire.KindExit, wire.Exit{Code: -1, Error: "exec: \"nope\": not found"}},
		{wire.KindRun, wire.Run{Command: "sh", Args: []string{"-c", "true"}}},
	} {
		line, err := wire.Encode(fr.kind, fr.v)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, line)
	}
	for i, s := range seeds {
		f.Add(append([]byte("[    0.31] kernel line\r\n"), s...), byte(0), uint32(0), seeds[(i+1)%len(seeds)])
	}
	f.Add([]byte("long"), byte('x'), uint32(wire.MaxLine+10), []byte("\nend"))
	f.Add([]byte(nil), byte('\n'), uint32(100), []byte("unterminated"))
	f.Fuzz(func(t *testing.T, head []byte, fill byte, n uint32, tail []byte) {
		for _, line := range [][]byte{head, tail} {
			if out := RenderConsoleLine(line); len(out) > 3*len(line)+renderNote {
				t.Fatalf("a line of %d bytes rendered to %d", len(line), len(out))
			}
		}
		stream := append(bytes.Clone(head), bytes.Repeat([]byte{fill}, int(n%(2*wire.MaxLine+2)))...)
		stream = append(stream, tail...)
		total := 0
		send := func(b []byte) error {
			if len(b) > maxLogChunk+3*(2*wire.MaxLine)+renderNote {
				t.Fatalf("a chunk of %d bytes", len(b))
			}
			total += len(b)
			return nil
		}
		if err := streamConsole(context.Background(), bytes.NewReader(stream), false, func() bool { return true }, send); err != nil {
			t.Fatalf("streamConsole: %v", err)
		}
		if lines := bytes.Count(stream, []byte("\n")) + 2 + len(stream)/wire.MaxLine; total > 3*len(stream)+lines*renderNote {
			t.Fatalf("a log of %d bytes in %d lines rendered to %d", len(stream), lines, total)
		}
	})
}

// renderNote bounds what RenderConsoleLine adds to a line beyond its own
// bytes: a newline and a bracketed note around numbers.
const renderNote = 128
