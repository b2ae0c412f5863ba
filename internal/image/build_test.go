package image

import (
	"context"
	"strings"
	"testing"
)

// TestBuildReportsProgress checks that Build tells BuildOptions.Progress of
// each step, in order, with what the step found or made, and that the
// callback changes nothing in the image.
func TestBuildReportsProgress(t *testing.T) {
	opts := storeOptions(t)
	plain, err := Build(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	type step struct{ step, detail string }
	var got []step
	opts.Progress = func(s, detail string) { got = append(got, step{s, detail}) }
	img, err := Build(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != plain.Digest {
		t.Errorf("digest %s with a progress callback, %s without", img.Digest, plain.Digest)
	}
	want := []struct {
		step string
		ok   func(detail string) bool
	}{
		{"agent found", func(d string) bool { return d == opts.Agent }},
		{"kernel found", func(d string) bool { return d == opts.Kernel }},
		{"kernel unpacked", func(d string) bool {
			return (img.KernelRelease == "" || strings.HasPrefix(d, img.KernelRelease+", ")) && strings.HasSuffix(d, " MiB")
		}},
		{"initramfs packed", func(d string) bool {
			return strings.Contains(d, " MiB, busybox with ") && strings.HasSuffix(d, " applets")
		}},
		{"image written", func(d string) bool { return d == img.Digest }},
	}
	if len(got) != len(want) {
		t.Fatalf("progress steps %q, want %d", got, len(want))
	}
	for i, w := range want {
		if got[i].step != w.step || !w.ok(got[i].detail) {
			t.Errorf("step %d: %q (%q), want %q", i, got[i].step, got[i].detail, w.step)
		}
	}
}
