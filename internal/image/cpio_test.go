package image

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestCPIOHeaderBytes(t *testing.T) {
	var buf bytes.Buffer
	cw := newCPIOWriter(&buf)
	if err := cw.write(cpioEntry{Name: "a", Mode: modeRegular | 0o644, Data: []byte("hi\n")}); err != nil {
		t.Fatal(err)
	}
	if err := cw.close(); err != nil {
		t.Fatal(err)
	}
	want := "070701" + "00000001" + "000081A4" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000003" + "00000000" + "00000000" + "00000000" + "00000000" + "00000002" + "00000000" +
		"a\x00" + // 110 + 2 = 112: aligned
		"hi\n\x00" + // data padded to 4
		"070701" + "00000000" + "00000000" + "00000000" + "00000000" + "00000001" + "00000000" +
		"00000000" + "00000000" + "00000000" + "00000000" + "00000000" + "0000000B" + "00000000" +
		"TRAILER!!!\x00" + "\x00\x00\x00" // 110 + 11 = 121, padded to 124
	if got := buf.String(); got != want {
		t.Fatalf("archive\n%q\nwant\n%q", got, want)
	}
	if buf.Len()%4 != 0 {
		t.Fatalf("archive of %d bytes, not a multiple of 4", buf.Len())
	}
}

func TestCPIORoundTrip(t *testing.T) {
	entries := []cpioEntry{
		{Name: "bin", Mode: modeDir | 0o755},
		{Name: "bin/busybox", Mode: modeRegular | 0o755, Data: bytes.Repeat([]byte{0, 1, 2}, 1001)},
		{Name: "bin/sh", Mode: modeSymlink | 0o777, Data: []byte("busybox")},
		{Name: "dev/console", Mode: modeChar | 0o600, RdevMajor: 5, RdevMinor: 1},
		{Name: "empty", Mode: modeRegular | 0o600, Data: []byte{}},
		{Name: "odd-name-length", Mode: modeRegular | 0o644, Data: []byte("x")},
	}
	for n := range entries {
		var buf bytes.Buffer
		cw := newCPIOWriter(&buf)
		for _, e := range entries[:n+1] {
			if err := cw.write(e); err != nil {
				t.Fatal(err)
			}
		}
		if err := cw.close(); err != nil {
			t.Fatal(err)
		}
		got, err := readCPIO(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(normalize(got), normalize(entries[:n+1])) {
			t.Fatalf("read back\n%v\nwant\n%v", got, entries[:n+1])
		}
	}
}

// normalize makes empty data nil, for comparisons.
func normalize(es []cpioEntry) []cpioEntry {
	out := make([]cpioEntry, len(es))
	for i, e := range es {
		if len(e.Data) == 0 {
			e.Data = nil
		}
		out[i] = e
	}
	return out
}

func TestCPIOWriterRefuses(t *testing.T) {
	tests := []struct {
		name string
		e    cpioEntry
	}{
		{"empty name", cpioEntry{Mode: modeRegular}},
		{"absolute name", cpioEntry{Name: "/init", Mode: modeRegular}},
		{"data on a directory", cpioEntry{Name: "d", Mode: modeDir | 0o755, Data: []byte("x")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := newCPIOWriter(&bytes.Buffer{}).write(tt.e); err == nil {
				t.Fatal("written")
			}
		})
	}
}

// GNU cpio, an independent reader, lists what initramfsEntries writes.
func TestInitramfsListedByGNUCpio(t *testing.T) {
	cpio, err := exec.LookPath("cpio")
	if err != nil {
		t.Fatalf("GNU cpio is needed for this test: apt-get install cpio (%v)", err)
	}
	path := filepath.Join(t.TempDir(), "initrd.img")
	entries := initramfsEntries([]byte("agent"), []byte("busybox"), []string{"[", "cat", "sh"})
	if err := writeInitramfs(path, entries); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(cpio, "-it", "--quiet")
	cmd.Stdin = f
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -it: %v", err)
	}
	want := []string{
		"bin", "bin/[", "bin/busybox", "bin/cat", "bin/sh", "blixard",
		"dev", "dev/console", "dev/null", "dev/ttyS0",
		"etc", "etc/group", "etc/hostname", "etc/passwd",
		"init", "proc", "root", "run", "sbin", "sys", "tmp",
		"usr", "usr/bin", "usr/sbin",
	}
	if got := strings.Fields(string(out)); !reflect.DeepEqual(got, want) {
		t.Fatalf("cpio -it lists\n%q\nwant\n%q", got, want)
	}
	// The same inputs give the same bytes.
	again := filepath.Join(t.TempDir(), "again.img")
	if err := writeInitramfs(again, initramfsEntries([]byte("agent"), []byte("busybox"), []string{"[", "cat", "sh"})); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(path)
	b, _ := os.ReadFile(again)
	if !bytes.Equal(a, b) {
		t.Fatal("two archives of the same entries differ")
	}
}

func TestInitramfsEntries(t *testing.T) {
	entries := initramfsEntries([]byte("AGENT"), []byte("BUSYBOX"), []string{"sh"})
	byName := map[string]cpioEntry{}
	for i, e := range entries {
		if i > 0 && entries[i-1].Name >= e.Name {
			t.Fatalf("entries not sorted: %q before %q", entries[i-1].Name, e.Name)
		}
		byName[e.Name] = e
	}
	tests := []struct {
		name       string
		mode       uint32
		data       string
		major, min uint32
	}{
		{"init", modeRegular | 0o755, "AGENT", 0, 0},
		{"bin/busybox", modeRegular | 0o755, "BUSYBOX", 0, 0},
		{"bin/sh", modeSymlink | 0o777, "busybox", 0, 0},
		{"sbin", modeSymlink | 0o777, "bin", 0, 0},
		{"usr/bin", modeSymlink | 0o777, "../bin", 0, 0},
		{"dev/console", modeChar | 0o600, "", 5, 1},
		{"dev/ttyS0", modeChar | 0o660, "", 4, 64},
		{"tmp", modeDir | 0o1777, "", 0, 0},
		{"blixard", modeDir | 0o755, "", 0, 0},
	}
	for _, tt := range tests {
		e, ok := byName[tt.name]
		if !ok {
			t.Errorf("no %s", tt.name)
			continue
		}
		if e.Mode != tt.mode || string(e.Data) != tt.data || e.RdevMajor != tt.major || e.RdevMinor != tt.min {
			t.Errorf("%s: mode %o data %q dev %d,%d; want mode %o data %q dev %d,%d",
				tt.name, e.Mode, e.Data, e.RdevMajor, e.RdevMinor, tt.mode, tt.data, tt.major, tt.min)
		}
	}
}

func TestWithFiles(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := writeInitramfs(base, initramfsEntries([]byte("agent"), []byte("busybox"), []string{"sh"})); err != nil {
		t.Fatal(err)
	}
	// A base of a length that is not a multiple of 4 (another tool's
	// archive) is padded before the second archive.
	odd := filepath.Join(dir, "odd.img")
	data, _ := os.ReadFile(base)
	if err := os.WriteFile(odd, append(data, 0, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{base, odd} {
		out := filepath.Join(dir, "task.img")
		files := []File{
			{Path: "/blixard/task.json", Mode: 0o644, Data: []byte(`{"command":"true"}`)},
			{Path: "/opt/app/run", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
			// The leading slash is optional.
			{Path: "var/empty", Mode: fs.ModeDir | 0o700},
		}
		if err := WithFiles(b, out, files); err != nil {
			t.Fatal(err)
		}
		outData, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(outData, data) {
			t.Fatal("the output does not start with the base archive")
		}
		entries, err := readCPIO(bytes.NewReader(outData))
		if err != nil {
			t.Fatal(err)
		}
		baseEntries, _ := readCPIO(bytes.NewReader(data))
		added := entries[len(baseEntries):]
		var names []string
		for _, e := range added {
			names = append(names, e.Name)
		}
		// blixard is in the base; opt, opt/app and var are not.
		want := []string{"blixard/task.json", "opt", "opt/app", "opt/app/run", "var", "var/empty"}
		if !reflect.DeepEqual(names, want) {
			t.Fatalf("added %q, want %q", names, want)
		}
		if e := added[0]; e.Mode != modeRegular|0o644 || string(e.Data) != `{"command":"true"}` {
			t.Fatalf("task.json entry: mode %o data %q", e.Mode, e.Data)
		}
		if e := added[5]; e.Mode != modeDir|0o700 {
			t.Fatalf("var/empty: mode %o", e.Mode)
		}
	}
}

func TestWithFilesRefuses(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.img")
	if err := writeInitramfs(base, initramfsEntries(nil, nil, []string{"sh"})); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		base  string
		files []File
	}{
		{"unclean path", base, []File{{Path: "/blixard/../etc/passwd", Mode: 0o644}}},
		{"above the root", base, []File{{Path: "../etc/passwd", Mode: 0o644}}},
		{"trailing slash", base, []File{{Path: "/blixard/", Mode: fs.ModeDir | 0o755}}},
		{"root", base, []File{{Path: "/", Mode: fs.ModeDir | 0o755}}},
		{"twice", base, []File{{Path: "/a", Mode: 0o644}, {Path: "a", Mode: 0o644}}},
		{"symlink", base, []File{{Path: "/a", Mode: fs.ModeSymlink | 0o777}}},
		{"missing base", filepath.Join(dir, "nope"), []File{{Path: "/a", Mode: 0o644}}},
		{"base not newc", "/etc/hostname", []File{{Path: "/a", Mode: 0o644}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, "out.img")
			if err := WithFiles(tt.base, out, tt.files); err == nil {
				t.Fatal("no error")
			}
			if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a failed WithFiles left %s", out)
			}
		})
	}
}
