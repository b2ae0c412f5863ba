package server

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

func frameLine(t *testing.T, kind wire.Kind, v any) string {
	t.Helper()
	line, err := wire.Encode(kind, v)
	if err != nil {
		t.Fatal(err)
	}
	return string(line)
}

func TestRenderConsoleLine(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"text", "[    0.3] booting", "[    0.3] booting\n"},
		{"carriage return", "hello\r", "hello\n"},
		{"ready", frameLine(t, wire.KindReady, wire.Ready{Version: 1, Kernel: "6.1", UptimeMillis: 900}), "[agent ready: kernel 6.1, 900 ms after boot]\n"},
		{"heartbeat is not shown", frameLine(t, wire.KindHeartbeat, wire.Heartbeat{Seq: 3}), ""},
		{"output is its bytes", frameLine(t, wire.KindOutput, wire.Output{Stream: "stdout", Data: []byte("hello\n")}), "hello\n"},
		{"exit", frameLine(t, wire.KindExit, wire.Exit{Code: 3, DurationMillis: 12}), "[task exited with code 3 after 12 ms]\n"},
		{"timeout", frameLine(t, wire.KindExit, wire.Exit{Code: 137, TimedOut: true, DurationMillis: 2000}), "[task killed at its timeout after 2000 ms]\n"},
		{"text before a frame", "kernel says" + frameLine(t, wire.KindHeartbeat, wire.Heartbeat{}), "kernel says\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(RenderConsoleLine([]byte(strings.TrimSuffix(tt.in, "\n"))))
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStreamConsole(t *testing.T) {
	log := "line one\n" + frameLine(t, wire.KindReady, wire.Ready{Kernel: "k"}) + "unterminated"
	var out bytes.Buffer
	send := func(b []byte) error { out.Write(b); return nil }
	if err := streamConsole(context.Background(), strings.NewReader(log), false, func() bool { return false }, send); err != nil {
		t.Fatal(err)
	}
	if want := "line one\n[agent ready: kernel k, 0 ms after boot]\nunterminated\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}

	// A follow ends once the log is gone, and at once when the caller goes.
	out.Reset()
	done := make(chan error, 1)
	go func() {
		done <- streamConsole(context.Background(), strings.NewReader("a\n"), true, func() bool { return true }, send)
	}()
	select {
	case err := <-done:
		if err != nil || out.String() != "a\n" {
			t.Fatalf("follow of a gone log: %v, %q", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a follow of a gone log did not end")
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		done <- streamConsole(ctx, strings.NewReader(""), true, func() bool { return false }, send)
	}()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a follow did not end with its context")
	}
}
