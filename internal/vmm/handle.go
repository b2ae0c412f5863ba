package vmm

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// HandleVersion is the version of handle.json this package writes. A handle
// of another version is refused (ErrHandleVersion): its VM is left alone.
const HandleVersion = 1

// ErrHandleVersion is a handle.json this build cannot read.
var ErrHandleVersion = errors.New("unsupported handle version")

const handleFile = "handle.json"

// Handle is DIR/handle.json: what a Manager needs to find a VM's processes
// again after the node restarts. The supervisor writes it once the
// hypervisor has started, and again once it has checked the hypervisor's
// cgroups (Limits then says what applies; Limits.Dirs are what to remove).
type Handle struct {
	Version       int       `json:"version"`
	Name          string    `json:"name"`
	Generation    uint64    `json:"generation"`
	Dir           string    `json:"dir"`
	Driver        string    `json:"driver"`
	SupervisorPid int       `json:"supervisor_pid"`
	QEMUPid       int       `json:"qemu_pid"`
	Accel         string    `json:"accel"`
	Limits        Limits    `json:"limits"`
	StartedAt     time.Time `json:"started_at"`
}

func writeHandle(h Handle) error {
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", handleFile, err)
	}
	return writeFileAtomic(filepath.Join(h.Dir, handleFile), append(data, '\n'))
}

// readHandle reads dir/handle.json. It refuses a handle of another version
// with an error wrapping ErrHandleVersion, before looking at anything else
// in it.
func readHandle(dir string) (Handle, error) {
	var h Handle
	path := filepath.Join(dir, handleFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return h, fmt.Errorf("read handle: %w", err)
	}
	var v struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return h, fmt.Errorf("read handle %s: %w", path, err)
	}
	if v.Version == nil {
		return h, fmt.Errorf("read handle %s: no version: %w", path, ErrHandleVersion)
	}
	if *v.Version != HandleVersion {
		return h, fmt.Errorf("read handle %s: version %d, this build reads version %d: %w", path, *v.Version, HandleVersion, ErrHandleVersion)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("read handle %s: %w", path, err)
	}
	if h.Name == "" || h.Dir == "" || h.SupervisorPid <= 0 || h.QEMUPid <= 0 {
		return h, fmt.Errorf("read handle %s: incomplete (name %q, dir %q, supervisor pid %d, qemu pid %d)", path, h.Name, h.Dir, h.SupervisorPid, h.QEMUPid)
	}
	return h, nil
}
