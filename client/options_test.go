package client

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:7001", "node-1:7001", "[::1]:7001", "localhost:1", "h:65535"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "127.0.0.1", ":7001", "host:", "host:0", "host:65536", "host:http", "a:b:c", "::1:7001"} {
		if err := CheckAddr(bad); err == nil {
			t.Errorf("CheckAddr(%q) = nil, want an error", bad)
		}
	}
}

func TestNewChecksOptions(t *testing.T) {
	ctx := context.Background()
	if _, err := New(ctx, Options{}); err == nil || !strings.Contains(err.Error(), "no address") {
		t.Errorf("New without addresses: %v, want an error saying so", err)
	}
	if _, err := New(ctx, Options{Addrs: []string{"nohost"}}); err == nil || !strings.Contains(err.Error(), `"nohost"`) {
		t.Errorf("New with a bad address: %v, want an error naming it", err)
	}
	if _, err := New(ctx, Options{Addrs: []string{"a:1"}, Timeout: -time.Second}); err == nil {
		t.Error("New with a negative timeout: no error")
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := New(done, Options{Addrs: []string{"a:1"}}); err == nil {
		t.Error("New with a done context: no error")
	}
}

func TestNewDefaults(t *testing.T) {
	c, err := New(context.Background(), Options{Addrs: []string{"a:1", "b:2", "a:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	o := c.opts
	if o.Timeout != DefaultTimeout || o.MaxAttempts != DefaultMaxAttempts ||
		o.BackoffInitial != DefaultBackoffInitial || o.BackoffMax != DefaultBackoffMax {
		t.Errorf("defaults %+v", o)
	}
	if len(c.addrs) != 2 {
		t.Errorf("addresses %v, want duplicates dropped", c.addrs)
	}
}

func TestFollowLearnsBoundedAddresses(t *testing.T) {
	c, err := New(context.Background(), Options{Addrs: []string{"a:1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !c.follow("a:1") || c.current != 0 {
		t.Fatalf("follow of a known address: current %d", c.current)
	}
	for i := range maxLearnedAddrs {
		if !c.follow("leader:" + string(rune('0'+i%10)) + string(rune('0'+i/10)) + "1") {
			t.Fatalf("follow %d refused below the bound", i)
		}
	}
	if c.follow("one-too-many:1") {
		t.Error("follow learned an address beyond the bound")
	}
	if len(c.addrs) != 1+maxLearnedAddrs {
		t.Errorf("%d addresses, want %d", len(c.addrs), 1+maxLearnedAddrs)
	}
	c.skip(c.addrs[c.current])
	if c.current != 0 {
		t.Errorf("skip from the last address went to %d, want to wrap to 0", c.current)
	}
}

func TestJitterStaysInRange(t *testing.T) {
	for range 1000 {
		d := jitter(100 * time.Millisecond)
		if d < 50*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("jitter(100ms) = %v, want within [50ms, 100ms]", d)
		}
	}
}
