package vmm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blixard/blixard/internal/guest/wire"
)

// Deadlines of the supervisor's own steps.
const (
	// attachTimeout bounds the wait for QEMU's sockets after it started.
	attachTimeout = 10 * time.Second
	// resumeTimeout bounds the QMP cont that lets the guest run.
	resumeTimeout = 10 * time.Second
	// drainTimeout bounds reading what the console and QMP still hold once
	// QEMU has exited.
	drainTimeout = 2 * time.Second
	// consoleWriteTimeout bounds writing a frame to the guest.
	consoleWriteTimeout = time.Second
	// consoleItemBuffer bounds the console items queued for the main loop.
	consoleItemBuffer = 64
)

// Supervise is the supervisor's main: it runs the VM described by
// vmDir/spec.json until its hypervisor is gone (see the package
// documentation for the steps), logging to stderr. It returns nil once it
// has recorded the VM's final status, whether stopped or failed; an error
// when it could not read its launch spec or record the end. Cancelling ctx
// stops the VM as a stop request does (the VM ends stopped).
func Supervise(ctx context.Context, vmDir string) error {
	if spec := os.Getenv(shimEnv); spec != "" {
		// This process is a supervisor's shim: it becomes QEMU.
		return runShim(spec)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	dir, err := filepath.Abs(vmDir)
	if err != nil {
		return fmt.Errorf("supervise %s: %w", vmDir, err)
	}
	l, err := readLaunch(dir)
	if err != nil {
		// Without a launch spec there is no VM to run; say so where the
		// node looks.
		st := Status{Name: filepath.Base(dir), State: StateFailed, Reason: "supervisor: " + err.Error(), SupervisorPid: os.Getpid(), UpdatedAt: time.Now()}
		if werr := writeStatus(dir, st); werr != nil {
			return fmt.Errorf("supervise %s: %w (and recording the failure: %v)", dir, err, werr)
		}
		return fmt.Errorf("supervise %s: %w", dir, err)
	}
	s := &supervisor{
		l:       l,
		log:     logger.With("vm", l.Spec.Name, "generation", l.Spec.Generation),
		drv:     drivers[l.Driver],
		qemuErr: newTail(ConsoleTailBytes),
		ctl:     make(chan ctlConn),
		done:    make(chan struct{}),
		grace:   time.Duration(l.StopGraceMillis) * time.Millisecond,
	}
	s.t = newTracker(Status{
		Name:          l.Spec.Name,
		Generation:    l.Spec.Generation,
		SupervisorPid: os.Getpid(),
		Accel:         l.Accel,
	}, l.Spec.Task)
	return s.run(ctx)
}

// supervisor runs one VM. Its main loop (run) owns every field but the
// ones marked otherwise.
type supervisor struct {
	l   launch
	log *slog.Logger
	drv driver
	t   *tracker
	cg  *cgroups
	cmd *exec.Cmd
	m   machine
	// qemuErr keeps the end of QEMU's stderr; read only after its exit.
	qemuErr *tail
	ln      *net.UnixListener
	// ctl carries control requests from the connection goroutines.
	ctl chan ctlConn
	// done is closed once the final status is in final.
	done  chan struct{}
	final atomic.Pointer[Status]
	// writers counts the goroutines still writing replies.
	writers  sync.WaitGroup
	watchers []*watcher
	// waiters are stop and kill requests that get the final status.
	waiters []net.Conn
	grace   time.Duration

	resumedAt time.Time
	// Timers; nil when not armed.
	bootTimer, taskTimer, taskEndTimer, leaseTimer, stopTimer *time.Timer
	// stopStage: 0 not stopping; 1 poweroff sent; 2 QMP quit sent;
	// 3 SIGKILL sent.
	stopStage  int
	leaseUntil int64
}

type ctlConn struct {
	req  ctlRequest
	conn net.Conn
}

func (s *supervisor) run(ctx context.Context) error {
	l := s.l
	s.publish()
	var err error
	s.ln, err = listenUnix(l.Dir, ctlSocket)
	if err != nil {
		return s.failEarly(err)
	}
	go s.accept()

	s.cg = makeCgroups(l.CgroupRoot, l.CgroupName, l.Spec)
	s.t.st.Limits = s.cg.limits
	qemu, err := s.drv.command(l)
	if err != nil {
		return s.failEarly(err)
	}
	qemu.Stdin = nil
	qemu.Stdout = io.MultiWriter(os.Stderr, s.qemuErr)
	qemu.Stderr = qemu.Stdout
	s.cmd = qemu
	if len(s.cg.limits.Dirs) > 0 {
		if s.cmd, err = shimCommand(qemu, s.cg.limits.Dirs); err != nil {
			return s.failEarly(err)
		}
	}
	for _, name := range []string{serialSocket, qmpSocket} {
		_ = os.Remove(filepath.Join(l.Dir, name))
	}
	s.log.Info("starting hypervisor", "argv", qemu.Args)
	if err := s.cmd.Start(); err != nil {
		return s.failEarly(fmt.Errorf("start %s: %w", l.Binary, err))
	}
	exitCh := make(chan error, 1)
	go func() { exitCh <- s.cmd.Wait() }()
	pid := s.cmd.Process.Pid
	s.t.st.QEMUPid, s.t.st.StartedAt = pid, time.Now()
	if err := s.writeHandle(); err != nil {
		return s.abort(exitCh, err.Error())
	}
	s.publish()

	// Attach to the paused QEMU, unless it dies first.
	attachCtx, cancelAttach := context.WithTimeout(ctx, attachTimeout)
	type attached struct {
		m   machine
		err error
	}
	ach := make(chan attached, 1)
	go func() {
		m, err := s.drv.attach(attachCtx, l)
		ach <- attached{m, err}
	}()
	select {
	case a := <-ach:
		cancelAttach()
		if a.err != nil {
			return s.abort(exitCh, "attach: "+a.err.Error())
		}
		s.m = a.m
	case werr := <-exitCh:
		cancelAttach()
		if a := <-ach; a.m != nil {
			s.m = a.m
		}
		return s.finish(werr, nil)
	}
	// QEMU listens: the shim has become QEMU. Check which cgroups it
	// joined.
	s.cg.verify(pid)
	s.t.st.Limits = s.cg.limits
	if s.cg.limits.Warning != "" {
		s.log.Warn("cgroup limits not all applied", "limits", s.cg.limits)
	}
	if err := s.writeHandle(); err != nil {
		return s.abort(exitCh, err.Error())
	}
	items := make(chan wire.Item, consoleItemBuffer)
	go readConsole(s.m.console(), items)
	if l.LeaseUntilMonoNs > 0 && monoNow() >= l.LeaseUntilMonoNs {
		// The fencing lease ran out while QEMU was being set up: the
		// guest must not run a single instruction.
		return s.abort(exitCh, "lease expired before the guest ran")
	}
	resumeCtx, cancelResume := context.WithTimeout(ctx, resumeTimeout)
	err = s.m.resume(resumeCtx)
	cancelResume()
	if err != nil {
		return s.abort(exitCh, "resume: "+err.Error())
	}
	s.resumedAt = time.Now()
	s.publish()

	bootTimeout := time.Duration(l.BootTimeoutMillis) * time.Millisecond
	s.bootTimer = time.NewTimer(bootTimeout)
	if task := l.Spec.Task; task != nil && task.TimeoutMillis > 0 {
		s.taskTimer = time.NewTimer(bootTimeout + time.Duration(task.TimeoutMillis)*time.Millisecond)
	}
	if l.LeaseUntilMonoNs > 0 {
		s.leaseUntil = l.LeaseUntilMonoNs
		s.leaseTimer = time.NewTimer(time.Duration(s.leaseUntil - monoNow()))
	}
	ctxDone := ctx.Done()
	for {
		select {
		case <-ctxDone:
			ctxDone = nil
			s.log.Info("supervisor terminated: stopping the VM")
			s.t.end(StateStopped, "stopped: supervisor terminated")
			s.beginStop(s.grace)
		case werr := <-exitCh:
			return s.finish(werr, items)
		case it, ok := <-items:
			if !ok {
				items = nil
				continue
			}
			s.consoleItem(it)
		case r := <-s.ctl:
			s.control(r)
		case <-timerC(s.bootTimer):
			s.bootTimer = nil
			if !s.t.st.Ready {
				s.killNow(StateFailed, fmt.Sprintf("boot timeout: no ready frame in %s", bootTimeout))
			}
		case <-timerC(s.taskTimer):
			s.taskTimer = nil
			if !s.t.taskEnded() {
				s.killNow(StateFailed, "timeout")
			}
		case <-timerC(s.taskEndTimer):
			s.taskEndTimer = nil
			s.log.Info("task ended but the VM is still up: stopping it")
			s.beginStop(s.grace)
		case <-timerC(s.leaseTimer):
			s.leaseTimer = nil
			if left := s.leaseUntil - monoNow(); left > 0 {
				s.leaseTimer = time.NewTimer(time.Duration(left))
				continue
			}
			s.log.Warn("fencing lease expired: killing the VM")
			s.killNow(StateFailed, "lease expired")
		case <-timerC(s.stopTimer):
			s.stopTimer = nil
			if !s.escalateStop() {
				// SIGKILL did not end it within the grace (a process
				// stuck in the kernel). Nothing more can be done:
				// report it and leave.
				s.log.Error("QEMU did not exit after SIGKILL", "pid", s.cmd.Process.Pid)
				s.t.endState, s.t.endReason = StateFailed, "qemu did not exit after SIGKILL"
				return s.finish(errors.New("did not exit after SIGKILL"), items)
			}
		}
	}
}

// writeHandle records the VM's processes and limits in handle.json.
func (s *supervisor) writeHandle() error {
	return writeHandle(Handle{
		Version:       HandleVersion,
		Name:          s.l.Spec.Name,
		Generation:    s.l.Spec.Generation,
		Dir:           s.l.Dir,
		Driver:        s.l.Driver,
		SupervisorPid: os.Getpid(),
		QEMUPid:       s.cmd.Process.Pid,
		Accel:         s.l.Accel,
		Limits:        s.t.st.Limits,
		StartedAt:     s.t.st.StartedAt,
	})
}

// timerC is t's channel, or nil (never ready) when t is not armed.
func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

// readConsole parses the console stream into items until it ends, then
// closes items.
func readConsole(conn net.Conn, items chan<- wire.Item) {
	defer close(items)
	r := wire.NewReader(conn)
	for {
		it, err := r.Next()
		if err != nil {
			return
		}
		items <- it
	}
}

func (s *supervisor) consoleItem(it wire.Item) {
	if it.Text != nil {
		s.t.text(it.Text)
	}
	if it.Frame == nil {
		return
	}
	wasReady, hadExit := s.t.st.Ready, s.t.taskEnded()
	changed, err := s.t.frame(*it.Frame, time.Now())
	if err != nil {
		s.log.Warn("bad frame from the guest", "kind", it.Frame.Kind, "err", err)
	}
	if !changed {
		return
	}
	if s.t.st.Ready && !wasReady {
		s.log.Info("guest agent ready", "boot", time.Since(s.resumedAt).Round(time.Millisecond))
		stopTimer(&s.bootTimer)
	}
	if s.t.taskEnded() && !hadExit {
		stopTimer(&s.taskTimer)
		res := s.t.st.Task
		s.log.Info("task ended", "exit_code", res.ExitCode, "timed_out", res.TimedOut, "error", res.Error)
		if s.l.Spec.Task.PoweroffAfter {
			// The agent powers off; make sure it does.
			s.taskEndTimer = time.NewTimer(s.grace)
		} else {
			s.beginStop(s.grace)
		}
	}
	s.publish()
}

func stopTimer(t **time.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

func (s *supervisor) control(r ctlConn) {
	switch r.req.Op {
	case opStatus:
		s.reply(r.conn, s.t.st)
	case opRenew:
		if s.leaseTimer != nil && r.req.LeaseUntilMonoNs > s.leaseUntil {
			s.leaseUntil = r.req.LeaseUntilMonoNs
		}
		s.reply(r.conn, s.t.st)
	case opWatch:
		w := &watcher{conn: r.conn, ch: make(chan Status, ctlWatchBuffer)}
		s.watchers = append(s.watchers, w)
		w.send(s.t.st)
		s.writers.Add(1)
		go func() {
			defer s.writers.Done()
			w.run()
		}()
	case opStop:
		s.waiters = append(s.waiters, r.conn)
		grace := s.grace
		if r.req.GraceMillis > 0 {
			grace = time.Duration(r.req.GraceMillis) * time.Millisecond
		}
		s.log.Info("stop requested", "grace", grace)
		s.t.end(StateStopped, "stopped on request")
		s.beginStop(grace)
	case opKill:
		s.waiters = append(s.waiters, r.conn)
		s.log.Info("kill requested")
		s.killNow(StateStopped, "killed on request")
	}
}

// beginStop starts the graceful stop: the agent is asked to power off; if
// QEMU is still there after grace, QMP quit; after another grace, SIGKILL.
func (s *supervisor) beginStop(grace time.Duration) {
	if s.stopStage != 0 {
		return
	}
	s.grace = grace
	s.stopStage = 1
	stopTimer(&s.taskEndTimer)
	conn := s.m.console()
	_ = conn.SetWriteDeadline(time.Now().Add(consoleWriteTimeout))
	if err := wire.Write(conn, wire.KindPoweroff, wire.Poweroff{Reason: s.t.endReason}); err != nil {
		s.log.Warn("could not ask the guest to power off", "err", err)
	}
	s.stopTimer = time.NewTimer(grace)
}

// escalateStop moves the stop to its next stage when QEMU outlived the
// last one. It returns false when there is no stage left.
func (s *supervisor) escalateStop() bool {
	switch s.stopStage {
	case 1:
		s.log.Warn("guest did not power off: quitting QEMU", "grace", s.grace)
		s.stopStage = 2
		m, grace := s.m, s.grace
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), grace)
			defer cancel()
			if err := m.quit(ctx); err != nil {
				s.log.Warn("qmp quit", "err", err)
			}
		}()
		s.stopTimer = time.NewTimer(s.grace)
	case 2:
		s.log.Warn("QEMU did not quit: killing it", "grace", s.grace)
		s.stopStage = 3
		s.kill()
		s.stopTimer = time.NewTimer(s.grace)
	default:
		return false
	}
	return true
}

// killNow ends the VM at once with SIGKILL, to be reported as state and
// reason.
func (s *supervisor) killNow(state State, reason string) {
	s.t.end(state, reason)
	s.log.Info("killing QEMU", "reason", reason)
	s.kill()
	if s.stopStage < 3 {
		s.stopStage = 3
		stopTimer(&s.stopTimer)
		s.stopTimer = time.NewTimer(s.grace)
	}
}

func (s *supervisor) kill() {
	if err := killProcessGroup(s.cmd.Process.Pid); err != nil {
		s.log.Warn("kill QEMU", "err", err)
	}
}

// abort ends a VM whose setup failed after QEMU started: kill it, wait for
// it (within a grace), and record the failure.
func (s *supervisor) abort(exitCh <-chan error, reason string) error {
	s.t.end(StateFailed, reason)
	s.log.Error("setup failed: killing QEMU", "reason", reason)
	s.kill()
	select {
	case werr := <-exitCh:
		return s.finish(werr, nil)
	case <-time.After(s.grace):
		return s.finish(errors.New("did not exit after SIGKILL"), nil)
	}
}

// failEarly records a failure before QEMU started.
func (s *supervisor) failEarly(err error) error {
	s.t.end(StateFailed, err.Error())
	s.log.Error("could not start the VM", "err", err)
	_ = s.finish(nil, nil)
	return nil
}

// finish records the VM's end once QEMU is gone (waitErr is how it
// ended): it reads what the console and QMP still hold, decides the final
// status, removes the cgroups, writes the status, answers every client and
// closes the control socket.
func (s *supervisor) finish(waitErr error, items <-chan wire.Item) error {
	for _, t := range []**time.Timer{&s.bootTimer, &s.taskTimer, &s.taskEndTimer, &s.leaseTimer, &s.stopTimer} {
		stopTimer(t)
	}
	drain := time.NewTimer(drainTimeout)
	defer drain.Stop()
drainLoop:
	for items != nil {
		select {
		case it, ok := <-items:
			if !ok {
				break drainLoop
			}
			s.consoleItem(it)
		case <-drain.C:
			s.log.Warn("console did not end after QEMU exited")
			break drainLoop
		}
	}
	var shutdown string
	if s.m != nil {
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		shutdown = s.m.shutdownReason(ctx)
		cancel()
		if err := s.m.close(); err != nil {
			s.log.Debug("close hypervisor channels", "err", err)
		}
	}
	st := s.t.exited(waitErr, shutdown, s.qemuErr.String(), time.Now())
	if s.cg != nil {
		if err := removeCgroups(s.cg.limits.Dirs); err != nil {
			s.log.Warn("cgroups left behind", "err", err)
		}
	}
	err := s.publish()
	st = s.t.st
	s.final.Store(&st)
	close(s.done)
	if s.ln != nil {
		s.ln.Close()
	}
	for _, name := range []string{ctlSocket, serialSocket, qmpSocket} {
		_ = os.Remove(filepath.Join(s.l.Dir, name))
	}
	s.log.Info("VM ended", "state", st.State, "reason", st.Reason)
	for _, w := range s.watchers {
		close(w.ch)
	}
	for _, c := range s.waiters {
		s.reply(c, st)
	}
	// Let the replies go out before the process exits.
	waited := make(chan struct{})
	go func() {
		s.writers.Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(ctlRequestTimeout):
	}
	return err
}

// publish stamps the status, writes it to status.json and sends it to the
// watchers.
func (s *supervisor) publish() error {
	s.t.st.UpdatedAt = time.Now()
	err := writeStatus(s.l.Dir, s.t.st)
	if err != nil {
		s.log.Error("could not write the status", "err", err)
	}
	live := s.watchers[:0]
	for _, w := range s.watchers {
		if !w.dead.Load() {
			w.send(s.t.st)
			live = append(live, w)
		} else {
			close(w.ch)
		}
	}
	s.watchers = live
	return err
}

// reply writes st to conn and closes it, without holding up the main loop.
func (s *supervisor) reply(conn net.Conn, st Status) {
	s.writers.Add(1)
	go func() {
		defer s.writers.Done()
		defer conn.Close()
		_ = writeCtlReply(conn, ctlReply{Status: &st})
	}()
}

// accept serves the control socket until it is closed.
func (s *supervisor) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			req, err := readCtlRequest(conn)
			if err != nil {
				_ = writeCtlReply(conn, ctlReply{Error: err.Error()})
				conn.Close()
				return
			}
			select {
			case s.ctl <- ctlConn{req: req, conn: conn}:
			case <-s.done:
				// The VM has ended: every request gets the final status.
				_ = writeCtlReply(conn, ctlReply{Status: s.final.Load()})
				conn.Close()
			}
		}()
	}
}

// watcher is a client watching the status.
type watcher struct {
	conn net.Conn
	// ch queues statuses for the writer; the main loop sends, and closes
	// it after the final status.
	ch   chan Status
	dead atomic.Bool
}

// send queues st, dropping the oldest queued status when the queue is full.
func (w *watcher) send(st Status) {
	for {
		select {
		case w.ch <- st:
			return
		default:
			select {
			case <-w.ch:
			default:
			}
		}
	}
}

// run writes the queued statuses until ch is closed or the client is gone.
func (w *watcher) run() {
	defer w.conn.Close()
	for st := range w.ch {
		if err := writeCtlReply(w.conn, ctlReply{Status: &st}); err != nil {
			w.dead.Store(true)
			for range w.ch {
			}
			return
		}
	}
}
