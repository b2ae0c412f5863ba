package core

import (
	"errors"
	"fmt"
	"math"
	"time"

	"go.etcd.io/raft/v3"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/sched"
	"github.com/blixard/blixard/internal/state"
)

// Defaults for Config's zero fields.
const (
	DefaultElectionTicks       = 10
	DefaultHeartbeatTicks      = 1
	DefaultSnapshotEntries     = 10000
	DefaultTrailingEntries     = 5000
	DefaultMaxSizePerMsgBytes  = 1 << 20
	DefaultMaxInflightMsgs     = 256
	DefaultMaxUncommittedBytes = 64 << 20
	DefaultMaxPendingRequests  = 10000
	DefaultRegisterEveryTicks  = 20
	DefaultReportEveryTicks    = 10
	DefaultRestartBackoffTicks = 10
	DefaultStopRetryTicks      = 300
	DefaultTickInterval        = 100 * time.Millisecond
	DefaultLeaseTicks          = 50
	DefaultDisconnectTicks     = 20
	DefaultDownTicks           = 60
)

// maxTicks bounds the lease and the down timeout in ticks (so that their
// products with TickInterval cannot overflow).
const maxTicks = 1 << 20

// MaxClockDrift bounds how much faster or slower than real time any node's
// clock (and so its ticks) may run: the one constant every clock-dependent
// margin derives from. The simulator keeps its drifted clocks within it.
const MaxClockDrift = 0.05

// FenceMarginTicks is how much longer than a lease of leaseTicks (counted by
// the node that holds it) the leader must wait, counting its own ticks,
// before it may take the node for dead: the lease may last up to
// leaseTicks × (1+MaxClockDrift) of real time and the leader's ticks may
// come (1−MaxClockDrift) slower, and each side may be one tick off.
func FenceMarginTicks(leaseTicks int) int {
	ratio := 2 * MaxClockDrift / (1 - MaxClockDrift)
	margin := int(math.Ceil(float64(leaseTicks) * ratio))
	return margin + 2
}

// Config is what a Node is made with. Zero fields take the defaults above.
type Config struct {
	// ID is this node's id: non-zero, chosen by the operator, never reused.
	ID uint64
	// Peers are the voters of a brand-new cluster, this node among them. They
	// are used only when nothing was persisted; a node joining an existing
	// cluster leaves Peers empty and waits for the leader to reach it.
	Peers []uint64
	// ClusterID names a brand-new cluster; the first leader records it.
	ClusterID string
	// Secure and AdminToken go with ClusterID into the cluster's first
	// entry: joins then need a join token, and AdminToken (an ACL token's
	// record, hash only) is the first admin's.
	Secure     bool
	AdminToken *apiv1.Token
	// CACertificate is the cluster CA's certificate (DER), recorded with
	// the cluster's first entry; a rotation replaces it (see state.CATrust).
	CACertificate []byte

	// Address, Role, Capacity and Labels describe this node; the core
	// registers them in the replicated state and keeps them current.
	Address  string
	Role     apiv1.NodeRole
	Capacity *apiv1.Resources
	Labels   map[string]string

	// ElectionTicks is the election timeout in ticks; HeartbeatTicks the
	// leader's heartbeat interval. ElectionTicks > HeartbeatTicks.
	ElectionTicks  int
	HeartbeatTicks int
	// SnapshotEntries: the core snapshots its state every this many applied
	// entries.
	SnapshotEntries uint64
	// TrailingEntries: entries kept in the in-memory log behind a snapshot,
	// so that a follower a little behind catches up without one.
	TrailingEntries uint64
	// MaxSizePerMsgBytes bounds the entries in one append message.
	MaxSizePerMsgBytes uint64
	// MaxInflightMsgs bounds the append messages in flight to one follower.
	MaxInflightMsgs int
	// MaxUncommittedBytes bounds the leader's uncommitted log; proposals
	// beyond it are dropped (and answered ERROR_CODE_UNAVAILABLE).
	MaxUncommittedBytes uint64
	// RequestTimeoutTicks: a write not applied, or a read not answered,
	// after this many ticks gets an error. Default 5 × ElectionTicks.
	RequestTimeoutTicks int
	// MaxPendingRequests bounds the writes and linearizable reads in flight.
	MaxPendingRequests int
	// RegisterEveryTicks: how often the node checks that its record in the
	// state is current, and proposes it again if not.
	RegisterEveryTicks int

	// Workloads turns on the node agent (agent.go): the leader places VMs
	// and tasks on nodes, and every node starts and stops what is placed
	// on it through VMActions and takes ReportVM back. Off, VMs and tasks
	// are stored and never placed.
	Workloads bool
	// Images are the guest images this node can boot; the core registers
	// them with the node.
	Images []*apiv1.ImageInfo
	// ReportEveryTicks: a report or placement the state does not show yet
	// is proposed again after this many ticks.
	ReportEveryTicks int
	// RestartBackoffTicks is the first wait before a failed VM restarts;
	// it doubles with each restart, up to 32 times.
	RestartBackoffTicks int
	// StopRetryTicks: a VM asked to stop that has not ended after this
	// many ticks is asked again.
	StopRetryTicks int

	// TickInterval is how long a tick is meant to last. The core reads no
	// clock: it uses this only to express its fencing lease as a deadline
	// for the driver, and to publish the lease's length.
	TickInterval time.Duration
	// LeaseTicks is the fencing lease (health.go): a node that has not
	// heard from a quorum for this many ticks stops its VMs and tasks, and
	// the driver's per-VM supervisors kill them when it stops renewing.
	LeaseTicks int
	// DisconnectTicks: the leader marks a node it has not heard from for
	// this many ticks disconnected (nothing new is placed on it);
	// DownTicks: down (its workloads are placed elsewhere). DownTicks must
	// be at least LeaseTicks + FenceMarginTicks(LeaseTicks), so that a
	// node's VMs have stopped before they start anywhere else.
	DisconnectTicks int
	DownTicks       int
	// VcpuOvercommit and MemoryOvercommit are this node's overcommit
	// ratios, registered with it (0 means 1.0).
	VcpuOvercommit   float64
	MemoryOvercommit float64
	// MaxCandidates bounds the nodes one placement ranks (sched.Options);
	// 0 means sched.DefaultMaxCandidates, negative means all.
	MaxCandidates int

	// Incarnation tells this run of the node from earlier ones: it goes into
	// the context of every ReadIndex request, so that an answer to a read
	// made before a restart is never taken for one made after. The driver
	// draws it at random (the simulator from its seed).
	Incarnation uint64

	// Logger receives etcd raft's log lines. Nil discards them.
	Logger raft.Logger
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.ID == 0 {
		return out, errors.New("core: config: ID must not be 0")
	}
	if out.ElectionTicks == 0 {
		out.ElectionTicks = DefaultElectionTicks
	}
	if out.HeartbeatTicks == 0 {
		out.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if out.ElectionTicks <= out.HeartbeatTicks {
		return out, fmt.Errorf("core: config: ElectionTicks (%d) must exceed HeartbeatTicks (%d)", out.ElectionTicks, out.HeartbeatTicks)
	}
	if out.SnapshotEntries == 0 {
		out.SnapshotEntries = DefaultSnapshotEntries
	}
	if out.TrailingEntries == 0 {
		out.TrailingEntries = DefaultTrailingEntries
	}
	if out.MaxSizePerMsgBytes == 0 {
		out.MaxSizePerMsgBytes = DefaultMaxSizePerMsgBytes
	}
	if out.MaxInflightMsgs == 0 {
		out.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if out.MaxUncommittedBytes == 0 {
		out.MaxUncommittedBytes = DefaultMaxUncommittedBytes
	}
	if out.RequestTimeoutTicks == 0 {
		out.RequestTimeoutTicks = 5 * out.ElectionTicks
	}
	if out.MaxPendingRequests == 0 {
		out.MaxPendingRequests = DefaultMaxPendingRequests
	}
	if out.RegisterEveryTicks == 0 {
		out.RegisterEveryTicks = DefaultRegisterEveryTicks
	}
	if out.ReportEveryTicks == 0 {
		out.ReportEveryTicks = DefaultReportEveryTicks
	}
	if out.RestartBackoffTicks == 0 {
		out.RestartBackoffTicks = DefaultRestartBackoffTicks
	}
	if out.StopRetryTicks == 0 {
		out.StopRetryTicks = DefaultStopRetryTicks
	}
	if out.TickInterval == 0 {
		out.TickInterval = DefaultTickInterval
	}
	if out.MaxCandidates == 0 {
		out.MaxCandidates = sched.DefaultMaxCandidates
	}
	if out.LeaseTicks == 0 {
		out.LeaseTicks = DefaultLeaseTicks
	}
	if out.DisconnectTicks == 0 {
		out.DisconnectTicks = DefaultDisconnectTicks
	}
	if out.DownTicks == 0 {
		out.DownTicks = max(DefaultDownTicks, out.LeaseTicks+FenceMarginTicks(out.LeaseTicks))
	}
	if out.TickInterval < 0 || out.LeaseTicks < 0 || out.DisconnectTicks < 0 || out.LeaseTicks > maxTicks || out.DownTicks > maxTicks {
		return out, fmt.Errorf("core: config: TickInterval, LeaseTicks and DisconnectTicks must not be negative, LeaseTicks and DownTicks at most %d", maxTicks)
	}
	if maxLease := state.MaxLeaseMillis * time.Millisecond; out.TickInterval > maxLease || out.LeaseTicks > int(maxLease/out.TickInterval) {
		return out, fmt.Errorf("core: config: a lease of %d ticks of %s is longer than the %s allowed", out.LeaseTicks, out.TickInterval, maxLease)
	}
	if min := out.LeaseTicks + FenceMarginTicks(out.LeaseTicks); out.DownTicks < min {
		return out, fmt.Errorf("core: config: DownTicks (%d) must be at least LeaseTicks (%d) + the drift margin (%d) = %d",
			out.DownTicks, out.LeaseTicks, FenceMarginTicks(out.LeaseTicks), min)
	}
	if out.DisconnectTicks >= out.DownTicks {
		return out, fmt.Errorf("core: config: DisconnectTicks (%d) must be below DownTicks (%d)", out.DisconnectTicks, out.DownTicks)
	}
	if out.LeaseTicks < 3*out.ElectionTicks {
		// A leader's crash costs up to two election timeouts before the
		// next is elected, and reads wait for its first commit: a shorter
		// lease would fence the whole cluster at every failover.
		return out, fmt.Errorf("core: config: LeaseTicks (%d) must be at least 3 × ElectionTicks (%d): a lease must outlast a change of leader", out.LeaseTicks, out.ElectionTicks)
	}
	if out.Role == apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
		out.Role = apiv1.NodeRole_NODE_ROLE_VOTER
	}
	if out.Logger == nil {
		out.Logger = quietLogger{}
	}
	seen := map[uint64]bool{}
	for _, p := range out.Peers {
		if p == 0 || seen[p] {
			return out, fmt.Errorf("core: config: Peers %v must be non-zero and unique", out.Peers)
		}
		seen[p] = true
	}
	if len(out.Peers) > 0 && !seen[out.ID] {
		return out, fmt.Errorf("core: config: Peers %v must include this node's ID %d", out.Peers, out.ID)
	}
	return out, nil
}

// quietLogger drops raft's chatter; raft's panics still panic.
type quietLogger struct{}

func (quietLogger) Debug(...any)            {}
func (quietLogger) Debugf(string, ...any)   {}
func (quietLogger) Error(...any)            {}
func (quietLogger) Errorf(string, ...any)   {}
func (quietLogger) Info(...any)             {}
func (quietLogger) Infof(string, ...any)    {}
func (quietLogger) Warning(...any)          {}
func (quietLogger) Warningf(string, ...any) {}
func (quietLogger) Fatal(v ...any)          { panic(fmt.Sprint(v...)) }
func (quietLogger) Fatalf(f string, v ...any) {
	panic(fmt.Sprintf(f, v...))
}
func (quietLogger) Panic(v ...any) { panic(fmt.Sprint(v...)) }
func (quietLogger) Panicf(f string, v ...any) {
	panic(fmt.Sprintf(f, v...))
}
