package cli

import (
	"context"
	"errors"
	"time"
)

// errWaitTimedOut is what poller.next returns when the wait's limit passed.
var errWaitTimedOut = errors.New("wait timed out")

// poller paces a --wait: a read every interval, until limit passes.
type poller struct {
	tick     *time.Ticker
	timer    *time.Timer
	deadline <-chan time.Time
}

// newPoller starts a wait that reads every interval and gives up after
// limit (0: never). Stop it when the wait is over.
func newPoller(every, limit time.Duration) *poller {
	p := &poller{tick: time.NewTicker(every)}
	if limit > 0 {
		p.timer = time.NewTimer(limit)
		p.deadline = p.timer.C
	}
	return p
}

// next blocks until the next read is due. It returns errWaitTimedOut once
// the limit has passed, or ctx's error when the command is interrupted.
func (p *poller) next(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.deadline:
		return errWaitTimedOut
	case <-p.tick.C:
		return nil
	}
}

// stop releases the poller's timers.
func (p *poller) stop() {
	p.tick.Stop()
	if p.timer != nil {
		p.timer.Stop()
	}
}
