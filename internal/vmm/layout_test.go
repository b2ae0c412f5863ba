package vmm

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A socket in a directory too deep for a unix socket address still works:
// it is reached through a descriptor of the directory.
func TestUnixSocketInDeepDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if len(filepath.Join(dir, ctlSocket)) <= maxUnixPath {
		t.Fatal("the directory is not deep enough for the test")
	}
	ln, err := listenUnix(dir, ctlSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := os.Stat(filepath.Join(dir, ctlSocket)); err != nil {
		t.Fatalf("the socket is not in the directory: %v", err)
	}
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := dialUnix(ctx, dir, ctlSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hi" {
		t.Fatalf("read %q, %v", got, err)
	}
}

func TestNamesPath(t *testing.T) {
	args := []string{"qemu", "-kernel", "/tmp/vmboot-12/n1/images/x", "socket,path=/tmp/vmboot-3,server=on", "/tmp/vmboot-4"}
	for dir, want := range map[string]bool{
		"/tmp/vmboot-12": true, "/tmp/vmboot-12/": true, "/tmp/vmboot-1": false, "/tmp/vmboot-3": true,
		"/tmp/vmboot-4": true, "/tmp/vmboot-5": false,
	} {
		got := false
		for _, arg := range args {
			got = got || namesPath([]byte(arg), dir)
		}
		if got != want {
			t.Errorf("namesPath(%q) = %v, want %v", dir, got, want)
		}
	}
}
