package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The default image's kernel is extracted from /boot's bzImage.
func TestKernelExtractedFromBoot(t *testing.T) {
	src, err := newestBootKernel()
	if err != nil {
		t.Fatalf("this test needs a Debian kernel in /boot (apt-get install linux-image-amd64): %v", err)
	}
	img := mustImage(t)
	data, err := os.ReadFile(img.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, elfMagic) {
		t.Fatalf("%s is not an ELF file", img.Kernel)
	}
	end, err := checkPVH(data)
	if err != nil {
		t.Fatal(err)
	}
	if end < 16<<20 || end > 1<<30 {
		t.Fatalf("the kernel's image ends at %#x", end)
	}
	// /boot/vmlinuz-6.1.0-56-amd64 holds release 6.1.0-56-amd64.
	if want := strings.TrimPrefix(filepath.Base(src), "vmlinuz-"); img.KernelRelease != want {
		t.Fatalf("kernel release %q, want %q", img.KernelRelease, want)
	}
	// Given the vmlinux itself, Build copies it.
	out := filepath.Join(t.TempDir(), "vmlinux")
	info, err := writeVMLinux(context.Background(), img.Kernel, out)
	if err != nil {
		t.Fatal(err)
	}
	copied, _ := os.ReadFile(out)
	if !bytes.Equal(copied, data) || info.release != img.KernelRelease || info.loadEnd != end {
		t.Fatalf("the vmlinux was not copied as it is (release %q, end %#x)", info.release, info.loadEnd)
	}
}

func TestExtractVMLinux(t *testing.T) {
	// A small ELF stands in for the kernel inside a bzImage-like file.
	elfData, err := os.ReadFile(DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(elfData)
	zw.Close()
	xzOut, err := exec.Command("sh", "-c", "xz -c --check=crc32 < "+DefaultBusybox).Output()
	if err != nil {
		t.Fatalf("xz: %v", err)
	}
	setup := bytes.Repeat([]byte("MZ setup code "), 100)
	tests := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"xz", concat(setup, xzOut, []byte("trailing data")), ""},
		// A false xz magic before the real stream is skipped.
		{"xz after a false start", concat(setup, xzMagic, []byte("junk"), xzOut), ""},
		{"gzip", concat(setup, gz.Bytes(), []byte("trailing")), ""},
		{"nothing compressed", setup, "neither an ELF vmlinux nor a bzImage"},
		{"a stream that is not an ELF", concat(setup, xzOf(t, []byte("not a kernel"))), "not an ELF file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := extractVMLinux(context.Background(), tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, elfData) {
				t.Fatalf("extracted %d bytes, want the %d of the ELF", len(got), len(elfData))
			}
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func xzOf(t *testing.T, data []byte) []byte {
	t.Helper()
	cmd := exec.Command("xz", "-c")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestKernelWithoutPVHRefused(t *testing.T) {
	// busybox is an x86-64 ELF without the PVH note.
	_, err := writeVMLinux(context.Background(), DefaultBusybox, filepath.Join(t.TempDir(), "vmlinux"))
	if err == nil || !strings.Contains(err.Error(), "CONFIG_PVH") {
		t.Fatalf("error %v, want one about CONFIG_PVH", err)
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"vmlinuz-6.1.0-9-amd64", "vmlinuz-6.1.0-56-amd64", -1},
		{"vmlinuz-6.1.0-56-amd64", "vmlinuz-6.1.0-56-amd64", 0},
		{"vmlinuz-6.10.0-1-amd64", "vmlinuz-6.9.0-1-amd64", 1},
		{"vmlinuz-6.1.0-010-amd64", "vmlinuz-6.1.0-9-amd64", 1},
		{"vmlinuz-6.1", "vmlinuz-6.1.0", -1},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if (got < 0) != (tt.want < 0) || (got > 0) != (tt.want > 0) {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestKernelDependency(t *testing.T) {
	out := `linux-image-amd64
  Depends: linux-image-6.1.0-56-amd64
  Recommends: firmware-linux-free
`
	if got := kernelDependency(out); got != "linux-image-6.1.0-56-amd64" {
		t.Fatalf("got %q", got)
	}
	if got := kernelDependency("linux-image-amd64\n  Depends: <linux-image-virtual>\n"); got != "" {
		t.Fatalf("a virtual package was chosen: %q", got)
	}
}

func TestHostTSCKHz(t *testing.T) {
	khz, err := HostTSCKHz()
	if err != nil {
		t.Fatal(err)
	}
	if khz < 100_000 || khz > 10_000_000 {
		t.Fatalf("TSC at %d kHz", khz)
	}
	cmdline, err := TCGCmdline()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(cmdline, Cmdline+" tsc_early_khz=") || !strings.HasSuffix(cmdline, " tsc=reliable") {
		t.Fatalf("TCG command line %q", cmdline)
	}
}
