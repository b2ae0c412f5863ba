// Command vmboot measures how long a microVM takes to come up on this
// machine, bare and through Blixard, in one run:
//
//   - bare boot: qemu-system-x86_64 started directly on the default guest
//     image, with the kernel, initrd, kernel command line, memory, vCPU
//     count, -M microvm options and accelerator (with image.TCGArgs under
//     TCG) that internal/vmm's qemuArgs gives a VM; only the console
//     differs (stdio instead of a socket chardev, and no -S, no QMP). Timed
//     from just before the process starts to the guest agent's ready frame
//     on the serial console; QEMU is then killed.
//   - create→running: CreateVm (start=true, 1 vCPU, --memory MiB) against a
//     one-node cluster, timed from just before the call until a WatchVms
//     stream on the node (opened before the call) shows the VM RUNNING. The
//     VM is then deleted, and the next run waits until the watch shows it
//     gone and no process names its directory any more.
//   - task submit→result: SubmitTask of `sh -c 'echo hello'` (1 vCPU,
//     --memory MiB), timed from just before the call until WatchTask shows
//     the task ended; it must have SUCCEEDED with output "hello\n".
//
// The three are interleaved, one of each per round (bare, create, task), so
// that background load falls on them alike. One warm-up round comes first
// and is not counted: in it the node builds the default guest image (on its
// first VM), and page caches fill. During the warm-up VM, vmboot reads the
// orchestrator's real QEMU command line from /proc and checks that the bare
// boot uses the same kernel, initrd, machine, accelerator, memory, vCPUs
// and kernel command line (the TSC frequency in tsc_early_khz is measured
// by each process, so its value may differ by a few kHz).
//
// The cluster is one `blixard node` that vmboot starts itself, on a free
// loopback port, with its data directory in a new temporary directory. The
// guest agent must be beside the blixard binary (`make build` puts both in
// bin/); the node builds the default image from it, the Debian kernel and
// busybox, and vmboot then boots that very image bare.
//
// Each measurement reports p50, p99, min, max and mean, and the ratios of
// create→running to bare boot at p50 and at p99. Percentiles are nearest
// rank: with fewer than 100 runs, p99 is the max. The output ends with a
// markdown table for docs/BENCHMARKS.md and the machine it ran on: CPU
// count and model, accelerator, QEMU version and guest kernel release.
//
// At the end (also on an error, Ctrl-C or SIGTERM) the node is stopped with
// SIGTERM (SIGKILL after 30 s), every process whose command line names the
// temporary directory is killed (VM supervisors and QEMUs outlive their
// node by design), and the directory is removed unless --keep is given.
// Every wait has a deadline (--timeout).
//
//	make build && go run ./bench/vmboot
//	go run ./bench/vmboot -runs 50 -memory 256 -blixard ./bin/blixard -keep
package main
