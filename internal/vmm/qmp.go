package vmm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// qmpClient speaks QEMU's machine protocol (QMP) on one connection: the
// greeting, capabilities negotiation, then commands matched to their
// answers by id, with asynchronous events kept aside.
type qmpClient struct {
	conn net.Conn
	// writeMu serialises writes of commands.
	writeMu sync.Mutex

	mu     sync.Mutex
	nextID uint64
	// pending maps a command id to where its answer goes.
	pending map[string]chan qmpMessage
	// events are the last maxQMPEvents events received.
	events []qmpEvent
	// readErr is why the reader stopped; set before done is closed.
	readErr error
	// done is closed when the reader has stopped (QEMU closed the
	// connection, or close was called).
	done chan struct{}
}

// maxQMPEvents bounds the events kept (the newest win).
const maxQMPEvents = 64

// qmpMessage is any message QEMU sends.
type qmpMessage struct {
	QMP    json.RawMessage `json:"QMP,omitempty"`
	Return json.RawMessage `json:"return,omitempty"`
	Error  *qmpError       `json:"error,omitempty"`
	Event  string          `json:"event,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	ID     json.RawMessage `json:"id,omitempty"`
}

type qmpEvent struct {
	Event string
	Data  json.RawMessage
}

func (e qmpEvent) decode(v any) error {
	if len(e.Data) == 0 {
		return fmt.Errorf("qmp event %s has no data", e.Event)
	}
	return json.Unmarshal(e.Data, v)
}

// qmpError is QEMU's answer to a command that failed.
type qmpError struct {
	Class string `json:"class"`
	Desc  string `json:"desc"`
}

func (e *qmpError) Error() string { return "qmp: " + e.Class + ": " + e.Desc }

// errQMPClosed: the connection ended before the answer came.
var errQMPClosed = errors.New("qmp: connection closed")

// newQMP reads QEMU's greeting on conn and negotiates capabilities, within
// ctx's deadline; then it reads in the background. The client owns conn.
func newQMP(ctx context.Context, conn net.Conn) (*qmpClient, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	dec := json.NewDecoder(conn)
	var greeting qmpMessage
	if err := dec.Decode(&greeting); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: read greeting: %w", err)
	}
	if len(greeting.QMP) == 0 {
		conn.Close()
		return nil, errors.New("qmp: the first message is not a QMP greeting")
	}
	if _, err := conn.Write([]byte(`{"execute":"qmp_capabilities"}` + "\n")); err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: negotiate capabilities: %w", err)
	}
	for {
		var m qmpMessage
		if err := dec.Decode(&m); err != nil {
			conn.Close()
			return nil, fmt.Errorf("qmp: negotiate capabilities: %w", err)
		}
		if m.Error != nil {
			conn.Close()
			return nil, fmt.Errorf("qmp: negotiate capabilities: %w", m.Error)
		}
		if m.Return != nil {
			break
		}
		// An event before the answer: QEMU may send them at any time.
	}
	_ = conn.SetDeadline(time.Time{})
	c := &qmpClient{conn: conn, pending: map[string]chan qmpMessage{}, done: make(chan struct{})}
	go c.read(dec)
	return c, nil
}

func (c *qmpClient) read(dec *json.Decoder) {
	var err error
	for {
		var m qmpMessage
		if err = dec.Decode(&m); err != nil {
			break
		}
		c.mu.Lock()
		switch {
		case m.Event != "":
			c.events = append(c.events, qmpEvent{Event: m.Event, Data: m.Data})
			if len(c.events) > maxQMPEvents {
				c.events = c.events[len(c.events)-maxQMPEvents:]
			}
		case len(m.ID) > 0:
			var id string
			if json.Unmarshal(m.ID, &id) == nil {
				if ch, ok := c.pending[id]; ok {
					delete(c.pending, id)
					ch <- m // buffered: never blocks
				}
			}
		}
		c.mu.Unlock()
	}
	c.mu.Lock()
	c.readErr = err
	c.mu.Unlock()
	close(c.done)
}

// execute runs command with args (nil for none) and returns its answer.
func (c *qmpClient) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	c.mu.Lock()
	c.nextID++
	id := "blx-" + strconv.FormatUint(c.nextID, 10)
	ch := make(chan qmpMessage, 1)
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{command, args, id}
	line, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	c.writeMu.Lock()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetWriteDeadline(dl)
	}
	_, err = c.conn.Write(append(line, '\n'))
	_ = c.conn.SetWriteDeadline(time.Time{})
	c.writeMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return nil, fmt.Errorf("qmp %s: %w", command, m.Error)
		}
		return m.Return, nil
	case <-c.done:
		return nil, fmt.Errorf("qmp %s: %w", command, errQMPClosed)
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

// queryStatus returns QEMU's run state ("running", "paused", "shutdown", ...).
func (c *qmpClient) queryStatus(ctx context.Context) (string, error) {
	ret, err := c.execute(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(ret, &st); err != nil {
		return "", fmt.Errorf("qmp query-status: %w", err)
	}
	return st.Status, nil
}

// quit asks QEMU to exit. QEMU may close the connection before its answer
// arrives; that is success too.
func (c *qmpClient) quit(ctx context.Context) error {
	_, err := c.execute(ctx, "quit", nil)
	if errors.Is(err, errQMPClosed) {
		return nil
	}
	return err
}

// wait returns once the connection has ended (QEMU exited) or ctx ended.
func (c *qmpClient) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// takeEvents returns the events received so far and forgets them.
func (c *qmpClient) takeEvents() []qmpEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	ev := c.events
	c.events = nil
	return ev
}

func (c *qmpClient) close() error {
	err := c.conn.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
