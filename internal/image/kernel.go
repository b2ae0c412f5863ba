package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

var (
	elfMagic  = []byte("\x7fELF")
	xzMagic   = []byte("\xfd7zXZ\x00")
	gzipMagic = []byte("\x1f\x8b\x08")
)

// xenElfnotePhys32Entry is the type of the ELF note (owner "Xen") that holds
// a kernel's PVH entry point: without it QEMU cannot boot the vmlinux
// directly (the kernel needs CONFIG_PVH).
const xenElfnotePhys32Entry = 18

// maxKernelBytes bounds a kernel file read into memory (a bzImage is about
// 8 MB, an uncompressed vmlinux about 70 MB).
const maxKernelBytes = 512 << 20

// bootKernelGlob matches the kernels Debian installs.
const bootKernelGlob = "/boot/vmlinuz-*-amd64"

// kernelMetaPackage is the Debian package whose dependency is the current
// kernel image package.
const kernelMetaPackage = "linux-image-amd64"

// kernelInfo is what Build learns about a kernel.
type kernelInfo struct {
	// release is the kernel's release ("6.1.0-56-amd64"); "" if unknown.
	release string
	// loadEnd is the physical address where the kernel's loaded image
	// (text, data, bss) ends: guest memory below it is the kernel's.
	loadEnd uint64
}

// writeVMLinux writes the uncompressed ELF kernel of src (a bzImage or a
// vmlinux) to dst. The kernel must be an x86-64 ELF with a PVH entry point.
func writeVMLinux(ctx context.Context, src, dst string) (kernelInfo, error) {
	data, err := readLimited(src, maxKernelBytes)
	if err != nil {
		return kernelInfo{}, fmt.Errorf("read kernel: %w", err)
	}
	if !bytes.HasPrefix(data, elfMagic) {
		data, err = extractVMLinux(ctx, data)
		if err != nil {
			return kernelInfo{}, fmt.Errorf("kernel %s: %w", src, err)
		}
	}
	end, err := checkPVH(data)
	if err != nil {
		return kernelInfo{}, fmt.Errorf("kernel %s: %w", src, err)
	}
	if err := writeAtomically(dst, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}); err != nil {
		return kernelInfo{}, err
	}
	return kernelInfo{release: kernelRelease(data), loadEnd: end}, nil
}

// extractVMLinux finds the compressed kernel inside a bzImage as the
// kernel's scripts/extract-vmlinux does: it tries each place where an xz
// (or gzip) stream starts until one decompresses to an ELF file.
func extractVMLinux(ctx context.Context, bz []byte) ([]byte, error) {
	var tried []string
	for _, m := range []struct {
		name   string
		magic  []byte
		decode func(context.Context, []byte) ([]byte, error)
	}{{"xz", xzMagic, unxz}, {"gzip", gzipMagic, gunzip}} {
		for off := 0; ; off++ {
			i := bytes.Index(bz[off:], m.magic)
			if i < 0 {
				break
			}
			off += i
			out, err := m.decode(ctx, bz[off:])
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err == nil && bytes.HasPrefix(out, elfMagic) {
				return out, nil
			}
			if err != nil {
				tried = append(tried, fmt.Sprintf("%s at %d: %v", m.name, off, err))
			} else {
				tried = append(tried, fmt.Sprintf("%s at %d: not an ELF file", m.name, off))
			}
		}
	}
	if len(tried) == 0 {
		return nil, errors.New("neither an ELF vmlinux nor a bzImage with an xz or gzip compressed kernel")
	}
	return nil, fmt.Errorf("no compressed stream in it decompresses to an ELF vmlinux (%s)", strings.Join(tried, "; "))
}

// unxz decompresses the first xz stream of data with the xz program.
func unxz(ctx context.Context, data []byte) ([]byte, error) {
	xz, err := exec.LookPath("xz")
	if err != nil {
		return nil, fmt.Errorf("the xz program is needed to decompress the kernel (apt-get install xz-utils): %w", err)
	}
	cmd := exec.CommandContext(ctx, xz, "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("xz: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return out.Bytes(), nil
}

// gunzip decompresses the first gzip member of data.
func gunzip(_ context.Context, data []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	zr.Multistream(false)
	out, err := io.ReadAll(io.LimitReader(zr, maxKernelBytes))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// checkPVH checks that data is an x86-64 ELF kernel with a PVH entry note,
// and returns the physical address where its loaded segments end.
func checkPVH(data []byte) (loadEnd uint64, err error) {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("not an ELF file: %w", err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return 0, fmt.Errorf("an ELF file for %v, not x86-64", f.Machine)
	}
	pvh := false
	for _, p := range f.Progs {
		switch p.Type {
		case elf.PT_LOAD:
			loadEnd = max(loadEnd, p.Paddr+p.Memsz)
		case elf.PT_NOTE:
			notes, err := io.ReadAll(p.Open())
			if err != nil {
				return 0, fmt.Errorf("read ELF notes: %w", err)
			}
			pvh = pvh || hasNote(notes, f.ByteOrder, "Xen", xenElfnotePhys32Entry)
		}
	}
	if !pvh {
		return 0, errors.New("the kernel has no PVH entry point (Xen ELF note 18); it needs CONFIG_PVH=y")
	}
	if loadEnd == 0 {
		return 0, errors.New("the kernel ELF has no loadable segment")
	}
	return loadEnd, nil
}

// hasNote reports whether an ELF note segment holds a note of owner name and
// type typ.
func hasNote(notes []byte, bo binary.ByteOrder, name string, typ uint32) bool {
	align := func(n uint32) uint32 { return (n + 3) &^ 3 }
	for len(notes) >= 12 {
		namesz, descsz, t := bo.Uint32(notes), bo.Uint32(notes[4:]), bo.Uint32(notes[8:])
		notes = notes[12:]
		if uint64(align(namesz))+uint64(align(descsz)) > uint64(len(notes)) {
			return false
		}
		owner := string(bytes.TrimRight(notes[:namesz], "\x00"))
		if owner == name && t == typ {
			return true
		}
		notes = notes[align(namesz)+align(descsz):]
	}
	return false
}

// kernelRelease finds the release in the kernel's banner ("Linux version
// 6.1.0-56-amd64 (...)"), "" if there is none.
func kernelRelease(vmlinux []byte) string {
	const banner = "Linux version "
	for off := 0; ; {
		i := bytes.Index(vmlinux[off:], []byte(banner))
		if i < 0 {
			return ""
		}
		off += i + len(banner)
		end := bytes.IndexAny(vmlinux[off:min(off+128, len(vmlinux))], " \x00\n")
		// The banner is "Linux version <release> (<builder>) #<n> ...";
		// skip look-alikes such as format strings.
		if end > 0 && off+end < len(vmlinux) && vmlinux[off+end] == ' ' && !bytes.ContainsAny(vmlinux[off:off+end], "%") {
			return string(vmlinux[off : off+end])
		}
	}
}

// findKernel resolves BuildOptions.Kernel: the given path, else the newest
// Debian kernel in /boot, else one fetched with apt (into tmpDir), which it
// tells progress before it starts.
func findKernel(ctx context.Context, given, tmpDir string, log *slog.Logger, progress func(step, detail string)) (string, error) {
	if given != "" {
		if _, err := os.Stat(given); err != nil {
			return "", fmt.Errorf("kernel: %w", err)
		}
		return given, nil
	}
	if k, err := newestBootKernel(); err == nil {
		return k, nil
	} else {
		log.Info("no kernel in /boot; fetching one with apt", "package", kernelMetaPackage, "reason", err)
		progress("fetching a kernel", "no kernel in /boot; apt-get download of "+kernelMetaPackage+"'s kernel")
	}
	k, err := aptKernel(ctx, tmpDir)
	if err != nil {
		return "", fmt.Errorf("no kernel given (--kernel), none matches %s, and fetching %s's kernel with apt failed: %w", bootKernelGlob, kernelMetaPackage, err)
	}
	return k, nil
}

// newestBootKernel returns the newest kernel matching bootKernelGlob.
func newestBootKernel() (string, error) {
	return newestKernel(bootKernelGlob)
}

func newestKernel(glob string) (string, error) {
	matches, err := filepath.Glob(glob)
	if err != nil {
		return "", err
	}
	var readable []string
	for _, m := range matches {
		if f, err := os.Open(m); err == nil {
			f.Close()
			readable = append(readable, m)
		}
	}
	if len(readable) == 0 {
		return "", fmt.Errorf("no readable kernel matches %s", glob)
	}
	slices.SortFunc(readable, compareVersions)
	return readable[len(readable)-1], nil
}

// compareVersions orders strings as versions: runs of digits compare as
// numbers ("vmlinuz-6.1.0-56" after "vmlinuz-6.1.0-9").
func compareVersions(a, b string) int {
	for a != "" && b != "" {
		da, db := isDigit(a[0]), isDigit(b[0])
		switch {
		case da && db:
			na, ra := leadingDigits(a)
			nb, rb := leadingDigits(b)
			if c := compareNumbers(na, nb); c != 0 {
				return c
			}
			a, b = ra, rb
		case a[0] != b[0]:
			return strings.Compare(a[:1], b[:1])
		default:
			a, b = a[1:], b[1:]
		}
	}
	return strings.Compare(a, b)
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func leadingDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func compareNumbers(a, b string) int {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) - len(b)
	}
	return strings.Compare(a, b)
}

// aptKernel downloads the kernel package that linux-image-amd64 depends on
// with apt-get download (Debian's configured apt sources only), unpacks it
// with dpkg-deb -x into dir, and returns its vmlinuz.
func aptKernel(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", kernelMetaPackage).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w%s", kernelMetaPackage, err, stderrOf(err))
	}
	pkg := kernelDependency(string(out))
	if pkg == "" {
		return "", fmt.Errorf("apt-cache depends %s names no linux-image package", kernelMetaPackage)
	}
	dl := exec.CommandContext(ctx, "apt-get", "download", "-q", pkg)
	dl.Dir = dir
	if msg, err := dl.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w: %s", pkg, err, strings.TrimSpace(string(msg)))
	}
	debs, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files in %s", pkg, len(debs), dir)
	}
	root := filepath.Join(dir, "root")
	if msg, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], root).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, strings.TrimSpace(string(msg)))
	}
	k, err := newestKernel(filepath.Join(root, "boot", "vmlinuz-*"))
	if err != nil {
		return "", fmt.Errorf("package %s: %w", pkg, err)
	}
	return k, nil
}

// kernelDependency picks the kernel image package from the output of
// apt-cache depends linux-image-amd64 ("  Depends: linux-image-6.1.0-56-amd64").
func kernelDependency(out string) string {
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		v = strings.TrimSpace(v)
		if ok && strings.TrimPrefix(k, "|") == "Depends" && strings.HasPrefix(v, "linux-image-") && !strings.HasPrefix(v, "<") {
			return v
		}
	}
	return ""
}

// stderrOf returns ": <stderr>" for an exec.ExitError that captured some.
func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

// readLimited reads a file of at most limit bytes.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %s bytes", path, strconv.FormatInt(limit, 10))
	}
	return data, nil
}
