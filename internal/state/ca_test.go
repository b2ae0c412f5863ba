package state_test

import (
	"bytes"
	"fmt"
	"math"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/state"
)

// ---- CA rotation builders ------------------------------------------------------

const (
	phaseNone  = apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE
	phaseTrust = apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST
	phaseServe = apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE

	// caOverlap is the shortest overlap a rotation may have.
	caOverlap = state.MinCAOverlapNanos
	// caStart is when the test rotations begin (proposer's clock).
	caStart = int64(1_000_000_000_000)
)

// caDER is a distinct stand-in for a CA certificate's DER per seed: the
// state keeps the bytes and never parses them.
func caDER(seed byte) []byte { return bytes.Repeat([]byte{0x30, seed}, 200) }

// caSealed is a stand-in for a sealed CA key.
func caSealed(seed byte) []byte { return bytes.Repeat([]byte{seed}, 160) }

func caInit(id string, cert []byte) *apiv1.Command {
	return &apiv1.Command{Op: &apiv1.Command_InitCluster{InitCluster: &apiv1.InitClusterCommand{
		ClusterId: id, Secure: true, CaCertificate: cert}}}
}

// rotateTo is a RotateCa command proposed at nanos.
func rotateTo(nanos int64, to apiv1.CARotationPhase, cert, sealed []byte, overlap int64) *apiv1.Command {
	return &apiv1.Command{ProposedUnixNano: nanos, Op: &apiv1.Command_RotateCa{RotateCa: &apiv1.RotateCaCommand{
		ToPhase: to, NewCertificate: cert, SealedKey: sealed, OverlapNanos: overlap}}}
}

// caTrustStart begins a rotation to cert at nanos with the shortest overlap.
func caTrustStart(nanos int64, cert []byte) *apiv1.Command {
	return rotateTo(nanos, phaseTrust, cert, caSealed(cert[1]), caOverlap)
}

// caHarness is a secure cluster whose CA is caDER(1), brought to phase:
// TRUST begun at caStart with caDER(2), SERVE begun at caStart+caOverlap.
func caHarness(t *testing.T, phase apiv1.CARotationPhase) *harness {
	t.Helper()
	h := newHarness(t)
	h.ok(caInit("c1", caDER(1)))
	if phase == phaseNone {
		return h
	}
	h.ok(caTrustStart(caStart, caDER(2)))
	if phase == phaseTrust {
		return h
	}
	h.ok(rotateTo(caStart+caOverlap, phaseServe, nil, nil, 0))
	return h
}

// wantTrust checks the state's CA trust, as CATrust and as Cluster show it.
func wantTrust(t *testing.T, s *state.State, want state.CATrust) {
	t.Helper()
	got := s.CATrust()
	if len(got.Certificates) != len(want.Certificates) {
		t.Fatalf("CATrust has %d certificates, want %d", len(got.Certificates), len(want.Certificates))
	}
	for i := range want.Certificates {
		if !bytes.Equal(got.Certificates[i], want.Certificates[i]) {
			t.Fatalf("CATrust certificate %d = %x..., want %x...", i, got.Certificates[i][:4], want.Certificates[i][:4])
		}
	}
	if !bytes.Equal(got.SealedKey, want.SealedKey) || got.Phase != want.Phase || got.PhaseAt != want.PhaseAt || got.Overlap != want.Overlap {
		t.Fatalf("CATrust = sealed %d bytes, phase %v at %d, overlap %d; want sealed %d bytes, phase %v at %d, overlap %d",
			len(got.SealedKey), got.Phase, got.PhaseAt, got.Overlap, len(want.SealedKey), want.Phase, want.PhaseAt, want.Overlap)
	}
	c := s.Cluster()
	if len(c.GetCaCertificates()) != len(want.Certificates) {
		t.Fatalf("Cluster has %d CA certificates, want %d", len(c.GetCaCertificates()), len(want.Certificates))
	}
	for i := range want.Certificates {
		if !bytes.Equal(c.GetCaCertificates()[i], want.Certificates[i]) {
			t.Fatalf("Cluster CA certificate %d differs", i)
		}
	}
	var next int64
	if want.Phase != phaseNone {
		next = want.PhaseAt + want.Overlap
	}
	if c.GetCaRotationPhase() != want.Phase || c.GetCaRotationNextUnixNano() != next {
		t.Fatalf("Cluster rotation = %v next %d, want %v next %d", c.GetCaRotationPhase(), c.GetCaRotationNextUnixNano(), want.Phase, next)
	}
}

// ---- tests -------------------------------------------------------------------

func TestInitClusterRecordsCATrust(t *testing.T) {
	big := bytes.Repeat([]byte{7}, state.MaxCACertBytes)
	for _, tc := range []struct {
		name string
		cert []byte
		want [][]byte
	}{
		{"a CA", caDER(1), [][]byte{caDER(1)}},
		{"the largest CA", big, [][]byte{big}},
		{"no CA (insecure)", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			before := h.s.SecurityVersion()
			h.ok(caInit("c1", tc.cert))
			if h.s.SecurityVersion() == before {
				t.Error("InitCluster did not change the security version")
			}
			wantTrust(t, h.s, state.CATrust{Certificates: tc.want, Phase: phaseNone})

			// The leader proposes InitCluster until it applies: a repeat,
			// with another CA, changes nothing.
			sv := h.s.SecurityVersion()
			h.ok(caInit("c1", caDER(9)))
			wantTrust(t, h.s, state.CATrust{Certificates: tc.want, Phase: phaseNone})
			if h.s.SecurityVersion() != sv {
				t.Error("a repeated InitCluster changed the security version")
			}
		})
	}

	t.Run("an oversized CA", func(t *testing.T) {
		h := newHarness(t)
		h.reject(caInit("c1", append(bytes.Clone(big), 0)), codeInvalid, "ca_certificate")
		wantTrust(t, h.s, state.CATrust{})
	})
}

// TestCARotationLifecycle walks a rotation NONE → TRUST → SERVE → NONE,
// and then a second one.
func TestCARotationLifecycle(t *testing.T) {
	h := caHarness(t, phaseNone)
	old, next := caDER(1), caDER(2)
	wantTrust(t, h.s, state.CATrust{Certificates: [][]byte{old}, Phase: phaseNone})

	trustAt := caStart
	overlap := 3 * caOverlap
	serveAt := trustAt + overlap + 7 // the leader proposes late: the phase starts then
	noneAt := serveAt + overlap

	steps := []struct {
		name string
		cmd  *apiv1.Command
		want state.CATrust
	}{
		{"trust", rotateTo(trustAt, phaseTrust, next, caSealed(2), overlap),
			state.CATrust{Certificates: [][]byte{next, old}, SealedKey: caSealed(2), Phase: phaseTrust, PhaseAt: trustAt, Overlap: overlap}},
		{"serve", rotateTo(serveAt, phaseServe, nil, nil, 0),
			state.CATrust{Certificates: [][]byte{next, old}, SealedKey: caSealed(2), Phase: phaseServe, PhaseAt: serveAt, Overlap: overlap}},
		{"none", rotateTo(noneAt, phaseNone, nil, nil, 0),
			state.CATrust{Certificates: [][]byte{next}, Phase: phaseNone}},
		// A second rotation trusts only the newest two.
		{"trust again", caTrustStart(noneAt+1, caDER(3)),
			state.CATrust{Certificates: [][]byte{caDER(3), next}, SealedKey: caSealed(3), Phase: phaseTrust, PhaseAt: noneAt + 1, Overlap: caOverlap}},
		{"serve again", rotateTo(noneAt+1+caOverlap, phaseServe, nil, nil, 0),
			state.CATrust{Certificates: [][]byte{caDER(3), next}, SealedKey: caSealed(3), Phase: phaseServe, PhaseAt: noneAt + 1 + caOverlap, Overlap: caOverlap}},
		{"none again", rotateTo(noneAt+1+2*caOverlap, phaseNone, nil, nil, 0),
			state.CATrust{Certificates: [][]byte{caDER(3)}, Phase: phaseNone}},
	}
	for _, st := range steps {
		before := h.s.SecurityVersion()
		resp := h.ok(st.cmd)
		if h.s.SecurityVersion() == before {
			t.Fatalf("%s: the security version did not change", st.name)
		}
		wantTrust(t, h.s, st.want)
		if got := resp.GetRotateCa().GetCluster(); !proto.Equal(got, h.s.Cluster()) {
			t.Fatalf("%s: response cluster = %v, want %v", st.name, got, h.s.Cluster())
		}
	}
}

func TestNextCAPhase(t *testing.T) {
	serveAt := caStart + caOverlap
	for _, tc := range []struct {
		name   string
		phase  apiv1.CARotationPhase
		now    int64
		wantTo apiv1.CARotationPhase
		due    bool
	}{
		{"none, long after", phaseNone, caStart + 100*caOverlap, phaseNone, false},
		{"none, at zero", phaseNone, 0, phaseNone, false},
		{"trust, at its start", phaseTrust, caStart, phaseServe, false},
		{"trust, a nanosecond early", phaseTrust, caStart + caOverlap - 1, phaseServe, false},
		{"trust, at its end", phaseTrust, caStart + caOverlap, phaseServe, true},
		{"trust, after", phaseTrust, caStart + 10*caOverlap, phaseServe, true},
		{"trust, clock behind", phaseTrust, caStart - 1, phaseServe, false},
		{"serve, a nanosecond early", phaseServe, serveAt + caOverlap - 1, phaseNone, false},
		{"serve, at its end", phaseServe, serveAt + caOverlap, phaseNone, true},
		{"serve, after", phaseServe, serveAt + 10*caOverlap, phaseNone, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := caHarness(t, tc.phase)
			to, due := h.s.NextCAPhase(tc.now)
			if to != tc.wantTo || due != tc.due {
				t.Fatalf("NextCAPhase(%d) = %v, %v; want %v, %v", tc.now, to, due, tc.wantTo, tc.due)
			}
			// What NextCAPhase says is due, Apply takes at that time; what
			// it says is not, Apply refuses.
			if tc.phase == phaseNone {
				return
			}
			resp, err := h.apply(rotateTo(tc.now, to, nil, nil, 0))
			if accepted := err == nil && resp.GetError() == nil; accepted != tc.due {
				t.Fatalf("Apply at %d: err %v; want accepted %v", tc.now, err, tc.due)
			}
		})
	}
}

// TestCARotationRefusals: every refusal has its code and field, and
// changes nothing: not the records, not the trust, not the security
// version.
func TestCARotationRefusals(t *testing.T) {
	insecure := func(t *testing.T) *harness {
		h := newHarness(t)
		h.ok(initCluster("c1"))
		return h
	}
	uninit := func(t *testing.T) *harness { return newHarness(t) }
	at := func(p apiv1.CARotationPhase) func(*testing.T) *harness {
		return func(t *testing.T) *harness { return caHarness(t, p) }
	}
	// full trusts MaxBundleCAs CAs with no rotation under way: only a
	// snapshot can say so.
	full := func(t *testing.T) *harness {
		b := mustSnapshot(t, caHarness(t, phaseNone).s)
		var snap apiv1.StateSnapshot
		if err := proto.Unmarshal(b, &snap); err != nil {
			t.Fatal(err)
		}
		snap.Cluster.CaCertificates = nil
		for i := range state.MaxBundleCAs {
			snap.Cluster.CaCertificates = append(snap.Cluster.CaCertificates, caDER(byte(10+i)))
		}
		r, err := state.Restore(marshal(t, &snap))
		if err != nil {
			t.Fatal(err)
		}
		return &harness{t: t, s: r, idx: r.AppliedIndex()}
	}
	serveAt := caStart + caOverlap
	trustWith := func(edit func(*apiv1.RotateCaCommand)) *apiv1.Command {
		c := caTrustStart(caStart, caDER(2))
		edit(c.GetRotateCa())
		return c
	}

	tests := []struct {
		name  string
		setup func(*testing.T) *harness
		cmd   *apiv1.Command
		code  apiv1.ErrorCode
		field string
		// timed refusals depend on the proposer's clock, which Check does
		// not have: only Apply is held to them.
		timed bool
	}{
		// No CA to rotate.
		{"insecure: trust", insecure, caTrustStart(caStart, caDER(2)), codePrecond, "", false},
		{"insecure: serve", insecure, rotateTo(caStart, phaseServe, nil, nil, 0), codePrecond, "", false},
		{"insecure: none", insecure, rotateTo(caStart, phaseNone, nil, nil, 0), codePrecond, "", false},
		{"no cluster yet", uninit, caTrustStart(caStart, caDER(2)), codePrecond, "", false},

		// Starting a rotation.
		{"no certificate", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) { c.NewCertificate = nil }), codeInvalid, "new_certificate", false},
		{"oversized certificate", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) {
			c.NewCertificate = bytes.Repeat([]byte{2}, state.MaxCACertBytes+1)
		}), codeInvalid, "new_certificate", false},
		{"the current CA again", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) { c.NewCertificate = caDER(1) }), codeExists, "new_certificate", false},
		{"bundle full", full, caTrustStart(caStart, caDER(2)), codeExhausted, "new_certificate", false},
		{"no sealed key", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) { c.SealedKey = nil }), codeInvalid, "sealed_key", false},
		{"oversized sealed key", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) {
			c.SealedKey = make([]byte, state.MaxSealedKeyBytes+1)
		}), codeInvalid, "sealed_key", false},
		{"no overlap", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) { c.OverlapNanos = 0 }), codeInvalid, "overlap_nanos", false},
		{"negative overlap", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) { c.OverlapNanos = -caOverlap }), codeInvalid, "overlap_nanos", false},
		{"overlap a nanosecond short", at(phaseNone), trustWith(func(c *apiv1.RotateCaCommand) { c.OverlapNanos = caOverlap - 1 }), codeInvalid, "overlap_nanos", false},
		{"unknown phase", at(phaseNone), rotateTo(caStart, apiv1.CARotationPhase(3), nil, nil, 0), codeInvalid, "to_phase", false},
		{"negative phase", at(phaseNone), rotateTo(caStart, apiv1.CARotationPhase(-1), nil, nil, 0), codeInvalid, "to_phase", false},

		// Skipping phases.
		{"none to serve", at(phaseNone), rotateTo(caStart, phaseServe, nil, nil, 0), codePrecond, "to_phase", false},
		{"none to none", at(phaseNone), rotateTo(caStart, phaseNone, nil, nil, 0), codePrecond, "to_phase", false},
		{"trust to trust", at(phaseTrust), caTrustStart(serveAt, caDER(3)), codePrecond, "", false},
		{"trust to none", at(phaseTrust), rotateTo(serveAt+caOverlap, phaseNone, nil, nil, 0), codePrecond, "to_phase", false},
		{"serve to trust", at(phaseServe), caTrustStart(serveAt+caOverlap, caDER(3)), codePrecond, "", false},
		{"serve to serve", at(phaseServe), rotateTo(serveAt+caOverlap, phaseServe, nil, nil, 0), codePrecond, "to_phase", false},

		// Only the start carries a certificate, a key and an overlap.
		{"serve with a certificate", at(phaseTrust), rotateTo(serveAt, phaseServe, caDER(3), nil, 0), codeInvalid, "to_phase", false},
		{"serve with a key", at(phaseTrust), rotateTo(serveAt, phaseServe, nil, caSealed(3), 0), codeInvalid, "to_phase", false},
		{"serve with an overlap", at(phaseTrust), rotateTo(serveAt, phaseServe, nil, nil, caOverlap), codeInvalid, "to_phase", false},
		{"none with a certificate", at(phaseServe), rotateTo(serveAt+caOverlap, phaseNone, caDER(3), nil, 0), codeInvalid, "to_phase", false},

		// Too early by the proposer's clock.
		{"serve a nanosecond early", at(phaseTrust), rotateTo(serveAt-1, phaseServe, nil, nil, 0), codePrecond, "to_phase", true},
		{"serve at the trust's start", at(phaseTrust), rotateTo(caStart, phaseServe, nil, nil, 0), codePrecond, "to_phase", true},
		{"serve with the clock behind", at(phaseTrust), rotateTo(caStart-caOverlap, phaseServe, nil, nil, 0), codePrecond, "to_phase", true},
		{"none a nanosecond early", at(phaseServe), rotateTo(serveAt+caOverlap-1, phaseNone, nil, nil, 0), codePrecond, "to_phase", true},
		{"none at the serve's start", at(phaseServe), rotateTo(serveAt, phaseNone, nil, nil, 0), codePrecond, "to_phase", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.setup(t)
			trust, sv := h.s.CATrust(), h.s.SecurityVersion()
			if tc.timed {
				rejectTimed(h, tc.cmd, tc.code, tc.field)
			} else {
				h.reject(tc.cmd, tc.code, tc.field)
			}
			wantTrust(t, h.s, trust)
			if h.s.SecurityVersion() != sv {
				t.Fatal("a refusal changed the security version")
			}
		})
	}
}

// rejectTimed applies cmd, which must be refused with code and field, and
// checks that nothing but the applied index moved. Unlike reject it does
// not hold Check to the refusal.
func rejectTimed(h *harness, cmd *apiv1.Command, code apiv1.ErrorCode, field string) {
	h.t.Helper()
	before := records(h.t, h.s)
	resp, err := h.apply(cmd)
	wantErr(h.t, err, code, field)
	if pe := resp.GetError(); pe == nil || pe.GetCode() != code || pe.GetField() != field || resp.GetKind() != nil {
		h.t.Fatalf("response = %v, want only an error with code %v field %q", resp, code, field)
	}
	if after := records(h.t, h.s); !proto.Equal(before, after) {
		h.t.Fatalf("rejected %v changed the snapshot:\nbefore %v\nafter  %v", cmd, before, after)
	}
}

// TestCARotationRetry: a retried client request gets the first answer and
// does not move the rotation twice.
func TestCARotationRetry(t *testing.T) {
	h := caHarness(t, phaseNone)
	first := h.ok(withID("rot-1", caTrustStart(caStart, caDER(2))))
	sv := h.s.SecurityVersion()
	trust := h.s.CATrust()

	again, err := h.apply(withID("rot-1", caTrustStart(caStart+1, caDER(3))))
	if err != nil || !proto.Equal(again, first) {
		t.Fatalf("retry = %v, %v; want the first response %v", again, err, first)
	}
	wantTrust(t, h.s, trust)
	if h.s.SecurityVersion() != sv {
		t.Fatal("a retry changed the security version")
	}
}

// TestCATrustIsACopy: neither what CATrust and Cluster return nor the
// command applied alias the state.
func TestCATrustIsACopy(t *testing.T) {
	h := newHarness(t)
	initCmd := caInit("c1", caDER(1))
	h.ok(initCmd)
	trustCmd := caTrustStart(caStart, caDER(2))
	h.ok(trustCmd)
	want := state.CATrust{Certificates: [][]byte{caDER(2), caDER(1)}, SealedKey: caSealed(2), Phase: phaseTrust, PhaseAt: caStart, Overlap: caOverlap}

	initCmd.GetInitCluster().GetCaCertificate()[0] ^= 0xff
	trustCmd.GetRotateCa().GetNewCertificate()[0] ^= 0xff
	trustCmd.GetRotateCa().GetSealedKey()[0] ^= 0xff
	got := h.s.CATrust()
	got.Certificates[0][0] ^= 0xff
	got.Certificates[1] = nil
	got.SealedKey[0] ^= 0xff
	h.s.Cluster().GetCaCertificates()[0][0] ^= 0xff
	wantTrust(t, h.s, want)
}

// TestCARotationSnapshot: a snapshot taken in any phase restores to the
// same trust, writes the same bytes, and the rotation goes on from it as
// it would have.
func TestCARotationSnapshot(t *testing.T) {
	serveAt := caStart + caOverlap
	for _, tc := range []struct {
		name   string
		phase  apiv1.CARotationPhase
		nextAt int64 // when the next step applies (0: none)
	}{
		{"none", phaseNone, 0},
		{"trust", phaseTrust, serveAt},
		{"serve", phaseServe, serveAt + caOverlap},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := caHarness(t, tc.phase)
			b := mustSnapshot(t, h.s)
			r, err := restoreNoPanic(t, b)
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			wantTrust(t, r, h.s.CATrust())
			if !proto.Equal(r.Cluster(), h.s.Cluster()) {
				t.Fatalf("restored cluster = %v, want %v", r.Cluster(), h.s.Cluster())
			}
			if got := mustSnapshot(t, r); !bytes.Equal(got, b) {
				t.Fatal("the restored state snapshots to other bytes")
			}
			if r.SecurityVersion() == 0 {
				t.Error("a restored state has security version 0")
			}
			for _, now := range []int64{tc.nextAt - 1, tc.nextAt} {
				to1, due1 := h.s.NextCAPhase(now)
				to2, due2 := r.NextCAPhase(now)
				if to1 != to2 || due1 != due2 {
					t.Fatalf("NextCAPhase(%d): original %v %v, restored %v %v", now, to1, due1, to2, due2)
				}
			}

			// Both go on alike.
			hr := &harness{t: t, s: r, idx: r.AppliedIndex()}
			var cmd *apiv1.Command
			switch tc.phase {
			case phaseNone:
				cmd = caTrustStart(caStart+5*caOverlap, caDER(3))
			case phaseTrust:
				cmd = rotateTo(tc.nextAt, phaseServe, nil, nil, 0)
			case phaseServe:
				cmd = rotateTo(tc.nextAt, phaseNone, nil, nil, 0)
			}
			h.ok(proto.CloneOf(cmd))
			hr.ok(proto.CloneOf(cmd))
			wantTrust(t, r, h.s.CATrust())
			if !bytes.Equal(mustSnapshot(t, r), mustSnapshot(t, h.s)) {
				t.Fatal("after the next step the restored state differs")
			}
		})
	}
}

// TestRestoreRefusesBadCATrust: Restore refuses CA trust that no sequence
// of commands makes, and accepts the bounds.
func TestRestoreRefusesBadCATrust(t *testing.T) {
	good := func(t *testing.T) *apiv1.StateSnapshot {
		var snap apiv1.StateSnapshot
		if err := proto.Unmarshal(mustSnapshot(t, caHarness(t, phaseServe).s), &snap); err != nil {
			t.Fatal(err)
		}
		return &snap
	}
	certs := func(n int) [][]byte {
		var out [][]byte
		for i := range n {
			out = append(out, caDER(byte(i)))
		}
		return out
	}
	for _, tc := range []struct {
		name string
		edit func(*apiv1.StateSnapshot)
		ok   bool
	}{
		{"as written", func(*apiv1.StateSnapshot) {}, true},
		{"trust with one CA", func(s *apiv1.StateSnapshot) {
			s.Cluster.CaRotationPhase = phaseTrust
			s.Cluster.CaCertificates = certs(1)
		}, false},
		{"serve with one CA", func(s *apiv1.StateSnapshot) { s.Cluster.CaCertificates = certs(1) }, false},
		{"serve with no CA", func(s *apiv1.StateSnapshot) { s.Cluster.CaCertificates = nil }, false},
		{"unknown phase", func(s *apiv1.StateSnapshot) { s.Cluster.CaRotationPhase = 3 }, false},
		{"negative phase", func(s *apiv1.StateSnapshot) { s.Cluster.CaRotationPhase = -1 }, false},
		{"too many CAs", func(s *apiv1.StateSnapshot) { s.Cluster.CaCertificates = certs(state.MaxBundleCAs + 1) }, false},
		{"the most CAs", func(s *apiv1.StateSnapshot) { s.Cluster.CaCertificates = certs(state.MaxBundleCAs) }, true},
		{"oversized CA", func(s *apiv1.StateSnapshot) {
			s.Cluster.CaCertificates[1] = make([]byte, state.MaxCACertBytes+1)
		}, false},
		{"largest CA", func(s *apiv1.StateSnapshot) {
			s.Cluster.CaCertificates[1] = make([]byte, state.MaxCACertBytes)
		}, true},
		{"empty CA", func(s *apiv1.StateSnapshot) { s.Cluster.CaCertificates[0] = nil }, false},
		{"oversized sealed key", func(s *apiv1.StateSnapshot) { s.CaSealedKey = make([]byte, state.MaxSealedKeyBytes+1) }, false},
		{"largest sealed key", func(s *apiv1.StateSnapshot) { s.CaSealedKey = make([]byte, state.MaxSealedKeyBytes) }, true},
		{"negative overlap", func(s *apiv1.StateSnapshot) { s.CaRotationOverlapNanos = -1 }, false},
		{"no rotation, no CA", func(s *apiv1.StateSnapshot) {
			s.Cluster.CaRotationPhase = phaseNone
			s.Cluster.CaCertificates = nil
			s.CaSealedKey, s.CaRotationOverlapNanos, s.CaRotationPhaseUnixNano = nil, 0, 0
			s.Cluster.CaRotationNextUnixNano = 0
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := good(t)
			tc.edit(snap)
			r, err := restoreNoPanic(t, marshal(t, snap))
			if !tc.ok {
				if err == nil || r != nil {
					t.Fatalf("Restore = %v, %v; want a refusal", r, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			got := r.CATrust()
			if len(got.Certificates) != len(snap.GetCluster().GetCaCertificates()) || got.Phase != snap.GetCluster().GetCaRotationPhase() ||
				!bytes.Equal(got.SealedKey, snap.GetCaSealedKey()) {
				t.Fatalf("restored trust %+v does not match the snapshot", got)
			}
			checkRestored(t, r)
		})
	}
}

// TestCARotationTable drives one rotation through a table of commands
// proposed at chosen times: each accepted or refused, in order.
func TestCARotationTable(t *testing.T) {
	ov := 2 * caOverlap
	h := caHarness(t, phaseNone)
	for i, step := range []struct {
		cmd   *apiv1.Command
		phase apiv1.CARotationPhase // after the step
		ok    bool
	}{
		{rotateTo(caStart, phaseTrust, caDER(2), caSealed(2), ov), phaseTrust, true},
		{rotateTo(caStart+ov-1, phaseServe, nil, nil, 0), phaseTrust, false},
		{rotateTo(caStart+ov, phaseServe, nil, nil, 0), phaseServe, true},
		{rotateTo(caStart+ov, phaseServe, nil, nil, 0), phaseServe, false},
		{rotateTo(caStart+2*ov-1, phaseNone, nil, nil, 0), phaseServe, false},
		{rotateTo(caStart+2*ov, phaseNone, nil, nil, 0), phaseNone, true},
		{rotateTo(caStart+3*ov, phaseNone, nil, nil, 0), phaseNone, false},
	} {
		resp, err := h.apply(step.cmd)
		if ok := err == nil && resp.GetError() == nil; ok != step.ok {
			t.Fatalf("step %d (%v at %d): accepted %v (err %v), want %v", i, step.cmd.GetRotateCa().GetToPhase(),
				step.cmd.GetProposedUnixNano(), ok, err, step.ok)
		}
		if got := h.s.CATrust().Phase; got != step.phase {
			t.Fatalf("step %d: phase %v, want %v", i, got, step.phase)
		}
	}
	wantTrust(t, h.s, state.CATrust{Certificates: [][]byte{caDER(2)}, Phase: phaseNone})
}

// TestCARotationHugeOverlap: an overlap so long that phase start + overlap
// overflows int64 must not end the phase at once. Either Apply refuses the
// overlap or the phase lasts (practically) for ever.
func TestCARotationHugeOverlap(t *testing.T) {
	for _, overlap := range []int64{math.MaxInt64, math.MaxInt64 - caStart + 1} {
		t.Run(fmt.Sprint(overlap), func(t *testing.T) {
			h := caHarness(t, phaseNone)
			resp, err := h.apply(rotateTo(caStart, phaseTrust, caDER(2), caSealed(2), overlap))
			if err != nil || resp.GetError() != nil {
				return // refused: bounded, as it should be
			}
			if _, due := h.s.NextCAPhase(caStart + 1); due {
				t.Error("NextCAPhase says the trust phase is over a nanosecond after it began")
			}
			if next := h.s.Cluster().GetCaRotationNextUnixNano(); next < caStart {
				t.Errorf("CaRotationNextUnixNano = %d, before the phase began", next)
			}
			rejectTimed(h, rotateTo(caStart+1, phaseServe, nil, nil, 0), codePrecond, "to_phase")
		})
	}
}

// TestCARotationNeedsTheProposersClock: Apply must not waive the overlap
// for a command that carries no proposer's clock (ProposedUnixNano 0):
// three such commands would otherwise drop the old CA at once.
func TestCARotationNeedsTheProposersClock(t *testing.T) {
	for _, phase := range []apiv1.CARotationPhase{phaseTrust, phaseServe} {
		t.Run(phase.String(), func(t *testing.T) {
			h := caHarness(t, phase)
			to, _ := h.s.NextCAPhase(0)
			resp, err := h.apply(rotateTo(0, to, nil, nil, 0))
			if err == nil && resp.GetError() == nil {
				t.Fatalf("%v → %v with no proposer's clock was accepted", phase, to)
			}
		})
	}
}
