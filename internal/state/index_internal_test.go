package state

import (
	"slices"
	"testing"
)

// The ended queue pops by end index, then id, whatever the order of adds,
// and a task filed again at another index is popped by the new one only.
func TestEndedQueueOrder(t *testing.T) {
	q := endedQueue{at: map[uint64]uint64{}}
	for _, e := range []endedTask{{at: 9, id: 3}, {at: 5, id: 7}, {at: 5, id: 2}, {at: 7, id: 1}, {at: 5, id: 7}} {
		q.add(e)
	}
	q.add(endedTask{at: 12, id: 1}) // filed anew
	if q.len() != 4 {
		t.Fatalf("len %d, want 4", q.len())
	}
	var got []uint64
	for q.len() > 0 {
		got = append(got, q.pop())
	}
	if want := []uint64{2, 7, 3, 1}; !slices.Equal(got, want) {
		t.Fatalf("popped %v, want %v", got, want)
	}
}

// A set that is changed but never read (a follower's sets of workloads to
// place) stays about the size of its members.
func TestSortedSetStaysSmallUnread(t *testing.T) {
	s := newSortedSet[uint64]()
	for i := range uint64(10000) {
		s.set(i, true)
		s.set(i, false)
	}
	s.set(7, true)
	if len(s.order) > 2*len(s.has)+64 {
		t.Fatalf("order holds %d keys for %d members", len(s.order), len(s.has))
	}
	if got := s.sorted(); !slices.Equal(got, []uint64{7}) {
		t.Fatalf("sorted() = %v, want [7]", got)
	}
}
