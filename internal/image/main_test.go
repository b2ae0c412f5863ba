package image

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// testDir holds what the tests build once per test binary; TestMain removes
// it.
var testDir string

func TestMain(m *testing.M) {
	var err error
	if testDir, err = os.MkdirTemp("", "blixard-image-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(testDir)
	os.Exit(code)
}

// testAgent is the agent built from this tree, static, once.
var testAgent = sync.OnceValues(func() (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if goBin, err = exec.LookPath(filepath.Join(os.Getenv("GOROOT"), "bin", "go")); err != nil {
			return "", fmt.Errorf("the go command, to build the agent: %w", err)
		}
	}
	out := filepath.Join(testDir, "blixard-agent")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", out, "github.com/blixard/blixard/cmd/blixard-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build blixard-agent: %w\n%s", err, msg)
	}
	return out, nil
})

// testImage is the default image built from /boot's kernel and testAgent,
// once.
var testImage = sync.OnceValues(func() (*Image, error) {
	agent, err := testAgent()
	if err != nil {
		return nil, err
	}
	return Build(context.Background(), filepath.Join(testDir, "image"), BuildOptions{Agent: agent})
})

func mustAgent(t testing.TB) string {
	t.Helper()
	agent, err := testAgent()
	if err != nil {
		t.Fatal(err)
	}
	return agent
}

func mustImage(t testing.TB) *Image {
	t.Helper()
	img, err := testImage()
	if err != nil {
		t.Fatal(err)
	}
	return img
}
