// Package archrules enforces the layout rules of DESIGN.md: the deterministic
// core stays deterministic.
//
// It has no code of its own, only tests. They run `go list` over the trees of
// internal/core, internal/state and internal/sched (sched may not exist yet;
// core and state must) and fail when one of their packages
//
//   - imports a package that does I/O or draws global randomness (net, os,
//     syscall, crypto/rand, gRPC, Pebble, ...), or a Blixard package outside
//     what DESIGN.md's "may import" column allows it;
//   - reads the wall clock or waits on it (time.Now, time.Sleep, timers, ...);
//   - draws from math/rand's global source (rand.Intn, rand.Shuffle, ...)
//     instead of a *rand.Rand the caller seeds;
//   - starts a goroutine.
//
// The source rules are checked on the syntax tree with the file's own import
// names, so an aliased import does not hide a call and a local variable named
// rand does not trip the check. Tests whose names contain "Self" feed the
// checkers forged violations and clean code, to show they fire and do not
// over-fire.
package archrules
