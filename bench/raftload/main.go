// Command raftload measures the write throughput and latency of a real
// Blixard cluster: three `blixard node` processes on loopback, each with its
// own data directory on disk and the store's fsync on (every Ready that raft
// must sync is one synced Pebble batch, on the leader and on each follower).
//
// Node 1 bootstraps, nodes 2 and 3 join it; once GetClusterStatus shows three
// voters and a leader, raftload runs one load level per --clients entry. A
// level starts that many goroutines that share one client.Client (given all
// three addresses, so it finds the leader itself) and issue SubmitTask writes
// back to back: a task spec whose command is /bin/echo with one argument of
// --payload bytes. Writes that complete during the first --warmup are not
// counted; after that, every write that completes within --duration counts
// toward the throughput, and its latency (the client call, retries included)
// toward the percentiles. The table also shows the CPU each node process and
// raftload itself used during the measured window (in cores; the machine's
// core count bounds their sum) and how far the leader's applied index moved.
//
// Nodes run what the leader places on them, in microVMs; raftload keeps the
// tasks from being placed. Node 1, which bootstraps and so leads, runs with
// --no-workloads (it boots nothing). Nodes 2 and 3 offer the default image (so
// the state accepts the tasks, which ask for its 96 MiB minimum), and
// raftload drains all three before the load, so nothing is placed even if
// leadership moves: the leader records once per task why it fits nowhere (a
// PlacementFailed entry). The tasks stay pending in the replicated state, so the
// state grows by one task per write, and every node snapshots its whole state
// every 10,000 applied entries (the default --snapshot-entries),
// synchronously on its core goroutine. Those snapshots are part of what the
// figures cost.
//
// By default the nodes run with --insecure (plaintext, no tokens), so the
// figures measure Raft and the disk. With --secure they run as operators run
// them: node 1 bootstraps without --insecure and writes the cluster's CA
// (ca.crt) and admin token (admin.token) into its data directory; raftload
// makes a voter join token with the admin token (CreateToken, as `blixard
// cluster token create` does) and starts nodes 2 and 3 with --join and that
// token (in BLIXARD_JOIN_TOKEN). Peers then talk TLS 1.3 with node
// certificates, and the load clients TLS 1.3 (verifying the nodes against
// ca.crt) with the admin token on every call.
//
// The cluster is stopped at the end with SIGTERM (SIGKILL after 10 s), also
// on Ctrl-C or SIGTERM. The exit status is non-zero if more than --max-errors
// (a fraction of the writes attempted) failed, or a node died.
//
//	go run ./bench/raftload
//	go run ./bench/raftload --clients 1,16,256 --duration 10s --warmup 2s --payload 256
//	go run ./bench/raftload --secure --clients 1,16,256 --duration 10s
//	go run ./bench/raftload --blixard ./bin/blixard --data-dir /tmp/raftload --keep
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/blixard/blixard/bench/hostinfo"
)

type options struct {
	blixard     string
	clients     []int
	duration    time.Duration
	warmup      time.Duration
	payload     int
	dataDir     string
	keep        bool
	host        string
	basePort    int
	maxErrors   float64
	maxLoad     float64
	maxLoadWait time.Duration
	secure      bool
	pprof       string
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	var clients string
	flag.StringVar(&o.blixard, "blixard", "", "`path` to the blixard binary (default: go build ./cmd/blixard into a temporary directory)")
	flag.StringVar(&clients, "clients", "1,16,256", "comma-separated `counts` of concurrent writers, one load level each")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured `time` per load level")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "unmeasured `time` at the start of each load level")
	flag.IntVar(&o.payload, "payload", 256, "`bytes` of the task argument each write carries")
	flag.StringVar(&o.dataDir, "data-dir", "", "`directory` for the nodes' data and logs (default: a temporary directory, removed at the end)")
	flag.BoolVar(&o.keep, "keep", false, "keep the data directory (and the node logs in it) at the end")
	flag.StringVar(&o.host, "host", "127.0.0.1", "loopback `address` the nodes listen on")
	flag.IntVar(&o.basePort, "base-port", 0, "node i listens on base-port + i - 1 (default 0: three free ports chosen by the kernel)")
	flag.Float64Var(&o.maxErrors, "max-errors", 0.001, "tolerated failed writes, as a `fraction` of the writes attempted in a level")
	flag.Float64Var(&o.maxLoad, "max-load", 0, "wait until the 1-minute load average is below this before starting (0: do not wait)")
	flag.DurationVar(&o.maxLoadWait, "max-load-wait", 10*time.Minute, "give up waiting for --max-load after this `time`, and run anyway")
	flag.StringVar(&o.pprof, "pprof", "", "loopback `host:port` where node 1 (the leader) serves metrics and Go profiles: go tool pprof http://host:port/debug/pprof/profile")
	flag.BoolVar(&o.secure, "secure", false, "run the nodes secure, as by default outside raftload (TLS 1.3, ACL and join tokens) instead of --insecure")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: go run ./bench/raftload [flags]\n\n"+
			"Starts a 3-node Blixard cluster on loopback and measures SubmitTask write\n"+
			"throughput and latency at each --clients level.\n\nflags:\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "raftload: unexpected arguments %q\n", flag.Args())
		return 2
	}
	var err error
	if o.clients, err = parseClients(clients); err != nil {
		fmt.Fprintf(os.Stderr, "raftload: --clients: %v\n", err)
		return 2
	}
	switch {
	case o.duration <= 0:
		err = errors.New("--duration must be positive")
	case o.warmup < 0:
		err = errors.New("--warmup must not be negative")
	case o.payload < 1 || o.payload > 4096:
		err = errors.New("--payload must be between 1 and 4096 bytes (the state's limit on one argument)")
	case o.basePort < 0 || o.basePort+3 > 65535:
		err = fmt.Errorf("--base-port %d leaves no room for 3 nodes", o.basePort)
	case o.maxErrors < 0 || o.maxErrors > 1:
		err = errors.New("--max-errors must be a fraction between 0 and 1")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "raftload: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := bench(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "raftload: %v\n", err)
		return 1
	}
	return 0
}

// bench runs the whole benchmark. Everything it starts is stopped and
// everything temporary is removed before it returns.
func bench(ctx context.Context, o options) (err error) {
	m := describeMachine()
	fmt.Printf("machine: %s\n", m)

	tmp, err := os.MkdirTemp("", "raftload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	dataDir := o.dataDir
	switch {
	case dataDir != "":
		// Only ever remove what raftload created.
		if _, err := os.Stat(dataDir); err == nil {
			return fmt.Errorf("--data-dir %s exists: name a new directory", dataDir)
		}
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(dataDir)
		}
	case o.keep:
		if dataDir, err = os.MkdirTemp("", "raftload-data-"); err != nil {
			return err
		}
	default:
		dataDir = filepath.Join(tmp, "data")
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return err
		}
	}
	fmt.Printf("data:    %s (%s)\n", dataDir, fsType(dataDir))
	if o.secure {
		fmt.Println("mode:    secure (--secure): TLS 1.3 between peers and for clients, the admin token on every call, nodes 2 and 3 joined with a join token")
	} else {
		fmt.Println("mode:    insecure (nodes run --insecure): plaintext, no tokens; --secure measures TLS and token checks")
	}

	bin := o.blixard
	if bin == "" {
		fmt.Printf("build:   go build -o %s ./cmd/blixard\n", filepath.Join(tmp, "blixard"))
		if bin, err = buildBlixard(ctx, tmp); err != nil {
			return err
		}
	}

	if o.maxLoad > 0 {
		waitForLoad(ctx, o.maxLoad, o.maxLoadWait)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	addrs, err := nodeAddrs(o.host, o.basePort)
	if err != nil {
		return err
	}
	c := &cluster{bin: bin, dataDir: dataDir, addrs: addrs, secure: o.secure, pprof: o.pprof}
	defer func() {
		c.stop(os.Stderr)
		if err != nil && ctx.Err() == nil { // a failure, not an interruption
			c.tailLogs(os.Stderr, 15)
		}
		if o.keep {
			fmt.Fprintf(os.Stderr, "kept %s (node logs: n*/node.log)\n", dataDir)
		}
	}()
	if err := c.start(ctx, 90*time.Second); err != nil {
		return err
	}
	status, err := c.waitForVoters(ctx, 90*time.Second)
	if err != nil {
		return err
	}
	if err := c.drainAll(ctx); err != nil {
		return err
	}
	fmt.Printf("cluster: 3 voters on %s, leader %d, term %d; all 3 drained, so no task is placed\n", strings.Join(addrs, ","), status.GetLeaderId(), status.GetTerm())
	fmt.Printf("load:    SubmitTask, /bin/echo with one %d-byte argument (%d bytes per request on the wire), warmup %s + %s per level\n",
		o.payload, requestSize(o.payload), o.warmup, o.duration)
	fmt.Printf("load avg before: %s\n", hostinfo.LoadAvg())
	fmt.Println()

	var results []result
	failed := false
	for _, n := range o.clients {
		r, err := runLevel(ctx, c, o, n)
		if err != nil {
			return err
		}
		results = append(results, r)
		if r.errors > int64(o.maxErrors*float64(r.attempted)) {
			failed = true
			fmt.Fprintf(os.Stderr, "level %d: %d of %d writes failed; first error: %v\n", n, r.errors, r.attempted, r.firstErr)
		}
	}
	printTable(os.Stdout, results)
	fmt.Printf("\nload avg after: %s\n", hostinfo.LoadAvg())
	if failed {
		return fmt.Errorf("writes failed beyond the tolerance (--max-errors %g)", o.maxErrors)
	}
	return nil
}

func parseClients(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, errors.New("no client counts given")
	}
	return out, nil
}
