// Package processtest holds tests that run real blixard processes on
// loopback: the Jepsen shape.
//
// TestMain builds the blixard binary once per test run. Each test starts its
// own cluster of `blixard node` processes on free loopback ports, each with
// its own data directory and log file under the test's temporary directory;
// it talks to them through the client package and through the blixard
// command line itself, and injects faults with signals: SIGKILL (crash),
// SIGTERM (clean stop), SIGSTOP/SIGCONT (a node that lags). Every wait is a
// poll against a generous deadline; no test asserts how long anything took.
// A failing test prints the tail of every node's log.
//
// The tests run one at a time (the machines they run on have two cores):
// none calls t.Parallel.
package processtest
