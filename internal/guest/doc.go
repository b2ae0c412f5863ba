// Package guest is the in-VM agent: the program that runs as PID 1 of a
// Blixard guest's initramfs (built as cmd/blixard-agent) and talks to the
// host over the serial console with the frames of package wire.
//
// # What the agent does, in order
//
//  1. Main, as PID 1: mounts /proc, /sys, /dev (devtmpfs) and /tmp (tmpfs),
//     sets PATH=/bin:/sbin:/usr/bin:/usr/sbin, and opens the console: the
//     first of /dev/ttyS0 and /dev/console that opens, read-write, put in raw
//     mode with echo off so that frames the host writes are not echoed back.
//     It refuses to run as any other PID (it would mount over the host's
//     /dev and power the host off).
//  2. It prints "blixard-agent: ready (kernel <release>)" on the console and
//     sends a wire.KindReady frame, then a wire.KindHeartbeat frame every
//     HeartbeatInterval (1 s).
//  3. If TaskFile (/blixard/task.json, a JSON wire.Run, put there by
//     image.WithFiles) exists, it runs that task at once. It also obeys
//     frames read from the console: wire.KindRun runs a task and
//     wire.KindPoweroff kills any running task and powers the VM off.
//  4. A task runs with Runner: its output is streamed as wire.KindOutput
//     frames, and a wire.KindExit frame reports how it ended. A task whose
//     wire.Run has PoweroffAfter powers the VM off after its exit frame.
//  5. Power-off drains the console (tcdrain), syncs, and calls
//     reboot(POWER_OFF); if that fails it asks for a restart, which ends a
//     QEMU started with -no-reboot too. PID 1 never exits: that would panic
//     the kernel.
//
// # Invariants
//
//   - Every byte the agent writes to the console goes through one Console,
//     whose mutex keeps each frame and each text line whole: heartbeats and
//     output never interleave inside a line.
//   - One task runs at a time (the frames carry no task id); a Run frame
//     that arrives while a task runs is refused with a console text line.
//     The agent is idle again before it writes a task's exit frame, so a
//     Run frame the host sends once it has read the exit frame is accepted.
//   - The Reaper is the only caller of wait4 in the agent: as PID 1 it
//     inherits every orphan, and it hands the exit status of the processes
//     it started to their waiters and discards the rest.
//
// # Task semantics
//
// The command is looked up in the task's PATH (the base environment's,
// /bin:/sbin:/usr/bin:/usr/sbin, unless the task's Env sets PATH); stdin is
// /dev/null; the task runs in its own process group. When the task's
// process exits, or its TimeoutMillis passes, the whole group is killed with
// SIGKILL, so nothing a task started outlives it. Exit codes: the process's
// own; 128+n when killed by signal n; 137 with TimedOut when the timeout
// killed it; 127 with Error when it could not start.
//
// Everything except Main and its PID 1 helpers runs as an ordinary process,
// so the runner and the agent's command loop are tested on the host over
// pipes.
package guest
