package cli

import (
	"errors"
	"fmt"
	"log/slog"

	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/runtime"
)

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
A node restarts from its data directory alone (--join is then ignored); its
id and role are fixed by the first start and kept in the data directory.
Node ids are chosen by the operator and never reused: a removed id cannot
join again. SIGINT or SIGTERM stops the node cleanly.

Unless --no-workloads, the node runs the VMs and tasks the leader places on
it as QEMU microVMs (KVM when a probe VM boots with it, else TCG), each owned
by a small supervisor process, with its files (console log, sockets) under
--data-dir/vms. VMs outlive the node process: a node restarted from the same
data directory adopts the VMs it left running. The default guest image is
built under --data-dir/images the first time it is needed, from the host's
Debian kernel, busybox-static and the blixard-agent binary.`,
		Example: `  blixard node --id 1 --listen 127.0.0.1:7001 --data-dir ./data/n1
  blixard node --id 2 --listen 127.0.0.1:7002 --data-dir ./data/n2 --join 127.0.0.1:7001
  blixard node --id 3 --listen 127.0.0.1:7003 --data-dir ./data/n3 --join 127.0.0.1:7001 --role worker`,
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
			for _, j := range join {
				for _, a := range strings.Split(j, ",") {
					if a = strings.TrimSpace(a); a != "" {
						cfg.Join = append(cfg.Join, a)
					}
				}
			}
			cfg.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return usageErrorf("--label: %q is not key=value", l)
				}
				cfg.Labels[k] = v
			}
			cfg.Capacity = &apiv1.Resources{Vcpus: capVcpus, MemoryMib: capMemory}
			cfg.TickInterval, cfg.ElectionTicks, cfg.HeartbeatTicks = tick, electionTicks, hbTick
			cfg.Logger = log
			n, err := runtime.Start(cmd.Context(), cfg)
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
	f.StringVar(&role, "role", "voter", "`voter` (takes part in Raft votes) or worker (runs workloads, never votes)")
	f.Uint32Var(&capVcpus, "capacity-vcpus", 0, "vCPUs this node offers (default: the host's CPUs)")
	f.Uint64Var(&capMemory, "capacity-memory", 0, "memory in `MiB` this node offers (default: the host's memory)")
	f.StringArrayVar(&labels, "label", nil, "a `key=value` label for placement constraints (repeatable)")
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
