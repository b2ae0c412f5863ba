package state

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// SnapshotVersion is the format version written into every snapshot.
const SnapshotVersion = 1

var deterministic = proto.MarshalOptions{Deterministic: true}

// Snapshot returns the whole state as bytes. Equal states give equal bytes.
func (s *State) Snapshot() ([]byte, error) {
	snap := &apiv1.StateSnapshot{
		Version:  SnapshotVersion,
		Cluster:  s.Cluster(),
		Nodes:    s.Nodes(),
		Vms:      s.Vms(0),
		Tasks:    s.Tasks(0),
		Requests: s.requestLog,
		Tokens:   s.Tokens(apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED),

		Events:    s.events,
		NotedTerm: s.notedTerm,

		CaSealedKey:             s.caSealed,
		CaRotationOverlapNanos:  s.caOverlap,
		CaRotationPhaseUnixNano: s.caPhaseAt,
	}
	b, err := deterministic.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("state: marshal snapshot at index %d: %w", s.applied, err)
	}
	return b, nil
}

// Restore rebuilds a state from Snapshot's bytes. It checks what it reads
// (version, sorted unique keys, bounds) and returns an error, never panics,
// on bytes that Snapshot could not have written.
func Restore(data []byte) (*State, error) {
	var snap apiv1.StateSnapshot
	if err := proto.Unmarshal(data, &snap); err != nil {
		return nil, fmt.Errorf("state: decode snapshot: %w", err)
	}
	if snap.GetVersion() != SnapshotVersion {
		return nil, fmt.Errorf("state: snapshot version %d, want %d", snap.GetVersion(), SnapshotVersion)
	}
	s := New()
	s.clusterID = snap.GetCluster().GetId()
	if m := snap.GetCluster().GetMembership(); m != nil {
		s.membership = m
	}
	s.applied = snap.GetCluster().GetAppliedIndex()
	s.secure = snap.GetCluster().GetSecure()
	if len(snap.GetEvents()) > MaxEvents {
		return nil, fmt.Errorf("state: snapshot holds %d events, at most %d", len(snap.GetEvents()), MaxEvents)
	}
	for i, e := range snap.GetEvents() {
		if e.GetIndex() > s.applied || (i > 0 && snap.GetEvents()[i-1].GetIndex() > e.GetIndex()) {
			return nil, fmt.Errorf("state: snapshot event %d: indexes must not fall or pass the applied index", i)
		}
	}
	s.events, s.notedTerm = snap.GetEvents(), snap.GetNotedTerm()
	s.secVersion = 1 // a state restored is a change to whoever reads it
	c := snap.GetCluster()
	if len(c.GetCaCertificates()) > MaxBundleCAs {
		return nil, fmt.Errorf("state: snapshot trusts %d CAs, at most %d", len(c.GetCaCertificates()), MaxBundleCAs)
	}
	for i, der := range c.GetCaCertificates() {
		if len(der) == 0 || len(der) > MaxCACertBytes {
			return nil, fmt.Errorf("state: snapshot CA certificate %d is %d bytes", i, len(der))
		}
		s.caCerts = append(s.caCerts, der)
	}
	if len(snap.GetCaSealedKey()) > MaxSealedKeyBytes || snap.GetCaRotationOverlapNanos() < 0 || snap.GetCaRotationOverlapNanos() > MaxCAOverlapNanos {
		return nil, errors.New("state: snapshot's CA rotation is malformed")
	}
	switch c.GetCaRotationPhase() {
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE:
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST, apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE:
		if len(s.caCerts) < 2 {
			return nil, errors.New("state: snapshot's CA rotation trusts fewer than two CAs")
		}
	default:
		return nil, fmt.Errorf("state: snapshot's CA rotation phase %d is unknown", c.GetCaRotationPhase())
	}
	s.caSealed, s.caPhase = snap.GetCaSealedKey(), c.GetCaRotationPhase()
	s.caPhaseAt, s.caOverlap = snap.GetCaRotationPhaseUnixNano(), snap.GetCaRotationOverlapNanos()
	if len(snap.GetTokens()) > 2*MaxTokens {
		return nil, fmt.Errorf("state: snapshot holds %d tokens, at most %d allowed", len(snap.GetTokens()), 2*MaxTokens)
	}
	for i, t := range snap.GetTokens() {
		if err := checkToken("token", t); err != nil {
			return nil, fmt.Errorf("state: snapshot token %d: %w", i, err)
		}
		if i > 0 && compareTokens(snap.GetTokens()[i-1], t) >= 0 {
			return nil, fmt.Errorf("state: snapshot token %d: tokens must be sorted by kind and id, and unique", i)
		}
		s.tokens[tokenKey{t.GetKind(), t.GetId()}] = t
	}
	for i, n := range snap.GetNodes() {
		if n.GetId() == 0 || (i > 0 && snap.GetNodes()[i-1].GetId() >= n.GetId()) {
			return nil, fmt.Errorf("state: snapshot node %d (id %d): ids must be non-zero, sorted and unique", i, n.GetId())
		}
		s.nodes[n.GetId()] = n
	}
	for i, v := range snap.GetVms() {
		if !validName(v.GetName()) || (i > 0 && snap.GetVms()[i-1].GetName() >= v.GetName()) {
			return nil, fmt.Errorf("state: snapshot VM %d (%q): names must be valid, sorted and unique", i, v.GetName())
		}
		if v.GetSpec() == nil {
			return nil, fmt.Errorf("state: snapshot VM %q has no spec", v.GetName())
		}
		s.vms[v.GetName()] = v
	}
	for i, t := range snap.GetTasks() {
		if t.GetId() == 0 || (i > 0 && snap.GetTasks()[i-1].GetId() >= t.GetId()) {
			return nil, fmt.Errorf("state: snapshot task %d (id %d): ids must be non-zero, sorted and unique", i, t.GetId())
		}
		s.tasks[t.GetId()] = t
	}
	if len(snap.GetRequests()) > MaxRequestRecords {
		return nil, fmt.Errorf("state: snapshot holds %d request records, at most %d allowed", len(snap.GetRequests()), MaxRequestRecords)
	}
	for i, r := range snap.GetRequests() {
		id := r.GetClientRequestId()
		if id == "" || (i > 0 && snap.GetRequests()[i-1].GetIndex() >= r.GetIndex()) || r.GetIndex() > s.applied {
			return nil, fmt.Errorf("state: snapshot request record %d (%q): ids must be set, indexes increasing and applied", i, id)
		}
		if r.GetResponse() == nil {
			// Apply would hand a retry of id a nil response.
			return nil, fmt.Errorf("state: snapshot request record %d (%q) has no response", i, id)
		}
		if _, dup := s.requests[id]; dup {
			return nil, fmt.Errorf("state: snapshot request id %q appears twice", id)
		}
		s.requests[id] = r
		s.requestLog = append(s.requestLog, r)
	}
	s.rebuildIndex()
	return s, nil
}
