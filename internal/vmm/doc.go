// Package vmm runs microVMs on this host: a hypervisor driver (QEMU's
// microvm machine, under KVM or TCG) behind one interface, and one
// supervisor process per VM that owns the hypervisor process for the VM's
// whole life.
//
// # Processes
//
// The node's Manager does not run hypervisors itself. Start writes the VM's
// launch description to DataDir/vms/<name>/spec.json and spawns a
// supervisor ("blixard vmm supervise DIR", see Config.Supervisor) in its own
// session, with its output in DIR/supervisor.log. The supervisor:
//
//  1. listens on DIR/ctl.sock and creates the VM's cgroups (see below);
//  2. starts the hypervisor paused, in its own process group, inside the
//     cgroups from its first instruction (through a shim: a copy of the
//     supervisor's executable that joins them and then execs QEMU, since
//     cgroup v1 does not move memory charges with a process), and writes
//     DIR/handle.json (versioned; see Handle);
//  3. connects to its serial console and its control socket (QMP), checks
//     which cgroups it is in, and lets it run: nothing the guest prints is
//     missed;
//  4. reads the console with guest/wire: text lines are kept as a tail
//     (QEMU's logfile= keeps the whole raw console in DIR/console.log),
//     frames drive the VM's state;
//  5. writes DIR/status.json atomically on every change and answers on
//     DIR/ctl.sock (JSON lines; see the control protocol in control.go);
//  6. once the hypervisor is gone, removes the cgroups, writes the final
//     status, answers its clients, removes its sockets, and exits.
//
// Under TCG, a busy host makes the guest kernel's TSC calibration against
// the emulated PIT fail and its boot hang; Config.TCGCmdline carries the
// kernel argument that avoids it (tsc_early_khz, measured by the image
// package).
//
// A supervisor does not depend on the node that started it: the node may
// crash or restart, and a new Manager adopts running VMs with Recover.
// A hypervisor whose supervisor died is killed by the next Manager that
// sees it (its /proc/<pid>/cmdline must name the VM's directory first), and
// the VM is reported failed: nothing runs a VM without a supervisor.
//
// # States
//
// starting → running when the guest agent's ready frame arrives; stopped
// when the hypervisor exits 0 (the guest powered off), or after a Stop or
// Kill asked by the node; failed otherwise: the hypervisor died or exited
// non-zero, no ready frame within Config.BootTimeout, the fencing lease
// expired, or (task VMs) the task exited non-zero or timed out. A task VM
// whose task exited 0 is stopped; its TaskResult carries the exit code and
// the last 4096 bytes of its output. A VM in a final state (stopped,
// failed) never changes again.
//
// # Fencing
//
// When Config.Lease is set, each supervisor holds a lease on its VM: it
// kills the hypervisor (state failed, reason "lease expired") when the
// lease runs out. The node extends the leases with Manager.Renew while it
// can reach a quorum; a node that is cut off, hung or dead stops renewing,
// and its VMs stop within the lease even though their supervisors outlive
// the node. Lease deadlines travel as CLOCK_MONOTONIC instants, so a node
// paused between computing a deadline and sending it cannot extend a lease
// beyond what it was granted. A VM starts with the latest lease in its
// launch file; Renew skips it until its supervisor has answered, and Start
// then hands it any lease granted meanwhile.
//
// # Limits
//
// Each VM's hypervisor runs in cgroups named blixard/<node>-<vm>, where
// <node> is a short hash of the node's data directory (several nodes may
// share a machine). Under cgroup v2 (CgroupRoot/cgroup.controllers lists cpu
// and memory) they are CgroupRoot/blixard/<node>-<vm> with cpu.max and
// memory.max; under v1 they sit below the supervisor's own cgroup in the cpu
// and memory hierarchies (so a node confined by its service manager keeps
// its VMs within its own limits), with cpu.cfs_quota_us and
// memory.limit_in_bytes. The CPU quota is one CPU per vCPU; the memory limit
// is MemoryLimitBytes: guest memory plus MemoryOverheadMiB for QEMU itself.
// A host that allows no cgroups logs a warning and the VM runs without
// limits; Status.Limits says what was applied.
//
// # Waits
//
// Every wait has a deadline: QEMU has been seen to hang at exit about once
// in forty boots, so stopping escalates from the agent's poweroff to QMP
// quit to SIGKILL, StopGrace apart.
package vmm
