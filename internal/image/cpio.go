package image

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// The cpio "newc" format (SVR4 with no CRC), the only one the kernel
// unpacks into its initramfs: each entry is a 110-byte ASCII header, the
// name with its NUL padded to a multiple of 4 bytes, then the data padded to
// a multiple of 4. An entry named TRAILER!!! ends an archive; the kernel
// unpacks several archives laid end to end.

const (
	cpioMagic   = "070701"
	cpioHeader  = 110
	cpioTrailer = "TRAILER!!!"
)

// File-type bits of a cpio entry's mode (as in stat's st_mode).
const (
	modeDir     = 0o040000
	modeChar    = 0o020000
	modeRegular = 0o100000
	modeSymlink = 0o120000
	modeType    = 0o170000
)

// cpioEntry is one member of an archive. Its uid, gid and mtime are always 0,
// so an archive depends on nothing but its entries.
type cpioEntry struct {
	// Name is the path without a leading slash ("bin/busybox").
	Name string
	// Mode is the st_mode: type bits and permissions.
	Mode uint32
	// Data is the content of a regular file or the target of a symlink.
	Data []byte
	// RdevMajor and RdevMinor name the device of a device node.
	RdevMajor, RdevMinor uint32
}

// cpioWriter writes one newc archive.
type cpioWriter struct {
	w   io.Writer
	ino uint32
	// n counts the bytes written so far, for padding.
	n int64
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w}
}

// write writes one entry. Every entry gets its own inode number and a link
// count of 1 (2 for a directory), so the kernel never takes two entries for
// hard links of one file.
func (c *cpioWriter) write(e cpioEntry) error {
	if e.Name == "" || e.Name[0] == '/' {
		return fmt.Errorf("cpio: bad entry name %q", e.Name)
	}
	t := e.Mode & modeType
	if len(e.Data) > 0 && t != modeRegular && t != modeSymlink {
		return fmt.Errorf("cpio: %s: only files and symlinks have data", e.Name)
	}
	c.ino++
	nlink := uint32(1)
	if t == modeDir {
		nlink = 2
	}
	return c.entry(c.ino, e, nlink)
}

func (c *cpioWriter) entry(ino uint32, e cpioEntry, nlink uint32) error {
	if uint64(len(e.Data)) > 0xFFFFFFFF {
		return fmt.Errorf("cpio: %s: %d bytes is too large", e.Name, len(e.Data))
	}
	hdr := fmt.Sprintf("%s%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		cpioMagic, ino, e.Mode, 0, 0, nlink, 0, len(e.Data), 0, 0, e.RdevMajor, e.RdevMinor, len(e.Name)+1, 0)
	buf := make([]byte, 0, len(hdr)+len(e.Name)+4)
	buf = append(buf, hdr...)
	buf = append(buf, e.Name...)
	buf = append(buf, 0)
	buf = append(buf, make([]byte, pad4(int64(len(buf))))...)
	if err := c.put(buf); err != nil {
		return err
	}
	if err := c.put(e.Data); err != nil {
		return err
	}
	return c.put(make([]byte, pad4(c.n)))
}

func (c *cpioWriter) put(b []byte) error {
	n, err := c.w.Write(b)
	c.n += int64(n)
	if err != nil {
		return fmt.Errorf("cpio: %w", err)
	}
	return nil
}

// close writes the trailer.
func (c *cpioWriter) close() error {
	return c.entry(0, cpioEntry{Name: cpioTrailer}, 1)
}

// pad4 is how many bytes bring n to a multiple of 4.
func pad4(n int64) int64 { return (4 - n%4) % 4 }

// readCPIO reads the entries of the newc archives in r, laid end to end and
// perhaps separated by zero padding, until the end of r.
func readCPIO(r io.Reader) ([]cpioEntry, error) {
	br := bufio.NewReader(r)
	var (
		entries []cpioEntry
		off     int64
	)
	skip := func(n int64) error {
		m, err := io.CopyN(io.Discard, br, n)
		off += m
		return err
	}
	for {
		// Zero padding between and after archives.
		b, err := br.Peek(1)
		if errors.Is(err, io.EOF) {
			return entries, nil
		}
		if err != nil {
			return nil, err
		}
		if b[0] == 0 {
			if err := skip(1); err != nil {
				return nil, fmt.Errorf("cpio: padding at %d: %w", off, err)
			}
			continue
		}
		hdr := make([]byte, cpioHeader)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return nil, fmt.Errorf("cpio: header at %d: %w", off, err)
		}
		at := off
		off += cpioHeader
		if string(hdr[:6]) != cpioMagic {
			return nil, fmt.Errorf("cpio: no newc header at %d (magic %q)", at, hdr[:6])
		}
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(string(hdr[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, fmt.Errorf("cpio: header at %d: field %d: %w", at, i, err)
			}
			f[i] = uint32(v)
		}
		mode, size, namesize := f[1], f[6], f[11]
		if namesize == 0 || namesize > 4096 {
			return nil, fmt.Errorf("cpio: header at %d: name size %d", at, namesize)
		}
		name := make([]byte, namesize)
		if _, err := io.ReadFull(br, name); err != nil {
			return nil, fmt.Errorf("cpio: name at %d: %w", at, err)
		}
		off += int64(namesize)
		if err := skip(pad4(off)); err != nil {
			return nil, fmt.Errorf("cpio: name padding at %d: %w", at, err)
		}
		data := make([]byte, size)
		if _, err := io.ReadFull(br, data); err != nil {
			return nil, fmt.Errorf("cpio: data of %q at %d: %w", name, at, err)
		}
		off += int64(size)
		if err := skip(pad4(off)); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("cpio: data padding at %d: %w", at, err)
		}
		e := cpioEntry{Name: string(name[:namesize-1]), Mode: mode, Data: data, RdevMajor: f[9], RdevMinor: f[10]}
		if e.Name == cpioTrailer {
			continue
		}
		entries = append(entries, e)
	}
}
