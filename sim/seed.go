package sim

import (
	"os"
	"strconv"
	"testing"
	"testing/cryptotest"
	"time"
)

// SeedEnv names the environment variable that replays a seed.
const SeedEnv = "BLIXARD_SIM_SEED"

// TraceEnv, set to 1, makes NewT write every trace line to stderr.
const TraceEnv = "BLIXARD_SIM_TRACE"

// BaseSeed returns the seed a test derives all its seeds from: the value of
// BLIXARD_SIM_SEED when set, else a fresh one. Either way it is logged.
func BaseSeed(t testing.TB) uint64 {
	t.Helper()
	if s := os.Getenv(SeedEnv); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, s, err)
		}
		return seed
	}
	// A fresh seed for a run nobody asked to replay; it is printed, so the
	// run can be replayed.
	return uint64(time.Now().UnixNano()) % 1_000_000_000
}

// NewT makes a world for test t from seed, with etcd raft's election jitter
// (drawn from crypto/rand) made deterministic from the same seed. When t
// ends the world is closed and its seed line logged; a checker violation
// fails t with the seed, the checker's words and the trace tail. Tests that
// use it must not run in parallel.
func NewT(t *testing.T, seed uint64, opts Options) *World {
	t.Helper()
	cryptotest.SetGlobalRandom(t, seed)
	if os.Getenv(TraceEnv) == "1" && opts.Trace == nil {
		opts.Trace = os.Stderr
	}
	w, err := New(seed, opts)
	if err != nil {
		t.Fatalf("sim: seed=%d: %v", seed, err)
	}
	t.Cleanup(func() {
		w.Close()
		t.Log(w.SeedLine())
		if w.failure != nil && !t.Failed() {
			t.Error(w.Failure(w.failure))
		}
	})
	return w
}

// Must fails t, with the seed and the trace tail, when err is not nil.
func (w *World) Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(w.Failure(err))
	}
}
