package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/runtime"
)

// joinTokenEnv holds the join token when --join-token is not given.
const joinTokenEnv = "BLIXARD_JOIN_TOKEN"

// startNode starts a node (a variable for tests, which see the config the
// flags make).
var startNode = runtime.Start

func newNodeCommand() *cobra.Command {
	var (
		cfg                   runtime.Config
		join, labels          []string
		role, logFormat       string
		logLevel              string
		capVcpus              uint32
		capMemory             uint64
		tick                  time.Duration
		electionTicks, hbTick int
	)
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run one Blixard node in the foreground",
		Long: `Run one node: it keeps the cluster's state in Raft with its peers, serves the
gRPC API on --listen, and stores everything under --data-dir.

The first node of a cluster starts with an empty data directory and no --join:
it bootstraps a cluster of one. Others start with --join naming any member:
they enter as Raft learners; a voter is promoted once its log is within 1,000
entries of the leader's, a worker (--role worker) stays a learner for good.
A node restarts from its data directory alone (--join and --join-token are
then ignored); its id and role are fixed by the first start and kept in the
data directory. Node ids are chosen by the operator and never reused: a
removed id cannot join again. SIGINT or SIGTERM stops the node cleanly.

Security: by default the node serves TLS 1.3 only, for peers and clients
alike, and every API request must carry an ACL token. The bootstrap node
makes the cluster's CA in --data-dir (ca.crt, and ca.key, which voters
keep), its own certificate (node.crt, node.key) and the first admin
token, which it prints and writes to <data-dir>/admin.token (mode 0600);
clients use ca.crt as --ca and the token as --token. A new node joins with
--join-token (or BLIXARD_JOIN_TOKEN), a token from 'blixard cluster token
create': it pins the CA, so the node checks the cluster it reaches, and
gets the node its certificate. --insecure runs without any of this:
plaintext, no tokens, anyone who reaches the port may do anything; it is
allowed only on loopback addresses, fixed when the data directory is first
used, and warned about on every start.

Unless --no-workloads, the node runs the VMs and tasks the leader places on
it as QEMU microVMs (KVM when a probe VM boots with it, else TCG), each owned
by a small supervisor process, with its files (console log, sockets) under
--data-dir/vms. VMs outlive the node process: a node restarted from the same
data directory adopts the VMs it left running. The default guest image is
built under --data-dir/images the first time it is needed, from the host's
Debian kernel, busybox-static and the blixard-agent binary.

The node offers --capacity-vcpus and --capacity-memory (default: the
host's) and its --label labels to the scheduler, and the feature "kvm" when
a probe VM boots with KVM. With --overcommit-vcpu or --overcommit-memory
above 1.0 the leader places up to that multiple of the capacity on it.

Liveness: the leader marks a node it has not heard from for
--disconnect-after disconnected (nothing new is placed on it), and after
--down-after down: its VMs are placed on other nodes and its tasks tried
again. A node cut off from a quorum for its --lease stops its VMs itself,
so --down-after must be at least --lease plus a margin for clock drift
(about a tenth of --lease, plus two ticks), and more than
--disconnect-after. All three are whole multiples of --tick; their
defaults are counted in ticks, so they scale with --tick.`,
		Example: `  # Bootstrap, then admit two more nodes with a join token
  blixard node --id 1 --listen 127.0.0.1:7001 --data-dir ./data/n1
  export BLIXARD_CA=./data/n1/ca.crt BLIXARD_TOKEN=$(cat ./data/n1/admin.token)
  TOKEN=$(blixard cluster token create)
  blixard node --id 2 --listen 127.0.0.1:7002 --data-dir ./data/n2 --join 127.0.0.1:7001 --join-token $TOKEN
  blixard node --id 3 --listen 127.0.0.1:7003 --data-dir ./data/n3 --join 127.0.0.1:7001 --join-token $TOKEN --role worker

  # A worker offering 16 vCPUs and 32 GiB, twice its vCPUs overcommitted, in zone a
  blixard node --id 4 --listen 10.0.0.4:7001 --data-dir /var/lib/blixard --join 10.0.0.1:7001 --join-token $TOKEN \
      --role worker --capacity-vcpus 16 --capacity-memory 32768 --overcommit-vcpu 2 --label zone=a

  # Declare a silent node down sooner: 3s lease, down after 4s
  blixard node --id 5 --data-dir ./data/n5 --join 127.0.0.1:7001 --join-token $TOKEN --lease 3s --down-after 4s

  # Plaintext and unauthenticated, on loopback only
  blixard node --id 1 --listen 127.0.0.1:7001 --data-dir ./data/plain --insecure`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logFormat, logLevel, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			switch role {
			case "voter":
				cfg.Role = apiv1.NodeRole_NODE_ROLE_VOTER
			case "worker":
				cfg.Role = apiv1.NodeRole_NODE_ROLE_WORKER
			default:
				return usageErrorf("--role: %q is not voter or worker", role)
			}
			cfg.RoleGiven = cmd.Flags().Changed("role")
			if !cmd.Flags().Changed("join-token") {
				cfg.JoinToken = os.Getenv(joinTokenEnv)
			}
			cfg.JoinToken = strings.TrimSpace(cfg.JoinToken)
			for _, j := range join {
				for _, a := range strings.Split(j, ",") {
					if a = strings.TrimSpace(a); a != "" {
						cfg.Join = append(cfg.Join, a)
					}
				}
			}
			if cfg.Labels, err = parseKeyValues("label", labels); err != nil {
				return err
			}
			cfg.Capacity = &apiv1.Resources{Vcpus: capVcpus, MemoryMib: capMemory}
			cfg.TickInterval, cfg.ElectionTicks, cfg.HeartbeatTicks = tick, electionTicks, hbTick
			cfg.Logger = log
			n, err := startNode(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			err = n.Run(cmd.Context())
			if errors.Is(err, runtime.ErrRemoved) {
				return fmt.Errorf("node %d stopped: %w", cfg.ID, err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.Uint64Var(&cfg.ID, "id", 0, "this node's `id`: a non-zero integer, unique in the cluster and never reused (required)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7001", "`host:port` to serve the gRPC API and peer traffic on")
	f.StringVar(&cfg.Advertise, "advertise", "", "`host:port` that peers and clients reach this node at (default: the listen address)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "`directory` for the node's state (required)")
	f.StringSliceVar(&join, "join", nil, "`host:port` of a cluster member to join through (comma-separated or repeated); only for a new node")
	f.StringVar(&cfg.JoinToken, "join-token", "", "join `token` from 'blixard cluster token create', for a new node with --join (overrides $"+joinTokenEnv+")")
	f.BoolVar(&cfg.Insecure, "insecure", false, "serve plaintext gRPC with no TLS and no authentication; loopback addresses only")
	f.StringVar(&role, "role", "voter", "`voter` (takes part in Raft votes) or worker (runs workloads, never votes)")
	f.Uint32Var(&capVcpus, "capacity-vcpus", 0, "`N` vCPUs this node offers (default 0: the host's CPUs)")
	f.Uint64Var(&capMemory, "capacity-memory", 0, "memory in `MiB` this node offers (default 0: the host's memory)")
	f.StringArrayVar(&labels, "label", nil, "a `KEY=VALUE` label that VMs' --constraint flags match (repeatable)")
	f.Float64Var(&cfg.VcpuOvercommit, "overcommit-vcpu", 0, "place up to this `RATIO` × --capacity-vcpus of vCPUs here: 1.0 to 16 (default 0: 1.0, no overcommit)")
	f.Float64Var(&cfg.MemoryOvercommit, "overcommit-memory", 0, "place up to this `RATIO` × --capacity-memory of memory here: 1.0 to 16 (default 0: 1.0, no overcommit)")
	f.DurationVar(&cfg.Lease, "lease", 0, "fencing lease: cut off from a quorum this long, the node stops its VMs (default 0: 50 ticks, 5s at the default --tick)")
	f.DurationVar(&cfg.DisconnectAfter, "disconnect-after", 0, "the leader marks this node disconnected after this long unheard (default 0: 20 ticks, 2s at the default --tick)")
	f.DurationVar(&cfg.DownAfter, "down-after", 0, "the leader marks this node down, and moves its VMs, after this long unheard; more than --lease (default 0: 60 ticks, 6s at the default --tick, or --lease plus the drift margin if longer)")
	f.StringVar(&cfg.MetricsListen, "metrics-listen", "", "`host:port` to serve Prometheus metrics on, plain HTTP at /metrics (default: none)")
	f.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go's profiles at /debug/pprof/ on a loopback --metrics-listen (go tool pprof http://ADDR/debug/pprof/profile)")
	f.StringVar(&cfg.HTTPListen, "http-listen", "", "`host:port` to serve the web dashboard on: plain HTTP on loopback, HTTPS with viewer tokens anywhere else (default: none)")
	f.BoolVar(&cfg.HTTPTLS, "http-tls", false, "serve the dashboard over HTTPS with viewer tokens even on a loopback --http-listen")
	f.Float64Var(&cfg.Limits.Rate, "client-rate", 0, "requests per second one API client (by token, else by IP) may send this node (default 0: 10000)")
	f.IntVar(&cfg.Limits.Burst, "client-burst", 0, "requests one API client may send at once above --client-rate (default 0: 20000)")
	f.IntVar(&cfg.Limits.Streams, "client-streams", 0, "streams (watches, log follows, Raft streams) one client or node may hold open (default 0: 64)")
	f.StringVar(&logFormat, "log-format", "text", "log `format`: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	f.DurationVar(&tick, "tick", 100*time.Millisecond, "Raft tick `interval`")
	f.IntVar(&electionTicks, "election-ticks", 10, "election timeout in ticks")
	f.IntVar(&hbTick, "heartbeat-ticks", 1, "leader heartbeat interval in ticks")
	f.Uint64Var(&cfg.SnapshotEntries, "snapshot-entries", 0, "snapshot the state every this many applied entries (default 10000)")
	f.BoolVar(&cfg.NoWorkloads, "no-workloads", false, "run no VMs or tasks on this node (it offers no image, so nothing is placed on it)")
	f.StringVar(&cfg.QEMU, "qemu", "", "the qemu-system-x86_64 `binary` (default: from PATH)")
	f.StringVar(&cfg.Accel, "accel", "", "`kvm` or tcg (default: kvm when /dev/kvm exists and a probe VM boots with it, else tcg)")
	f.StringVar(&cfg.Agent, "agent", "", "the blixard-agent `binary` the default guest image is built with (default: beside blixard, or on PATH)")
	_ = cmd.MarkFlagRequired("id")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

func newLogger(format, level string, w interface{ Write([]byte) (int, error) }) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usageErrorf("--log-level: %q is not debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErrorf("--log-format: %q is not text or json", format)
}
