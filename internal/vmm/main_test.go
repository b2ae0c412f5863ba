package vmm

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
	"github.com/blixard/blixard/internal/image"
)

// superviseEnv, set to "1", makes the test binary a supervisor: the tests'
// Manager re-executes the test binary with the VM's directory as its last
// argument, as the blixard binary runs "blixard vmm supervise DIR".
const superviseEnv = "BLIXARD_VMM_TEST_SUPERVISE"

func TestMain(m *testing.M) {
	if os.Getenv(superviseEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := Supervise(ctx, os.Args[len(os.Args)-1])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "supervise:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Supervisors spawned by the tests inherit it.
	os.Setenv(superviseEnv, "1")
	code := m.Run()
	if imageDir != "" {
		os.RemoveAll(imageDir)
	}
	os.Exit(code)
}

var (
	imageOnce sync.Once
	imageDir  string
	testImg   *image.Image
	imageErr  error
)

// bootImage builds, once per test binary, the agent and the default guest
// image that the boot tests run.
func bootImage(t *testing.T) *image.Image {
	t.Helper()
	requireQEMU(t)
	imageOnce.Do(func() {
		imageDir, imageErr = os.MkdirTemp("", "blixard-vmm-test-")
		if imageErr != nil {
			return
		}
		agent := filepath.Join(imageDir, "blixard-agent")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", agent, "github.com/blixard/blixard/cmd/blixard-agent")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			imageErr = fmt.Errorf("build the agent: %v: %s", err, out)
			return
		}
		testImg, imageErr = image.Build(ctx, filepath.Join(imageDir, "image"), image.BuildOptions{Agent: agent})
	})
	if imageErr != nil {
		t.Fatalf("guest image: %v", imageErr)
	}
	return testImg
}

// tcgCmdline is Config.TCGCmdline as the runtime would set it.
func tcgCmdline(t *testing.T) string {
	t.Helper()
	args, err := image.TCGArgs()
	if err != nil {
		t.Fatal(err)
	}
	return args
}

// requireQEMU fails the test (it never skips: a host that cannot run VMs
// fails the VM tests) when QEMU is missing.
func requireQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(DefaultQEMU); err != nil {
		t.Fatalf("internal/vmm boot tests need %s: %v (install the %s package)", DefaultQEMU, err, qemuPackage)
	}
}

// taskInitrd is the test image's initramfs with run as its task.
func taskInitrd(t *testing.T, img *image.Image, run wire.Run) string {
	t.Helper()
	data, err := json.Marshal(run)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "task.img")
	if err := image.WithFiles(img.Initrd, out, []image.File{{Path: "/blixard/task.json", Mode: 0o644, Data: data}}); err != nil {
		t.Fatal(err)
	}
	return out
}

// newTestManager returns a Manager on a fresh data directory whose
// supervisors are this test binary. Cleanup kills every VM process the
// directory names, whatever state the test left it in.
func newTestManager(t *testing.T, modify func(*Config)) *Manager {
	t.Helper()
	cfg := Config{
		DataDir:     t.TempDir(),
		Supervisor:  []string{os.Args[0]},
		Accel:       AccelTCG,
		TCGCmdline:  tcgCmdline(t),
		StopGrace:   3 * time.Second,
		BootTimeout: 60 * time.Second,
		Logger:      slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if modify != nil {
		modify(&cfg)
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		killAll(t, cfg.DataDir)
	})
	return m
}

// killAll kills the supervisors and QEMUs of every VM in dataDir and waits
// for them to be gone.
func killAll(t *testing.T, dataDir string) {
	dirs, _ := filepath.Glob(filepath.Join(dataDir, "vms", "*"))
	for _, dir := range dirs {
		var pids []int
		if h, err := readHandle(dir); err == nil {
			pids = append(pids, h.SupervisorPid, h.QEMUPid)
		}
		if st, err := readStatus(dir); err == nil {
			pids = append(pids, st.SupervisorPid, st.QEMUPid)
		}
		for _, pid := range pids {
			// A supervisor whose VM has ended exits by itself at once.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = waitGone(ctx, pid)
			cancel()
			if cmdlineNames(pid, dir) {
				t.Logf("cleanup: killing pid %d of %s", pid, dir)
				_ = killProcessGroup(pid)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				if err := waitGone(ctx, pid); err != nil {
					t.Errorf("cleanup: %v", err)
				}
				cancel()
			}
		}
		if st, err := readStatus(dir); err == nil {
			_ = removeCgroups(st.Limits.Dirs)
		}
		// A supervisor is this test binary: its races and panics land in
		// its log, not in the test's output.
		if log, err := os.ReadFile(filepath.Join(dir, supervisorLog)); err == nil {
			for _, bad := range []string{"DATA RACE", "panic:", "fatal error:"} {
				if strings.Contains(string(log), bad) {
					t.Errorf("%s/%s reports %q:\n%s", dir, supervisorLog, bad, log)
				}
			}
		}
	}
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
