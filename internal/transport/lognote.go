package transport

import (
	"log/slog"
	"sync"
)

// maxNotedPeers bounds the node ids a noteSet remembers. The ids a
// receiver sees are claimed by the sender (authenticated only on a secure
// transport); past the bound the set starts over, so that a flood of
// forged ids costs a warning per maxNotedPeers ids, not unbounded memory.
const maxNotedPeers = 256

// noteSet remembers the peers a condition was logged for, so that it is
// logged at its level once per peer, and at debug while it goes on, until
// it clears. The zero value is empty and ready; it is safe for concurrent
// use.
type noteSet struct {
	mu  sync.Mutex
	ids map[uint64]struct{}
}

// first records id and reports whether it was not recorded yet.
func (s *noteSet) first(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[id]; ok {
		return false
	}
	if s.ids == nil || len(s.ids) >= maxNotedPeers {
		s.ids = map[uint64]struct{}{}
	}
	s.ids[id] = struct{}{}
	return true
}

// clear forgets id; it reports whether it was recorded.
func (s *noteSet) clear(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[id]
	delete(s.ids, id)
	return ok
}

// levelIf is level for a line that says something new, debug for one
// that repeats it.
func levelIf(first bool, level slog.Level) slog.Level {
	if first {
		return level
	}
	return slog.LevelDebug
}
