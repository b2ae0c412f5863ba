package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// storeOptions builds from the test image's vmlinux (a copy, no xz) and the
// test agent, which keeps each build short.
func storeOptions(t *testing.T) BuildOptions {
	t.Helper()
	return BuildOptions{Kernel: mustImage(t).Kernel, Agent: mustAgent(t)}
}

func TestBuildIsDeterministic(t *testing.T) {
	opts := storeOptions(t)
	a, err := Build(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(context.Background(), t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest || !strings.HasPrefix(a.Digest, "sha256:") || len(a.Digest) != len("sha256:")+64 {
		t.Fatalf("digests %s and %s", a.Digest, b.Digest)
	}
	if a.Name != DefaultName || a.MinMemoryMiB != DefaultMinMemoryMiB {
		t.Fatalf("image %+v", a)
	}
	// The built directory loads as it was built.
	got, _, err := loadDir(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if *got != *a {
		t.Fatalf("loaded %+v, built %+v", got, a)
	}
}

func TestBuildRefusesDynamicBinaries(t *testing.T) {
	opts := storeOptions(t)
	// /bin/sh is dash, dynamically linked.
	for _, o := range []BuildOptions{
		{Kernel: opts.Kernel, Agent: "/bin/sh"},
		{Kernel: opts.Kernel, Agent: opts.Agent, Busybox: "/bin/sh"},
	} {
		_, err := Build(context.Background(), t.TempDir(), o)
		if err == nil || !strings.Contains(err.Error(), "dynamically linked") {
			t.Fatalf("error %v, want one about a dynamically linked binary", err)
		}
	}
}

func TestEnsureBuildsCachesAndRebuilds(t *testing.T) {
	ctx := context.Background()
	opts := storeOptions(t)
	data := t.TempDir()

	img, err := Ensure(ctx, data, DefaultName, opts)
	if err != nil {
		t.Fatal(err)
	}
	digestDir := "sha256-" + strings.TrimPrefix(img.Digest, "sha256:")
	if img.Name != DefaultName || img.Dir != filepath.Join(data, "images", digestDir) {
		t.Fatalf("image %+v", img)
	}
	if target, err := os.Readlink(filepath.Join(data, "images", DefaultName)); err != nil || target != digestDir {
		t.Fatalf("images/default -> %q, %v", target, err)
	}

	// Present and intact: the same files, not rebuilt.
	before, _ := os.Stat(img.Kernel)
	again, err := Ensure(ctx, data, DefaultName, opts)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(again.Kernel)
	if *again != *img || !os.SameFile(before, after) || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("the cached image was not reused: %+v", again)
	}
	if loaded, err := Load(data, DefaultName); err != nil || *loaded != *img {
		t.Fatalf("Load: %+v, %v", loaded, err)
	}
	list, err := List(data)
	if err != nil || len(list) != 1 || *list[0] != *img {
		t.Fatalf("List: %v, %v", list, err)
	}

	// Damaged: rebuilt, to the same digest.
	f, err := os.OpenFile(img.Initrd, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("X"), 200)
	f.Close()
	repaired, err := Ensure(ctx, data, DefaultName, opts)
	if err != nil {
		t.Fatal(err)
	}
	if repaired.Digest != img.Digest || repaired.verify() != nil {
		t.Fatalf("repaired %+v", repaired)
	}

	// Out of date: a new agent gives a new image; the old one stays.
	newAgent := filepath.Join(t.TempDir(), "blixard-agent")
	agentData, _ := os.ReadFile(opts.Agent)
	if err := os.WriteFile(newAgent, append(agentData, "upgraded"...), 0o755); err != nil {
		t.Fatal(err)
	}
	upgraded, err := Ensure(ctx, data, DefaultName, BuildOptions{Kernel: opts.Kernel, Agent: newAgent})
	if err != nil {
		t.Fatal(err)
	}
	if upgraded.Digest == img.Digest {
		t.Fatal("a new agent gave the same image")
	}
	if _, err := os.Stat(img.Kernel); err != nil {
		t.Fatalf("the old image's files went away: %v", err)
	}
}

func TestEnsureUnknownImage(t *testing.T) {
	data := t.TempDir()
	_, err := Ensure(context.Background(), data, "custom", BuildOptions{})
	if !errors.Is(err, ErrUnknownImage) || !strings.Contains(err.Error(), `"custom"`) {
		t.Fatalf("Ensure(custom): %v, want ErrUnknownImage naming it", err)
	}
	if _, err := Load(data, "default"); !errors.Is(err, ErrUnknownImage) {
		t.Fatalf("Load(default) in an empty store: %v", err)
	}
	if list, err := List(filepath.Join(data, "nothing-here")); err != nil || len(list) != 0 {
		t.Fatalf("List of a missing store: %v, %v", list, err)
	}
}

func TestImageNames(t *testing.T) {
	for _, name := range []string{"", "Default", "../x", "a/b", ".hidden", "sha256-abc", strings.Repeat("a", 64)} {
		if _, err := Load(t.TempDir(), name); err == nil || errors.Is(err, ErrUnknownImage) {
			t.Errorf("Load(%q): %v, want a bad-name error", name, err)
		}
	}
	for _, name := range []string{"default", "alpine-3.19", "a_b.c"} {
		if err := checkName(name); err != nil {
			t.Errorf("checkName(%q): %v", name, err)
		}
	}
}

func TestListReportsBrokenImages(t *testing.T) {
	data := t.TempDir()
	img, err := Ensure(context.Background(), data, DefaultName, storeOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("sha256-0000", filepath.Join(data, "images", "broken")); err != nil {
		t.Fatal(err)
	}
	list, err := List(data)
	if err == nil || !strings.Contains(err.Error(), `"broken"`) {
		t.Fatalf("List error %v, want one naming the broken image", err)
	}
	if len(list) != 1 || list[0].Digest != img.Digest {
		t.Fatalf("List %v, want the default image", list)
	}
}

func TestEnsureWaitsForTheStoreLock(t *testing.T) {
	data := t.TempDir()
	root := filepath.Join(data, "images")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	unlock, err := lockStore(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := Ensure(ctx, data, DefaultName, BuildOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ensure while the store is locked: %v, want the context's deadline", err)
	}
}

func TestLocateAgent(t *testing.T) {
	agent := mustAgent(t)
	t.Setenv(AgentEnv, agent)
	if got, err := LocateAgent(); err != nil || got != agent {
		t.Fatalf("LocateAgent with $%s: %q, %v", AgentEnv, got, err)
	}
	t.Setenv(AgentEnv, filepath.Join(t.TempDir(), "missing"))
	if _, err := LocateAgent(); err == nil || !strings.Contains(err.Error(), AgentEnv) {
		t.Fatalf("LocateAgent with a bad $%s: %v", AgentEnv, err)
	}
	t.Setenv(AgentEnv, "")
	t.Setenv("PATH", t.TempDir())
	if _, err := LocateAgent(); err == nil || !strings.Contains(err.Error(), "go build") {
		t.Fatalf("LocateAgent with nothing to find: %v, want advice on building it", err)
	}
}
