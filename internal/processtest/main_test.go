package processtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// blixardBin is the path of the blixard binary that TestMain built.
var blixardBin string

// healthProbeModule is grpc-health-probe at the version the tests use;
// healthProbeBin is where TestMain installed it.
const healthProbeModule = "github.com/grpc-ecosystem/grpc-health-probe@v0.4.62"

// grpcurlModule is grpcurl at the version the tests use; grpcurlBin is
// where TestMain installed it.
const grpcurlModule = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4"

var healthProbeBin, grpcurlBin string

// TestMain builds the blixard binary once, into a temporary directory that
// it removes after the tests.
func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "blixard-processtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "processtest: make a temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	goTool, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "processtest: the go tool is needed to build blixard:", err)
		return 1
	}
	blixardBin = filepath.Join(dir, "blixard")
	build := exec.Command(goTool, "build", "-o", blixardBin, "github.com/blixard/blixard/cmd/blixard")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "processtest: go build ./cmd/blixard:", err)
		return 1
	}
	// The guest agent goes beside blixard, where nodes look for it.
	agent := exec.Command(goTool, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "blixard-agent"), "github.com/blixard/blixard/cmd/blixard-agent")
	agent.Env = append(os.Environ(), "CGO_ENABLED=0")
	agent.Stdout, agent.Stderr = os.Stderr, os.Stderr
	if err := agent.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "processtest: go build ./cmd/blixard-agent:", err)
		return 1
	}
	// The standard health probe, as operators and Kubernetes run it, and
	// grpcurl, fetched through the module proxy at pinned versions (one
	// module per go install).
	for _, mod := range []string{healthProbeModule, grpcurlModule} {
		install := exec.Command(goTool, "install", mod)
		install.Env = append(os.Environ(), "GOBIN="+dir, "GOFLAGS=-mod=mod")
		install.Stdout, install.Stderr = os.Stderr, os.Stderr
		if err := install.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "processtest: go install "+mod+":", err)
			return 1
		}
	}
	healthProbeBin = filepath.Join(dir, "grpc-health-probe")
	grpcurlBin = filepath.Join(dir, "grpcurl")
	return m.Run()
}
