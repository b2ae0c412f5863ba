package state

import (
	"bytes"
	"slices"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// CA trust limits.
const (
	// MaxCACertBytes bounds one CA certificate (DER) in the state.
	MaxCACertBytes = 8 << 10
	// MaxSealedKeyBytes bounds a sealed CA key.
	MaxSealedKeyBytes = 4 << 10
	// MaxBundleCAs bounds the CAs trusted at once.
	MaxBundleCAs = 8
	// MinCAOverlapNanos and MaxCAOverlapNanos bound a phase of a CA
	// rotation: 5 s to 7 days (well within the last third of a node
	// certificate's 30 days, so no certificate runs out during one).
	MinCAOverlapNanos = int64(5e9)
	MaxCAOverlapNanos = int64(7 * 24 * 3600 * 1e9)
)

// CATrust is the cluster's CA trust as the state holds it.
type CATrust struct {
	// Certificates are DER, newest first: the first signs.
	Certificates [][]byte
	// SealedKey is, during a rotation, the newest CA's key sealed with the
	// previous CA's.
	SealedKey []byte
	Phase     apiv1.CARotationPhase
	// PhaseAt is when the phase began (proposer's clock); Overlap how long
	// each phase lasts.
	PhaseAt, Overlap int64
}

// CATrust returns a copy of the cluster's CA trust.
func (s *State) CATrust() CATrust {
	t := CATrust{SealedKey: slices.Clone(s.caSealed), Phase: s.caPhase, PhaseAt: s.caPhaseAt, Overlap: s.caOverlap}
	for _, c := range s.caCerts {
		t.Certificates = append(t.Certificates, slices.Clone(c))
	}
	return t
}

func (s *State) checkRotateCa(a at, op *apiv1.RotateCaCommand) *Error {
	if !a.checking && a.nanos <= 0 {
		return invalid("proposed_unix_nano", "a CA rotation needs the proposer's clock")
	}
	if len(s.caCerts) == 0 {
		return precondition("", "this cluster has no CA to rotate (it runs with --insecure, or began before CA trust was replicated)")
	}
	switch op.GetToPhase() {
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST:
		if s.caPhase != apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE {
			return precondition("", "a CA rotation is under way (phase %s)", phaseName(s.caPhase))
		}
		c := op.GetNewCertificate()
		if len(c) == 0 || len(c) > MaxCACertBytes {
			return invalid("new_certificate", "must be 1 to %d bytes", MaxCACertBytes)
		}
		if len(s.caCerts) >= MaxBundleCAs {
			return exhausted("new_certificate", "the cluster trusts %d CAs already", len(s.caCerts))
		}
		for _, have := range s.caCerts {
			if bytes.Equal(have, c) {
				return exists("new_certificate", "the cluster trusts this CA already")
			}
		}
		if k := op.GetSealedKey(); len(k) == 0 || len(k) > MaxSealedKeyBytes {
			return invalid("sealed_key", "must be 1 to %d bytes", MaxSealedKeyBytes)
		}
		if op.GetOverlapNanos() < MinCAOverlapNanos || op.GetOverlapNanos() > MaxCAOverlapNanos {
			return invalid("overlap_nanos", "must be between %d and %d", MinCAOverlapNanos, MaxCAOverlapNanos)
		}
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE, apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE:
		from := apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST
		if op.GetToPhase() == apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE {
			from = apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE
		}
		if s.caPhase != from {
			return precondition("to_phase", "the rotation is in phase %s, not %s", phaseName(s.caPhase), phaseName(from))
		}
		if len(op.GetNewCertificate()) != 0 || len(op.GetSealedKey()) != 0 || op.GetOverlapNanos() != 0 {
			return invalid("to_phase", "only the start of a rotation carries a certificate, a key and an overlap")
		}
		if !a.checking && a.nanos-s.caPhaseAt < s.caOverlap {
			return precondition("to_phase", "phase %s lasts until %d", phaseName(s.caPhase), s.caPhaseAt+s.caOverlap)
		}
	default:
		return invalid("to_phase", "unknown phase %d", op.GetToPhase())
	}
	return nil
}

func (s *State) rotateCa(a at, op *apiv1.RotateCaCommand) *apiv1.Response {
	switch op.GetToPhase() {
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST:
		s.caCerts = append([][]byte{slices.Clone(op.GetNewCertificate())}, s.caCerts...)
		s.caSealed = slices.Clone(op.GetSealedKey())
		s.caOverlap = op.GetOverlapNanos()
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE:
		s.caCerts = s.caCerts[:1]
		s.caSealed, s.caOverlap = nil, 0
	}
	s.caPhase, s.caPhaseAt = op.GetToPhase(), a.nanos
	if s.caPhase == apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE {
		s.caPhaseAt = 0
	}
	s.secVersion++
	return &apiv1.Response{Kind: &apiv1.Response_RotateCa{RotateCa: &apiv1.RotateCaResponse{Cluster: s.Cluster()}}}
}

// NextCAPhase is the phase a rotation moves to once the current one's
// overlap has passed at now, and whether it has.
func (s *State) NextCAPhase(now int64) (apiv1.CARotationPhase, bool) {
	switch s.caPhase {
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST:
		return apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE, now-s.caPhaseAt >= s.caOverlap
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE:
		return apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, now-s.caPhaseAt >= s.caOverlap
	}
	return apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, false
}

func phaseName(p apiv1.CARotationPhase) string {
	switch p {
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE:
		return "none"
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST:
		return "trust"
	case apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE:
		return "serve"
	}
	return "unknown"
}

// caNext is when the rotation's current phase ends; 0 without one.
func (s *State) caNext() int64 {
	if s.caPhase == apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE {
		return 0
	}
	return s.caPhaseAt + s.caOverlap
}
