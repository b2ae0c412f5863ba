package image

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
)

// File is a file to add to an initramfs with WithFiles.
type File struct {
	// Path is the file's path in the guest, from the root, with or
	// without the leading slash ("/blixard/task.json").
	Path string
	// Mode gives the permissions (and fs.ModeDir for a directory).
	Mode fs.FileMode
	Data []byte
}

// Device numbers of the nodes the initramfs carries so that the kernel and
// the agent have a console before devtmpfs is mounted over /dev.
const (
	ttyMajor, ttyS0Minor       = 4, 64
	consoleMajor, consoleMinor = 5, 1
	memMajor, nullMinor        = 1, 3
)

// Permissions of the initramfs's directories and programs.
const initrdDirMode, initrdBinMode = 0o755, 0o755

// initramfsEntries lists the default image's initramfs: the agent as /init,
// busybox and one symlink per applet in /bin (/sbin, /usr/bin and /usr/sbin
// link to /bin), the mount points, a few device nodes, and a minimal /etc.
// The entries come sorted by name, so parents precede their children and
// the same inputs give the same bytes.
func initramfsEntries(agent, busybox []byte, applets []string) []cpioEntry {
	dir := func(name string, perm uint32) cpioEntry { return cpioEntry{Name: name, Mode: modeDir | perm} }
	link := func(name, target string) cpioEntry {
		return cpioEntry{Name: name, Mode: modeSymlink | 0o777, Data: []byte(target)}
	}
	file := func(name string, perm uint32, data []byte) cpioEntry {
		return cpioEntry{Name: name, Mode: modeRegular | perm, Data: data}
	}
	char := func(name string, perm, major, minor uint32) cpioEntry {
		return cpioEntry{Name: name, Mode: modeChar | perm, RdevMajor: major, RdevMinor: minor}
	}
	entries := []cpioEntry{
		file("init", initrdBinMode, agent),
		dir("bin", initrdDirMode),
		file("bin/busybox", initrdBinMode, busybox),
		link("sbin", "bin"),
		dir("usr", initrdDirMode),
		link("usr/bin", "../bin"),
		link("usr/sbin", "../bin"),
		dir("dev", initrdDirMode),
		char("dev/console", 0o600, consoleMajor, consoleMinor),
		char("dev/ttyS0", 0o660, ttyMajor, ttyS0Minor),
		char("dev/null", 0o666, memMajor, nullMinor),
		dir("etc", initrdDirMode),
		file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")),
		file("etc/group", 0o644, []byte("root:x:0:\n")),
		file("etc/hostname", 0o644, []byte("blixard\n")),
		dir("proc", 0o555),
		dir("sys", 0o555),
		dir("tmp", 0o1777),
		dir("run", initrdDirMode),
		dir("root", 0o700),
		dir("blixard", initrdDirMode),
	}
	for _, a := range applets {
		entries = append(entries, link("bin/"+a, "busybox"))
	}
	slices.SortFunc(entries, func(a, b cpioEntry) int { return strings.Compare(a.Name, b.Name) })
	return entries
}

// busyboxApplets lists the applets of the busybox binary at path (it runs
// it: busybox --list), sorted, without busybox itself.
func busyboxApplets(ctx context.Context, busybox string) ([]string, error) {
	out, err := exec.CommandContext(ctx, busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list the applets of %s: %w%s", busybox, err, stderrOf(err))
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		a := strings.TrimSpace(sc.Text())
		if a == "" || a == "busybox" {
			continue
		}
		if strings.ContainsAny(a, "/\x00") || a == "." || a == ".." {
			return nil, fmt.Errorf("%s --list: a strange applet name %q", busybox, a)
		}
		applets = append(applets, a)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list printed no applets", busybox)
	}
	slices.Sort(applets)
	return slices.Compact(applets), nil
}

// writeInitramfs writes the archive of entries to path (through a temporary
// file, so path is either whole or absent).
func writeInitramfs(path string, entries []cpioEntry) error {
	return writeAtomically(path, func(w io.Writer) error {
		cw := newCPIOWriter(w)
		for _, e := range entries {
			if err := cw.write(e); err != nil {
				return err
			}
		}
		return cw.close()
	})
}

// WithFiles writes out: the initramfs base (an uncompressed newc archive,
// such as an Image's Initrd) followed by a second archive that holds files.
// The kernel unpacks both, so the files appear in the guest, replacing any
// of the same name; the directories above them that base lacks are created
// (mode 0755). It is how a task's /blixard/task.json reaches the agent.
func WithFiles(base, out string, files []File) error {
	src, err := os.Open(base)
	if err != nil {
		return fmt.Errorf("initramfs with files: %w", err)
	}
	defer src.Close()
	baseEntries, err := readCPIO(bufio.NewReader(src))
	if err != nil {
		return fmt.Errorf("initramfs with files: read %s: %w", base, err)
	}
	have := map[string]bool{}
	for _, e := range baseEntries {
		have[e.Name] = true
	}
	added, err := fileEntries(files, have)
	if err != nil {
		return fmt.Errorf("initramfs with files: %w", err)
	}
	if _, err := src.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("initramfs with files: %w", err)
	}
	err = writeAtomically(out, func(w io.Writer) error {
		n, err := io.Copy(w, src)
		if err != nil {
			return fmt.Errorf("copy %s: %w", base, err)
		}
		// The second archive starts on a 4-byte boundary.
		if _, err := w.Write(make([]byte, pad4(n))); err != nil {
			return err
		}
		cw := newCPIOWriter(w)
		for _, e := range added {
			if err := cw.write(e); err != nil {
				return err
			}
		}
		return cw.close()
	})
	if err != nil {
		return fmt.Errorf("initramfs with files: %w", err)
	}
	return nil
}

// fileEntries turns files into archive entries, adding the directories
// above them that neither have (the base archive's names) nor files hold.
func fileEntries(files []File, have map[string]bool) ([]cpioEntry, error) {
	byName := map[string]cpioEntry{}
	for _, f := range files {
		name := strings.TrimPrefix(f.Path, "/")
		if name == "" || path.Clean(name) != name || name == ".." || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("file path %q is not a clean path below the root", f.Path)
		}
		if _, dup := byName[name]; dup {
			return nil, fmt.Errorf("file %s given twice", f.Path)
		}
		switch {
		case f.Mode.IsDir():
			if len(f.Data) > 0 {
				return nil, fmt.Errorf("directory %s has data", f.Path)
			}
			byName[name] = cpioEntry{Name: name, Mode: modeDir | uint32(f.Mode.Perm())}
		case f.Mode.IsRegular():
			byName[name] = cpioEntry{Name: name, Mode: modeRegular | uint32(f.Mode.Perm()), Data: f.Data}
		default:
			return nil, fmt.Errorf("file %s: mode %v is neither a regular file nor a directory", f.Path, f.Mode)
		}
	}
	for name := range byName {
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			if _, ok := byName[d]; !ok && !have[d] {
				byName[d] = cpioEntry{Name: d, Mode: modeDir | initrdDirMode}
			}
		}
	}
	entries := make([]cpioEntry, 0, len(byName))
	for _, e := range byName {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, func(a, b cpioEntry) int { return strings.Compare(a.Name, b.Name) })
	return entries, nil
}
