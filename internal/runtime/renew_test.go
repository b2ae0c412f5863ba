package runtime

import (
	"crypto/x509"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/pki"
)

// planNow is the "now" of the planCerts tests; nothing reads the wall clock.
var planNow = time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)

// planCertSet is the certificates the planCerts table picks from: an old
// and a new CA of the same cluster (so with the same subject: only the
// signature tells them apart), and node certificates from each, issued at
// times chosen so that at planNow they are fresh, in the last third of
// their life (due), or expired.
type planCertSet struct {
	oldCA, newCA                     *x509.Certificate
	oldFresh, oldDue                 *x509.Certificate
	newFresh, newDue, newExpired     *x509.Certificate
	strangerCA, strangerFresh        *x509.Certificate
	newFreshOther, oldFreshOtherNode *x509.Certificate
}

func newPlanCertSet(t *testing.T) *planCertSet {
	t.Helper()
	const validity = 30 * 24 * time.Hour
	day := 24 * time.Hour
	caAt := planNow.Add(-100 * day)
	mkCA := func(cluster string) *pki.CA {
		ca, err := pki.NewCA(cluster, caAt, 0)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	leaf := func(ca *pki.CA, id uint64, issued time.Time) *x509.Certificate {
		n, err := ca.NewNode(id, []string{"127.0.0.1"}, issued, validity)
		if err != nil {
			t.Fatal(err)
		}
		return n.Leaf()
	}
	oldCA, newCA, stranger := mkCA("c1"), mkCA("c1"), mkCA("c2")
	s := &planCertSet{
		oldCA:             oldCA.Certificate(),
		newCA:             newCA.Certificate(),
		strangerCA:        stranger.Certificate(),
		oldFresh:          leaf(oldCA, 1, planNow),
		oldDue:            leaf(oldCA, 1, planNow.Add(-25*day)),
		newFresh:          leaf(newCA, 1, planNow.Add(-time.Hour)),
		newDue:            leaf(newCA, 1, planNow.Add(-25*day)),
		newExpired:        leaf(newCA, 1, planNow.Add(-31*day)),
		strangerFresh:     leaf(stranger, 1, planNow),
		newFreshOther:     leaf(newCA, 2, planNow),
		oldFreshOtherNode: leaf(oldCA, 2, planNow),
	}
	// The table's premises: what is fresh, due and expired at planNow.
	for name, c := range map[string]*x509.Certificate{"oldFresh": s.oldFresh, "newFresh": s.newFresh, "strangerFresh": s.strangerFresh} {
		if pki.NeedsRenewal(c, planNow) {
			t.Fatalf("%s needs renewal at planNow", name)
		}
	}
	for name, c := range map[string]*x509.Certificate{"oldDue": s.oldDue, "newDue": s.newDue} {
		if !pki.NeedsRenewal(c, planNow) || planNow.After(c.NotAfter) {
			t.Fatalf("%s is not due (and still valid) at planNow", name)
		}
	}
	if !planNow.After(s.newExpired.NotAfter) {
		t.Fatal("newExpired has not expired at planNow")
	}
	if s.oldCA.Subject.String() != s.newCA.Subject.String() {
		t.Fatal("the old and new CA should share a subject")
	}
	return s
}

func TestPlanCerts(t *testing.T) {
	c := newPlanCertSet(t)
	const (
		none  = apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE
		trust = apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST
		serve = apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE
	)
	keep := certPlan{}
	renew := certPlan{renew: true}
	serveNext := certPlan{serveNext: true}

	tests := []struct {
		name       string
		leaf, next *x509.Certificate
		signing    *x509.Certificate
		phase      apiv1.CARotationPhase
		want       certPlan
	}{
		// No CA trust known: time alone decides.
		{"no signing CA, fresh", c.oldFresh, nil, nil, none, keep},
		{"no signing CA, due", c.oldDue, nil, nil, none, renew},
		{"no signing CA, trust phase, fresh, next ready", c.oldFresh, c.newFresh, nil, trust, keep},
		{"no signing CA, serve phase, fresh, next ready", c.oldFresh, c.newFresh, nil, serve, keep},
		{"no signing CA, serve phase, due", c.oldDue, c.newFresh, nil, serve, renew},

		// The leaf is from the signing CA: time alone decides, whatever the
		// phase or the certificate held ready.
		{"from signing, none, fresh", c.newFresh, nil, c.newCA, none, keep},
		{"from signing, none, due", c.newDue, nil, c.newCA, none, renew},
		{"from signing, none, expired", c.newExpired, nil, c.newCA, none, renew},
		{"from signing, trust, fresh", c.newFresh, nil, c.newCA, trust, keep},
		{"from signing, trust, due", c.newDue, nil, c.newCA, trust, renew},
		{"from signing, serve, fresh, next ready", c.newFresh, c.newFreshOther, c.newCA, serve, keep},
		{"from signing, serve, due, next ready", c.newDue, c.newFreshOther, c.newCA, serve, renew},
		{"from signing, none, fresh, next of the old CA", c.oldFresh, c.newFresh, c.oldCA, none, keep},

		// TRUST, leaf from another CA: get one from the signing CA and hold
		// it, unless one is held that is not itself due.
		{"trust, old leaf, nothing held", c.oldFresh, nil, c.newCA, trust, renew},
		{"trust, old leaf, fresh one held", c.oldFresh, c.newFresh, c.newCA, trust, keep},
		// The old leaf is kept though due: clients may not trust the new
		// CA yet, and the old CA no longer signs.
		// The old leaf would run out before the phase ends: present the new one early.
		{"trust, old leaf due, fresh one held", c.oldDue, c.newFresh, c.newCA, trust, serveNext},
		{"trust, old leaf, held one due", c.oldFresh, c.newDue, c.newCA, trust, renew},
		{"trust, old leaf, held one expired", c.oldFresh, c.newExpired, c.newCA, trust, renew},
		{"trust, old leaf, held one of the old CA", c.oldFresh, c.oldFreshOtherNode, c.newCA, trust, renew},
		{"trust, old leaf, held one of another cluster", c.oldFresh, c.strangerFresh, c.newCA, trust, renew},
		{"trust, leaf of another cluster", c.strangerFresh, c.newFresh, c.newCA, trust, keep},

		// SERVE, leaf from another CA: present the held one if it is from
		// the signing CA and not due, else renew.
		{"serve, old leaf, fresh one held", c.oldFresh, c.newFresh, c.newCA, serve, serveNext},
		{"serve, old leaf due, fresh one held", c.oldDue, c.newFresh, c.newCA, serve, serveNext},
		{"serve, old leaf, nothing held", c.oldFresh, nil, c.newCA, serve, renew},
		{"serve, old leaf, held one due", c.oldFresh, c.newDue, c.newCA, serve, renew},
		{"serve, old leaf, held one expired", c.oldFresh, c.newExpired, c.newCA, serve, renew},
		{"serve, old leaf, held one of the old CA", c.oldFresh, c.oldFreshOtherNode, c.newCA, serve, renew},
		{"serve, old leaf, held one of another cluster", c.oldFresh, c.strangerFresh, c.newCA, serve, renew},

		// NONE (the rotation ended, or this node missed it), leaf from
		// another CA: as SERVE.
		{"none, old leaf, fresh one held", c.oldFresh, c.newFresh, c.newCA, none, serveNext},
		{"none, old leaf, nothing held", c.oldFresh, nil, c.newCA, none, renew},
		{"none, old leaf, held one due", c.oldFresh, c.newDue, c.newCA, none, renew},
		{"none, old leaf, held one of the old CA", c.oldFresh, c.oldFreshOtherNode, c.newCA, none, renew},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := planCerts(tc.leaf, tc.next, tc.signing, tc.phase, planNow)
			if got != tc.want {
				t.Fatalf("planCerts = %+v, want %+v", got, tc.want)
			}
			if got.renew && got.serveNext {
				t.Fatal("planCerts says both renew and serve the held certificate")
			}
			// A year on, every node certificate of the table has expired:
			// whatever the row, all that is left to do is renew.
			if later := planCerts(tc.leaf, tc.next, tc.signing, tc.phase, planNow.Add(365*24*time.Hour)); later != renew {
				t.Fatalf("a year later planCerts = %+v, want %+v", later, renew)
			}
		})
	}
}

// TestPlanCertsRotation follows one node through a rotation as its
// certLoop would: what planCerts says, and what the node then holds.
func TestPlanCertsRotation(t *testing.T) {
	c := newPlanCertSet(t)
	type step struct {
		name    string
		signing *x509.Certificate
		phase   apiv1.CARotationPhase
		want    certPlan
	}
	leaf, next := c.oldFresh, (*x509.Certificate)(nil)
	for _, st := range []step{
		{"before the rotation", c.oldCA, apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, certPlan{}},
		{"trust: get one from the new CA", c.newCA, apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST, certPlan{renew: true}},
		{"trust: hold it", c.newCA, apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST, certPlan{}},
		{"serve: present it", c.newCA, apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE, certPlan{serveNext: true}},
		{"serve: settled", c.newCA, apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE, certPlan{}},
		{"after the rotation", c.newCA, apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, certPlan{}},
	} {
		got := planCerts(leaf, next, st.signing, st.phase, planNow)
		if got != st.want {
			t.Fatalf("%s: planCerts = %+v, want %+v", st.name, got, st.want)
		}
		switch {
		case got.serveNext:
			leaf, next = next, nil
		case got.renew && st.phase == apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST:
			next = c.newFresh // held ready
		case got.renew:
			leaf = c.newFresh
		}
	}
	if leaf != c.newFresh || next != nil {
		t.Fatal("the node did not end presenting the new CA's certificate")
	}
}

func TestSameCerts(t *testing.T) {
	c := newPlanCertSet(t)
	// A parsed copy: equal bytes, another pointer.
	oldCopy, err := x509.ParseCertificate(c.oldCA.Raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		a, b []*x509.Certificate
		want bool
	}{
		{"both empty", nil, nil, true},
		{"nil and empty", nil, []*x509.Certificate{}, true},
		{"same", []*x509.Certificate{c.newCA, c.oldCA}, []*x509.Certificate{c.newCA, oldCopy}, true},
		{"one more", []*x509.Certificate{c.newCA}, []*x509.Certificate{c.newCA, c.oldCA}, false},
		{"other order", []*x509.Certificate{c.newCA, c.oldCA}, []*x509.Certificate{c.oldCA, c.newCA}, false},
		{"other CA", []*x509.Certificate{c.newCA}, []*x509.Certificate{c.strangerCA}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := sameCerts(tc.a, tc.b); got != tc.want {
				t.Fatalf("sameCerts = %v, want %v", got, tc.want)
			}
			if got := sameCerts(tc.b, tc.a); got != tc.want {
				t.Fatalf("sameCerts (swapped) = %v, want %v", got, tc.want)
			}
		})
	}
}
