package runtime

import (
	"errors"
	"testing"
)

// TestStreak: a streak tells the first failure, a change of error, and
// the success that ends it; the same error again is neither.
func TestStreak(t *testing.T) {
	type step struct {
		err                       string // "" for a success
		first, changed, recovered bool
		failures                  int
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"works", []step{{}, {}}},
		{"fails, repeats, recovers", []step{
			{err: "a", first: true, changed: true, failures: 1},
			{err: "a", failures: 2},
			{err: "a", failures: 3},
			{recovered: true},
			{},
		}},
		{"error changes", []step{
			{err: "a", first: true, changed: true, failures: 1},
			{err: "b", changed: true, failures: 2},
			{err: "b", failures: 3},
			{err: "a", changed: true, failures: 4},
		}},
		{"fails again after recovering", []step{
			{err: "a", first: true, changed: true, failures: 1},
			{recovered: true},
			{err: "a", first: true, changed: true, failures: 1},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s streak
			for i, st := range tc.steps {
				if st.err == "" {
					if got := s.ok(); got != st.recovered {
						t.Fatalf("step %d: ok() = %v, want %v", i, got, st.recovered)
					}
					continue
				}
				first, changed := s.fail(errors.New(st.err))
				if first != st.first || changed != st.changed || s.failures != st.failures {
					t.Fatalf("step %d: fail(%q) = first %v, changed %v, %d failures; want %v, %v, %d",
						i, st.err, first, changed, s.failures, st.first, st.changed, st.failures)
				}
			}
		})
	}
}
