package vmm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestHandleRoundTrip(t *testing.T) {
	dir := t.TempDir()
	h := Handle{Version: HandleVersion, Name: "web-1", Generation: 7, Dir: dir, Driver: "qemu",
		SupervisorPid: 100, QEMUPid: 101, Accel: AccelTCG, StartedAt: time.Unix(1700000000, 0).UTC(),
		Limits: Limits{Cgroup: "v1", CPUQuotaMicros: 100000, CPUPeriodMicros: 100000, MemoryBytes: 256 << 20}}
	if err := writeHandle(h); err != nil {
		t.Fatal(err)
	}
	got, err := readHandle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != h.Name || got.QEMUPid != 101 || got.SupervisorPid != 100 || !got.StartedAt.Equal(h.StartedAt) || got.Limits.MemoryBytes != h.Limits.MemoryBytes {
		t.Fatalf("read %+v, wrote %+v", got, h)
	}
}

func TestHandleVersions(t *testing.T) {
	tests := []struct {
		name        string
		content     string
		wantVersion bool // the error wraps ErrHandleVersion
		want        string
	}{
		{"newer", `{"version": 2, "name": "web-1", "dir": "/x", "supervisor_pid": 1, "qemu_pid": 2, "new_field": true}`, true, "version 2, this build reads version 1"},
		{"no version", `{"name": "web-1"}`, true, "no version"},
		{"not json", `{"version": 1,`, false, "unexpected end of JSON"},
		{"incomplete", `{"version": 1, "name": "web-1"}`, false, "incomplete"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, handleFile), []byte(tt.content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := readHandle(dir)
			if err == nil {
				t.Fatal("handle accepted")
			}
			if errors.Is(err, ErrHandleVersion) != tt.wantVersion || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v: want one containing %q (version error: %v)", err, tt.want, tt.wantVersion)
			}
		})
	}
}

// A reader racing with writers of status.json sees one whole status or
// another, never a torn file.
func TestStatusWriteIsAtomic(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 64<<10)
	if err := writeStatus(dir, Status{Name: "a", State: StateStarting}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error)
	go func() {
		for i := range 200 {
			s := Status{Name: "a", State: StateRunning, Generation: uint64(i)}
			if i%2 == 1 {
				s.ConsoleTail = long
			}
			if err := writeStatus(dir, s); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	reads := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if reads == 0 {
				t.Fatal("no reads raced with the writes")
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Fatalf("temporary files left: %v", entries)
			}
			return
		default:
		}
		s, err := readStatus(dir)
		if err != nil {
			t.Fatalf("read %d: %v", reads, err)
		}
		if s.Name != "a" || (s.ConsoleTail != "" && s.ConsoleTail != long) {
			t.Fatalf("read a torn status: %+v", s)
		}
		reads++
	}
}

func TestTail(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		writes []string
		want   string
	}{
		{"under", 8, []string{"ab", "cd"}, "abcd"},
		{"exact", 4, []string{"ab", "cd"}, "abcd"},
		{"over", 4, []string{"abc", "def", "g"}, "defg"},
		{"one big write", 4, []string{"a", "0123456789"}, "6789"},
		{"many", 3, []string{"a", "b", "c", "d", "e", "f", "g", "h"}, "fgh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTail(tt.max)
			for _, w := range tt.writes {
				tl.Write([]byte(w))
			}
			if got := tl.String(); got != tt.want {
				t.Fatalf("tail %q, want %q", got, tt.want)
			}
		})
	}
}
