package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/core"
	"github.com/blixard/blixard/internal/server"
)

// Config is what a node is started with.
type Config struct {
	// ID is the node's id: operator-chosen, non-zero, never reused.
	ID uint64
	// Listen is the gRPC listen address (host:port; port 0 picks one).
	Listen string
	// Advertise is the address peers and clients reach this node at;
	// default: the address Listen bound.
	Advertise string
	// DataDir holds the node's store.
	DataDir string
	// Join lists addresses of cluster members to ask to add this node; used
	// only when DataDir holds nothing yet.
	Join []string
	// Role is voter (default) or worker. It is fixed when the data
	// directory is first used; later starts take it from there, and refuse
	// a different one given explicitly (RoleGiven).
	Role      apiv1.NodeRole
	RoleGiven bool
	// Capacity is what this node offers; zero fields are detected.
	Capacity *apiv1.Resources
	Labels   map[string]string
	// TickInterval is one core tick (default 100 ms); ElectionTicks and
	// HeartbeatTicks default to 10 and 1.
	TickInterval                  time.Duration
	ElectionTicks, HeartbeatTicks int
	// SnapshotEntries: snapshot every this many applied entries (default
	// the core's, 10,000).
	SnapshotEntries uint64
	// Lease is the node's fencing lease (default 5 s): cut off from a
	// quorum this long, it stops its VMs, and their supervisors kill them
	// if the node process is gone. DisconnectAfter (default 2 s) and
	// DownAfter (default 6 s, at least Lease plus the clock-drift margin)
	// are how long the leader waits without a heartbeat before it marks a
	// node disconnected, then down (its VMs are placed elsewhere). All
	// three are whole ticks.
	Lease, DisconnectAfter, DownAfter time.Duration
	// VcpuOvercommit and MemoryOvercommit are this node's overcommit
	// ratios (0 means 1.0; at most 16).
	VcpuOvercommit, MemoryOvercommit float64
	// InboxSize bounds the queue of events waiting for the core; peer
	// messages beyond it are dropped (raft tolerates loss). Default 4096.
	InboxSize int
	Logger    *slog.Logger

	// NoWorkloads: this node runs no VMs or tasks. It offers no image, so
	// the leader places nothing on it; it still places work as a leader.
	NoWorkloads bool
	// QEMU is the qemu-system-x86_64 binary (default: from PATH).
	QEMU string
	// Accel is "kvm", "tcg", or "" to decide: KVM only when /dev/kvm
	// exists and a probe VM boots with it.
	Accel string
	// Agent is the blixard-agent binary the default image is built with
	// (default: beside this executable, or on PATH).
	Agent string
	// JoinToken is the join token (bxj.…) a new secure node joins with:
	// it pins the cluster CA and is the node's credential for its first
	// certificate. Required with Join unless Insecure.
	JoinToken string
	// Insecure runs the node without TLS or authentication: plaintext
	// gRPC, every caller may do anything, joins need no token. It is
	// refused unless Listen and Advertise are loopback addresses, and it
	// is fixed when the data directory is first used.
	Insecure bool
	// MetricsListen, if set, is the host:port Prometheus metrics are served
	// on (plain HTTP, /metrics); empty serves none.
	MetricsListen string
	// Pprof adds Go's profiles (net/http/pprof, /debug/pprof/) to the
	// metrics listener. They are unauthenticated, so MetricsListen must be
	// a loopback address.
	Pprof bool
	// HTTPListen, if set, is the host:port the web dashboard is served on.
	// On a loopback address it is plain HTTP and a viewer token is
	// optional (only needed to read consoles kept on other nodes);
	// anywhere else it is HTTPS with the node's certificate and every
	// data request needs a viewer token, so it is refused with Insecure.
	HTTPListen string
	// HTTPTLS serves the dashboard over HTTPS with viewer tokens required
	// even on a loopback address (off loopback it always is).
	HTTPTLS bool
	// Limits bound what one API client may ask of this node (requests per
	// second, burst, open streams); zero fields take server's defaults.
	Limits server.Limits
	// Out receives what is shown to the operator once, not logged: the
	// first admin token of a new cluster. Default os.Stdout.
	Out io.Writer

	// Supervisor is the argv prefix that runs a VM's supervisor (default:
	// this executable's hidden "vmm supervise" command).
	Supervisor []string
}

func (c Config) withDefaults() (Config, error) {
	if c.ID == 0 {
		return c, errors.New("--id must be a non-zero integer")
	}
	if c.DataDir == "" {
		return c, errors.New("--data-dir must be set")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return c, fmt.Errorf("--listen %q is not host:port: %w", c.Listen, err)
	}
	if c.Advertise != "" {
		if _, _, err := net.SplitHostPort(c.Advertise); err != nil {
			return c, fmt.Errorf("--advertise %q is not host:port: %w", c.Advertise, err)
		}
	}
	for _, j := range c.Join {
		if _, _, err := net.SplitHostPort(j); err != nil {
			return c, fmt.Errorf("--join %q is not host:port: %w", j, err)
		}
	}
	if c.Insecure {
		for _, a := range []struct{ flag, addr string }{{"--listen", c.Listen}, {"--advertise", c.Advertise}} {
			if a.addr != "" && !loopback(a.addr) {
				return c, fmt.Errorf("--insecure serves without TLS or authentication, so only on loopback: %s %q is not a loopback address", a.flag, a.addr)
			}
		}
	}
	if c.Pprof && (c.MetricsListen == "" || !loopback(c.MetricsListen)) {
		return c, fmt.Errorf("--pprof serves unauthenticated profiles beside the metrics, so it needs a loopback --metrics-listen, got %q", c.MetricsListen)
	}
	if c.HTTPListen != "" {
		if _, _, err := net.SplitHostPort(c.HTTPListen); err != nil {
			return c, fmt.Errorf("--http-listen %q is not host:port: %w", c.HTTPListen, err)
		}
		if c.Insecure && c.dashboardTLS() {
			return c, fmt.Errorf("--http-listen %q with --insecure: off loopback (or with --http-tls) the dashboard needs TLS and viewer tokens, which --insecure has not", c.HTTPListen)
		}
	}
	switch c.Role {
	case apiv1.NodeRole_NODE_ROLE_UNSPECIFIED:
		c.Role = apiv1.NodeRole_NODE_ROLE_VOTER
		c.RoleGiven = false
	case apiv1.NodeRole_NODE_ROLE_VOTER, apiv1.NodeRole_NODE_ROLE_WORKER:
	default:
		return c, fmt.Errorf("role %v is neither voter nor worker", c.Role)
	}
	capacity := &apiv1.Resources{}
	if c.Capacity != nil {
		capacity.Vcpus, capacity.MemoryMib, capacity.DiskMib, capacity.Features =
			c.Capacity.GetVcpus(), c.Capacity.GetMemoryMib(), c.Capacity.GetDiskMib(), c.Capacity.GetFeatures()
	}
	if capacity.Vcpus == 0 {
		capacity.Vcpus = uint32(goruntime.NumCPU())
	}
	if capacity.MemoryMib == 0 {
		mem, err := hostMemoryMiB()
		if err != nil {
			return c, fmt.Errorf("detect memory (set --capacity-memory): %w", err)
		}
		capacity.MemoryMib = mem
	}
	c.Capacity = capacity
	if c.TickInterval == 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.InboxSize == 0 {
		c.InboxSize = 4096
	}
	if c.Lease == 0 {
		c.Lease = core.DefaultLeaseTicks * c.TickInterval
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--lease", c.Lease}, {"--disconnect-after", c.DisconnectAfter}, {"--down-after", c.DownAfter}} {
		if d.v < 0 || d.v%c.TickInterval != 0 {
			return c, fmt.Errorf("%s %s must be a non-negative multiple of the tick interval (%s)", d.flag, d.v, c.TickInterval)
		}
	}
	// The core's rule, checked here to say it in the flags' words: a node
	// is declared down only once its lease has surely run out.
	leaseTicks := int(c.Lease / c.TickInterval)
	downTicks, disconnectTicks := int(c.DownAfter/c.TickInterval), int(c.DisconnectAfter/c.TickInterval)
	if downTicks == 0 {
		downTicks = max(core.DefaultDownTicks, leaseTicks+core.FenceMarginTicks(leaseTicks))
	}
	if disconnectTicks == 0 {
		disconnectTicks = core.DefaultDisconnectTicks
	}
	if least := leaseTicks + core.FenceMarginTicks(leaseTicks); downTicks < least {
		return c, fmt.Errorf("--down-after %s must be at least --lease %s plus the clock-drift margin: %s",
			time.Duration(downTicks)*c.TickInterval, c.Lease, time.Duration(least)*c.TickInterval)
	}
	if disconnectTicks >= downTicks {
		return c, fmt.Errorf("--disconnect-after %s must be shorter than --down-after %s",
			time.Duration(disconnectTicks)*c.TickInterval, time.Duration(downTicks)*c.TickInterval)
	}
	for _, r := range []struct {
		flag string
		v    float64
	}{{"--overcommit-vcpu", c.VcpuOvercommit}, {"--overcommit-memory", c.MemoryOvercommit}} {
		if r.v != 0 && !(r.v >= 1 && r.v <= 16) {
			return c, fmt.Errorf("%s %g must be between 1.0 and 16", r.flag, r.v)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	switch c.Accel {
	case "", "kvm", "tcg":
	default:
		return c, fmt.Errorf("--accel %q is not kvm or tcg", c.Accel)
	}
	return c, nil
}

// hostMemoryMiB reads MemTotal from /proc/meminfo.
func hostMemoryMiB() (uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseUint(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse MemTotal %q: %w", fields[1], err)
			}
			return kib / 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no MemTotal in /proc/meminfo")
}

// loopback reports whether host:port names a loopback address: localhost
// or an IP in 127.0.0.0/8 or ::1. An empty host (every interface) is not.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
