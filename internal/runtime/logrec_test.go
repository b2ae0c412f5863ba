package runtime

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// logRecorder is a slog handler that keeps every line as "LEVEL message
// key=value ...", for tests of what a node logs and at which level.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) logger() *slog.Logger { return slog.New(recorderHandler{r}) }

// take returns the lines logged since the last take.
func (r *logRecorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.lines
	r.lines = nil
	return out
}

type recorderHandler struct{ r *logRecorder }

func (recorderHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h recorderHandler) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	h.r.lines = append(h.r.lines, b.String())
	return nil
}

func (h recorderHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recorderHandler) WithGroup(string) slog.Handler      { return h }
