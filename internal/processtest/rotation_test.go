package processtest

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/internal/pki"
)

// TestCARotation: `cluster ca rotate` replaces the cluster CA while
// clients keep working. During the TRUST phase a client that trusts only
// the old CA has every request answered; from then on a client with the
// new bundle (`cluster ca show`) has every request answered through the
// SERVE phase and after the old CA is dropped. In the end every node
// presents a certificate from the new CA and trusts only it, the voters
// (not the worker) hold its key, a node joins with a token that pins it,
// and the old-CA-only client is refused.
func TestCARotation(t *testing.T) {
	c := newCluster(t)
	c.add(1).start("")
	c.add(2).start(c.node(1).addr)
	c.add(3, "--role", "worker").start(c.node(1).addr)
	c.waitVoters(2)
	waitFor(t, formTimeout, "worker 3 a member", func() (bool, string) {
		st, _, why := c.leaderStatus()
		return st != nil && member(st, 3) != nil, why
	})
	addrs := strings.Join(c.addrs(), ",")
	oldTLS := c.tlsConfig()
	oldLoad := startLoad(t, c, oldTLS, "old")

	res := c.mustCLI(addrs, "cluster", "ca", "rotate", "--overlap", "15s")
	newFP := strings.TrimSpace(res.stdout)
	if !strings.HasPrefix(newFP, "sha256:") {
		t.Fatalf("cluster ca rotate printed %q, want the new CA's fingerprint", res.stdout)
	}
	st := c.clusterRecord()
	if st.GetCaRotationPhase() != apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST {
		t.Fatalf("after rotate: phase %v, want trust", st.GetCaRotationPhase())
	}

	// TRUST: every node trusts both CAs, the new one first.
	waitFor(t, formTimeout, "every node trusting both CAs", func() (bool, string) {
		for _, n := range c.byID() {
			b, err := pki.LoadBundle(n.dir)
			if err != nil || len(b) != 2 || pki.FingerprintOf(b[0]).String() != newFP {
				return false, fmt.Sprintf("node %d: %d CAs (%v)", n.id, len(b), err)
			}
		}
		return true, ""
	})
	bundleFile := filepath.Join(t.TempDir(), "bundle.crt")
	show := c.mustCLI(addrs, "cluster", "ca", "show")
	if err := os.WriteFile(bundleFile, []byte(show.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	bundle, err := pki.LoadBundleFile(bundleFile)
	if err != nil || len(bundle) != 2 {
		t.Fatalf("cluster ca show: %d CAs (%v), want 2", len(bundle), err)
	}
	newLoad := startLoad(t, c, pki.ClientOnlyTLS(bundle.Pool()), "new")

	// The old-CA client has run through the TRUST phase so far; it stops
	// now, while the phase is still on (nodes present new-CA certificates
	// from SERVE on: it was told to update).
	waitFor(t, formTimeout, "the old-CA client answered 50 times in the TRUST phase", func() (bool, string) {
		oldLoad.mu.Lock()
		defer oldLoad.mu.Unlock()
		return oldLoad.ok >= 50 || oldLoad.fail > 0, fmt.Sprintf("%d answered, %d failed", oldLoad.ok, oldLoad.fail)
	})
	oldLoad.stopAndCheck(t)
	if st := c.clusterRecord(); st.GetCaRotationPhase() != apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST {
		t.Fatalf("the TRUST phase ended before the old-CA client stopped (phase %v); its answers prove less", st.GetCaRotationPhase())
	}

	waitFor(t, 2*formTimeout, "the rotation done", func() (bool, string) {
		st := c.clusterRecord()
		if st.GetCaRotationPhase() != apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE {
			return false, "phase " + st.GetCaRotationPhase().String()
		}
		for _, n := range c.byID() {
			nc, err := pki.LoadNode(n.dir)
			if err != nil || pki.FingerprintOf(nc.Issuer()).String() != newFP {
				return false, fmt.Sprintf("node %d's certificate is not from the new CA (%v)", n.id, err)
			}
			b, err := pki.LoadBundle(n.dir)
			if err != nil || len(b) != 1 {
				return false, fmt.Sprintf("node %d trusts %d CAs (%v)", n.id, len(b), err)
			}
		}
		return true, ""
	})
	for _, n := range c.byID() {
		ca, err := pki.LoadCA(n.dir)
		switch {
		case n.id == 3 && err == nil:
			t.Errorf("worker 3 holds a CA key")
		case n.id != 3 && (err != nil || ca.Fingerprint() != newFP):
			t.Errorf("voter %d's CA key: %v, want the new CA's", n.id, err)
		}
	}
	// The cluster still works over the new certificates: a write, and a
	// join with a token that pins the new CA.
	c.mustCLI(addrs, "vm", "create", "after-rotation", "--vcpus", "1", "--memory", "128", "--no-start")
	c.joinToken = ""
	c.add(4).start(c.node(1).addr)
	c.waitVoters(3)
	newLoad.stopAndCheck(t)

	if err := clusterStatusWith(c.node(1).addr, credentials.NewTLS(oldTLS)); err == nil {
		t.Errorf("a client that trusts only the old CA still connects after the rotation")
	}
}

// clusterRecord is the leader's cluster record.
func (c *cluster) clusterRecord() *apiv1.Cluster {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	st, err := c.client().GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{})
	if err != nil {
		c.t.Fatalf("cluster status: %v", err)
	}
	return st.GetCluster()
}

// load sends requests to a cluster until stopped: a read of every VM and,
// every fifth time, a VM created (stopped), each through a client that
// tries at most three times, and counts what was answered and what not.
type load struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	ok, fail int
	firstErr error
}

func startLoad(t *testing.T, c *cluster, tlsCfg *tls.Config, tag string) *load {
	t.Helper()
	opts := c.clientOptions()
	opts.TLS, opts.Addrs, opts.MaxAttempts, opts.Timeout = tlsCfg, c.addrs(), 3, 5*time.Second
	cl, err := client.New(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	l := &load{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer cl.Close()
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case <-time.After(50 * time.Millisecond): // the load's pace
			}
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			_, err := cl.ListVms(ctx, &apiv1.ListVmsRequest{})
			if err == nil && i%5 == 0 {
				_, err = cl.CreateVm(ctx, &apiv1.CreateVmRequest{Name: fmt.Sprintf("%s-%d", tag, i), Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}})
			}
			cancel()
			l.mu.Lock()
			if err != nil {
				l.fail++
				if l.firstErr == nil {
					l.firstErr = err
				}
			} else {
				l.ok++
			}
			l.mu.Unlock()
		}
	}()
	return l
}

// stopAndCheck stops the load and fails the test if any request failed
// or none was answered.
func (l *load) stopAndCheck(t *testing.T) {
	t.Helper()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	t.Logf("load: %d answered, %d failed", l.ok, l.fail)
	if l.fail > 0 || l.ok == 0 {
		t.Errorf("load: %d requests answered, %d failed (first: %v); want all answered", l.ok, l.fail, l.firstErr)
	}
}
