package vmm

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeQMP is a QMP server on a unix socket, scripted by a handler that
// answers each command.
type fakeQMP struct {
	path string
	ln   net.Listener
	// got receives the commands the server read, in order.
	got chan string
}

// startFakeQMP serves one connection: greeting, then for each command line
// the handler's raw reply lines (written as they are). A handler returning
// nil closes the connection.
func startFakeQMP(t *testing.T, greeting string, handler func(cmd map[string]any) []string) *fakeQMP {
	t.Helper()
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeQMP{path: path, ln: ln, got: make(chan string, 16)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.Write([]byte(greeting + "\r\n"))
		sc := bufio.NewScanner(conn)
		for sc.Scan() {
			var cmd map[string]any
			if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
				return
			}
			name, _ := cmd["execute"].(string)
			f.got <- name
			replies := handler(cmd)
			if replies == nil {
				return
			}
			for _, r := range replies {
				conn.Write([]byte(r + "\r\n"))
			}
		}
	}()
	return f
}

const qmpGreeting = `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}`

// ret is the answer to cmd carrying its id.
func ret(cmd map[string]any, body string) string {
	id, _ := json.Marshal(cmd["id"])
	if cmd["id"] == nil {
		return `{"return": ` + body + `}`
	}
	return `{"return": ` + body + `, "id": ` + string(id) + `}`
}

func dialFake(t *testing.T, f *fakeQMP) (*qmpClient, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := net.Dial("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	return newQMP(ctx, conn)
}

func TestQMPSession(t *testing.T) {
	f := startFakeQMP(t, qmpGreeting, func(cmd map[string]any) []string {
		switch cmd["execute"] {
		case "qmp_capabilities":
			return []string{`{"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}`, ret(cmd, "{}")}
		case "query-status":
			// An event between the command and its answer.
			return []string{`{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}`, ret(cmd, `{"status": "running", "singlestep": false, "running": true}`)}
		case "cont":
			return []string{`{"error": {"class": "GenericError", "desc": "no can do"}, "id": "` + cmd["id"].(string) + `"}`}
		case "quit":
			return nil // QEMU exits without answering
		}
		return []string{`{"error": {"class": "CommandNotFound", "desc": "The command x has not been found"}}`}
	})
	c, err := dialFake(t, f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.queryStatus(ctx)
	if err != nil || st != "running" {
		t.Fatalf("query-status: %q, %v", st, err)
	}
	_, err = c.execute(ctx, "cont", nil)
	var qe *qmpError
	if !errors.As(err, &qe) || qe.Class != "GenericError" || !strings.Contains(err.Error(), "no can do") {
		t.Fatalf("cont: got %v, want the GenericError", err)
	}
	if err := c.quit(ctx); err != nil {
		t.Fatalf("quit, answered by a closed connection: %v", err)
	}
	if err := c.wait(ctx); err != nil {
		t.Fatal(err)
	}
	m := &qemuMachine{qmp: c}
	if r := m.shutdownReason(ctx); r != "guest-shutdown" {
		t.Errorf("shutdown reason %q, want guest-shutdown", r)
	}
	var order []string
	for len(f.got) > 0 {
		order = append(order, <-f.got)
	}
	if want := "qmp_capabilities query-status cont quit"; strings.Join(order, " ") != want {
		t.Errorf("commands %q, want %q", order, want)
	}
}

func TestQMPHandshakeFailures(t *testing.T) {
	tests := []struct {
		name     string
		greeting string
		handler  func(map[string]any) []string
		want     string
	}{
		{"not a greeting", `{"return": {}}`, func(map[string]any) []string { return nil }, "not a QMP greeting"},
		{"capabilities refused", qmpGreeting, func(map[string]any) []string {
			return []string{`{"error": {"class": "CommandNotFound", "desc": "nope"}}`}
		}, "CommandNotFound"},
		{"closed", qmpGreeting, func(map[string]any) []string { return nil }, "negotiate capabilities"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeQMP(t, tt.greeting, tt.handler)
			c, err := dialFake(t, f)
			if err == nil {
				c.close()
				t.Fatal("handshake succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// A command QEMU never answers ends with the context's deadline.
func TestQMPCommandDeadline(t *testing.T) {
	f := startFakeQMP(t, qmpGreeting, func(cmd map[string]any) []string {
		if cmd["execute"] == "qmp_capabilities" {
			return []string{ret(cmd, "{}")}
		}
		return []string{} // silence
	})
	c, err := dialFake(t, f)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.queryStatus(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline", err)
	}
}

func TestControlRequests(t *testing.T) {
	tests := []struct {
		line string
		want string // error substring, "" for valid
	}{
		{`{"op":"status"}`, ""},
		{`{"op":"stop","grace_ms":1500}`, ""},
		{`{"op":"renew","lease_until_mono_ns":123}`, ""},
		{`{"op":"reboot"}`, `unknown op "reboot"`},
		{`{"op":"stop","grace_ms":-1}`, "negative grace_ms"},
		{`not json`, "control request"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			go client.Write([]byte(tt.line + "\n"))
			_, err := readCtlRequest(server)
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
