package vmm

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// shimEnv carries, from a supervisor to the copy of itself that it starts
// as QEMU's first stage, what that copy must do: join the VM's cgroups,
// then become QEMU (execve, same pid). So QEMU runs in its cgroups from its
// first instruction and everything it allocates is charged there: cgroup v1
// moves no charges with a process that joins later (move_charge_at_immigrate
// is deprecated, and refused by the kernel here), so a QEMU moved after it
// loaded the guest's kernel would leave that memory (measured: 70 MiB)
// charged to the node.
const shimEnv = "BLIXARD_VMM_SHIM"

// shimSpec is the value of shimEnv.
type shimSpec struct {
	// Cgroups are the directories of the cgroups to join.
	Cgroups []string `json:"cgroups"`
	// Path and Argv are the program to become.
	Path string   `json:"path"`
	Argv []string `json:"argv"`
}

// shimCommand returns the command that runs cmd (QEMU) inside the cgroup
// directories: this executable again, as the shim. The shim keeps cmd's
// directory, process attributes and output.
func shimCommand(cmd *exec.Cmd, cgroups []string) (*exec.Cmd, error) {
	spec, err := json.Marshal(shimSpec{Cgroups: cgroups, Path: cmd.Path, Argv: cmd.Args})
	if err != nil {
		return nil, fmt.Errorf("shim: %w", err)
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	// The kernel resolves /proc/self/exe in the new process: this very
	// binary, even if its file was replaced since it started.
	shim := exec.Command("/proc/self/exe", os.Args[1:]...)
	shim.Args[0] = os.Args[0]
	shim.Env = append(env, shimEnv+"="+string(spec))
	shim.Dir = cmd.Dir
	shim.SysProcAttr = cmd.SysProcAttr
	shim.Stdin, shim.Stdout, shim.Stderr = cmd.Stdin, cmd.Stdout, cmd.Stderr
	return shim, nil
}

// runShim is the shim's main (spec is the value of shimEnv): join the
// cgroups, then execve the program. A cgroup it cannot join is reported on
// stderr and skipped: the supervisor checks which cgroups QEMU is in.
// It returns only if the execve failed.
func runShim(spec string) error {
	var s shimSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return fmt.Errorf("shim: %s: %w", shimEnv, err)
	}
	if s.Path == "" || len(s.Argv) == 0 {
		return fmt.Errorf("shim: %s names no program", shimEnv)
	}
	pid := strconv.Itoa(os.Getpid())
	for _, dir := range s.Cgroups {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(pid), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "blixard vmm shim: join cgroup %s: %v; QEMU runs outside it\n", dir, err)
		}
	}
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, shimEnv+"=") {
			env = append(env, kv)
		}
	}
	err := syscall.Exec(s.Path, s.Argv, env)
	return fmt.Errorf("shim: exec %s: %w", s.Path, err)
}
