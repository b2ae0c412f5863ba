package cli

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/blixard/blixard/internal/image"
)

// The image commands build real images from the kernel in /boot. busybox
// stands in for the agent binary: the build needs a static executable there
// and these tests boot nothing (internal/image's tests boot the real agent).
func TestImageBuildAndList(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "img")
	stdout, stderr, err := run(t, "image", "build", "--out", dir, "--agent", image.DefaultBusybox)
	if err != nil {
		t.Fatalf("image build: err %v, stderr %q", err, stderr)
	}
	// Its steps on stderr, one line each (no terminal here), in order.
	var steps []string
	for _, line := range strings.Split(strings.TrimSuffix(stderr, "\n"), "\n") {
		step, _, _ := strings.Cut(strings.TrimPrefix(line, "image build: "), " (")
		// A host without a kernel in /boot fetches one first.
		if step != "fetching a kernel" {
			steps = append(steps, step)
		}
	}
	if want := []string{"agent found", "kernel found", "kernel unpacked", "initramfs packed", "image written"}; !slices.Equal(steps, want) ||
		!strings.HasPrefix(stderr, "image build: agent found ("+image.DefaultBusybox+")\n") {
		t.Errorf("image build stderr\n%s\nwant a line for each step of %q", stderr, want)
	}
	img, err := image.Build(context.Background(), t.TempDir(), image.BuildOptions{Kernel: filepath.Join(dir, image.KernelFile), Agent: image.DefaultBusybox})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(stderr, "image build: image written ("+img.Digest+")\n") {
		t.Errorf("image build stderr\n%s\nwant it to end with the image's digest", stderr)
	}
	for _, want := range []string{
		"name:        default\n",
		"digest:      " + img.Digest + "\n",
		"kernel:      " + filepath.Join(dir, image.KernelFile) + " (" + img.KernelRelease + ")\n",
		"initrd:      " + filepath.Join(dir, image.InitrdFile) + "\n",
		"min memory:  " + mibText(img.MinMemoryMiB) + "\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("image build printed\n%s\nwithout %q", stdout, want)
		}
	}
	for _, f := range []string{image.KernelFile, image.InitrdFile, image.ManifestFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("image build wrote no %s: %v", f, err)
		}
	}

	data := t.TempDir()
	stdout, stderr, err = run(t, "image", "list", "--data-dir", data)
	if err != nil || stderr != "" || stdout != "no images in "+filepath.Join(data, "images")+"\n" {
		t.Fatalf("image list of an empty store: stdout %q, stderr %q, err %v", stdout, stderr, err)
	}
	stored, err := image.Ensure(context.Background(), data, image.DefaultName, image.BuildOptions{Kernel: filepath.Join(dir, image.KernelFile), Agent: image.DefaultBusybox})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, err = run(t, "image", "list", "--data-dir", data)
	if err != nil || stderr != "" {
		t.Fatalf("image list: err %v, stderr %q", err, stderr)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("image list printed %q, want a header and one image", stdout)
	}
	fields := strings.Fields(lines[1])
	want := []string{"default", shortDigest(stored.Digest), stored.KernelRelease, mibText(stored.MinMemoryMiB), stored.Dir}
	if strings.Join(fields, " ") != strings.Join(want, " ") {
		t.Fatalf("image list row %q, want %q", fields, want)
	}
}

func TestImageUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"image", "list"}, `required flag(s) "data-dir" not set`},
		{[]string{"image", "build", "extra"}, "takes no arguments"},
		{[]string{"image", "build", "--out", ""}, "--out: give a directory"},
		{[]string{"image", "frobnicate"}, `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, stderr, err := run(t, tt.args...)
			if err == nil || !strings.Contains(stderr, tt.want) || !strings.HasPrefix(stderr, "error: ") || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("stderr %q, err %v; want one error line with %q", stderr, err, tt.want)
			}
		})
	}
}

func TestShortDigest(t *testing.T) {
	tests := []struct{ in, want string }{
		{"sha256:0123456789abcdef0123", "sha256:0123456789ab"},
		{"sha256:0123", "sha256:0123"},
		{"weird", "weird"},
	}
	for _, tt := range tests {
		if got := shortDigest(tt.in); got != tt.want {
			t.Errorf("shortDigest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
