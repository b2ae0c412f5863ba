package pki

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// waitLimit is a generous deadline on each side of a handshake, so that a
// bug hangs no test; it asserts nothing about speed.
const waitLimit = 10 * time.Second

// outcome is what each side of one TLS connection saw.
type outcome struct {
	serverErr, clientErr error
	// serverPeerID and serverPeerErr are PeerNodeID on the server side.
	serverPeerID  uint64
	serverPeerErr error
}

// handshake connects a TLS client to a TLS server over loopback TCP: the
// server handshakes and writes "ok"; the client handshakes and reads it.
// In TLS 1.3 the client finishes its handshake before the server has
// checked the client's certificate, so reading the server's first bytes is
// what tells the client it was accepted.
func handshake(t *testing.T, server, client *tls.Config) outcome {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	serverDone := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() { serverDone <- o }()
		c, err := ln.Accept()
		if err != nil {
			o.serverErr = err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitLimit))
		tc := tls.Server(c, server)
		if o.serverErr = tc.Handshake(); o.serverErr != nil {
			return
		}
		o.serverPeerID, o.serverPeerErr = PeerNodeID(tc.ConnectionState())
		_, o.serverErr = tc.Write([]byte("ok"))
	}()

	var clientErr error
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(waitLimit))
	tc := tls.Client(c, client)
	if clientErr = tc.Handshake(); clientErr == nil {
		buf := make([]byte, 2)
		if _, clientErr = io.ReadFull(tc, buf); clientErr == nil && string(buf) != "ok" {
			clientErr = fmt.Errorf("read %q, want ok", buf)
		}
		if clientErr == nil && tc.ConnectionState().Version != tls.VersionTLS13 {
			clientErr = fmt.Errorf("negotiated version %#x, want TLS 1.3", tc.ConnectionState().Version)
		}
	}
	tc.Close()
	o := <-serverDone
	o.clientErr = clientErr
	return o
}

// at pins a config's clock to now: the tests never depend on the wall
// clock for certificate validity.
func at(cfg *tls.Config, now time.Time) *tls.Config {
	cfg.Time = func() time.Time { return now }
	return cfg
}

var errRemoved = errors.New("node was removed")

// allowOnly returns an allowed function that accepts ids and refuses all
// others with errRemoved.
func allowOnly(ids ...uint64) func(uint64) error {
	return func(id uint64) error {
		for _, ok := range ids {
			if id == ok {
				return nil
			}
		}
		return errRemoved
	}
}

func TestPeerMTLS(t *testing.T) {
	ca := newTestCA(t, "c1")
	foreignCA := newTestCA(t, "c1") // same cluster id, so the same CA name
	otherClusterCA := newTestCA(t, "c2")
	n1 := newTestNode(t, ca, 1)
	n2 := newTestNode(t, ca, 2)
	foreign2 := newTestNode(t, foreignCA, 2)
	otherCluster1 := newTestNode(t, otherClusterCA, 1)
	pool := PoolOf(ca.Certificate())
	now := t0.Add(time.Hour)

	tests := []struct {
		name   string
		server *tls.Config
		client *tls.Config
		// wantServer / wantClient: fragments of each side's error; "" means
		// that side must succeed. wantIs: an error either side must wrap.
		wantServer, wantClient string
		wantServerIs           error
		wantClientIs           error
		wantPeerID             uint64 // when both succeed
	}{
		{
			name:       "two nodes of the cluster",
			server:     at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			client:     at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(1)), now),
			wantPeerID: 2,
		},
		{
			name:         "server refuses the client's node id",
			server:       at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(3)), now),
			client:       at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(1)), now),
			wantServerIs: errRemoved,
			wantClient:   "bad certificate",
		},
		{
			name:         "client refuses the server's node id",
			server:       at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			client:       at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(7)), now),
			wantClientIs: errRemoved,
			wantServer:   "bad certificate",
		},
		{
			name:       "client presents no certificate",
			server:     at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			client:     at(ClientOnlyTLS(pool), now),
			wantServer: "certificate",
			wantClient: "certificate required",
		},
		{
			name:       "client certificate from another CA of the same name",
			server:     at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			client:     at(ClientTLS(foreign2.TLSCertificate(), pool, allowOnly(1)), now),
			wantServer: "unknown authority",
			wantClient: "unknown certificate authority",
		},
		{
			name:       "client certificate from another cluster's CA",
			server:     at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			client:     at(ClientTLS(otherCluster1.TLSCertificate(), pool, allowOnly(1)), now),
			wantServer: "certificate",
			wantClient: "certificate required",
		},
		{
			name:       "server certificate from another CA",
			server:     at(ServerTLS(foreign2.TLSCertificate(), PoolOf(foreignCA.Certificate()), allowOnly(1)), now),
			client:     at(ClientTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			wantClient: "unknown authority",
			wantServer: "bad certificate",
		},
		{
			name:       "client forced to TLS 1.2",
			server:     at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			client:     tls12(at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(1)), now)),
			wantServer: "version",
			wantClient: "version",
		},
		{
			name:       "server sees the client's certificate expired",
			server:     at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), n2.Leaf().NotAfter.Add(time.Second)),
			client:     at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(1)), now),
			wantServer: "expired",
			wantClient: "expired certificate",
		},
		{
			name:       "client sees the server's certificate expired",
			server:     at(ServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now),
			client:     at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(1)), n1.Leaf().NotAfter.Add(time.Second)),
			wantClient: "expired",
			wantServer: "bad certificate",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := handshake(t, tc.server, tc.client)
			checkSide(t, "server", o.serverErr, tc.wantServer, tc.wantServerIs)
			checkSide(t, "client", o.clientErr, tc.wantClient, tc.wantClientIs)
			if o.serverErr == nil && o.clientErr == nil {
				if o.serverPeerErr != nil || o.serverPeerID != tc.wantPeerID {
					t.Errorf("server's PeerNodeID = %d, %v; want %d", o.serverPeerID, o.serverPeerErr, tc.wantPeerID)
				}
			}
		})
	}
}

func tls12(cfg *tls.Config) *tls.Config {
	cfg.MinVersion = tls.VersionTLS12
	cfg.MaxVersion = tls.VersionTLS12
	return cfg
}

// checkSide fails the test unless err is nil when nothing is wanted, or
// mentions fragment and wraps is when they are given.
func checkSide(t *testing.T, side string, err error, fragment string, is error) {
	t.Helper()
	if fragment == "" && is == nil {
		if err != nil {
			t.Errorf("%s failed: %v", side, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s succeeded, want a failure (%q %v)", side, fragment, is)
		return
	}
	if fragment != "" && !strings.Contains(err.Error(), fragment) {
		t.Errorf("%s error %q does not mention %q", side, err, fragment)
	}
	if is != nil && !errors.Is(err, is) {
		t.Errorf("%s error %q does not wrap %q", side, err, is)
	}
}

func TestRotationHandshakes(t *testing.T) {
	oldCA := newTestCA(t, "c1")
	newCA := newTestCA(t, "c1")
	oldNode := newTestNode(t, oldCA, 1)
	newNode := newTestNode(t, newCA, 2)
	both := Bundle{newCA.Certificate(), oldCA.Certificate()}.Pool()
	now := t0.Add(time.Hour)
	all := func(uint64) error { return nil }

	// During the overlap a node with an old certificate and one with a new
	// certificate reach each other both ways.
	for _, pair := range [][2]*NodeCert{{oldNode, newNode}, {newNode, oldNode}} {
		server, client := pair[0], pair[1]
		o := handshake(t, at(ServerTLS(server.TLSCertificate(), both, all), now), at(ClientTLS(client.TLSCertificate(), both, all), now))
		if o.serverErr != nil || o.clientErr != nil {
			t.Errorf("server node %d, client node %d: server %v, client %v", server.NodeID(), client.NodeID(), o.serverErr, o.clientErr)
		}
		// An API client trusting both reaches either.
		o = handshake(t, at(SharedServerTLS(server.TLSCertificate(), both, all), now), at(ClientOnlyTLS(both), now))
		if o.serverErr != nil || o.clientErr != nil {
			t.Errorf("API client to node %d: server %v, client %v", server.NodeID(), o.serverErr, o.clientErr)
		}
	}
	// After the overlap the old certificate is refused.
	newOnly := PoolOf(newCA.Certificate())
	o := handshake(t, at(ServerTLS(newNode.TLSCertificate(), newOnly, all), now), at(ClientTLS(oldNode.TLSCertificate(), both, all), now))
	if o.serverErr == nil {
		t.Error("a server trusting only the new CA accepted a certificate of the old")
	}
}

func TestSharedServerTLS(t *testing.T) {
	ca := newTestCA(t, "c1")
	n1 := newTestNode(t, ca, 1)
	n2 := newTestNode(t, ca, 2)
	pool := PoolOf(ca.Certificate())
	now := t0.Add(time.Hour)

	// An API client without a certificate is let in, as nobody.
	o := handshake(t, at(SharedServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now), at(ClientOnlyTLS(pool), now))
	if o.serverErr != nil || o.clientErr != nil {
		t.Fatalf("API client: server %v, client %v", o.serverErr, o.clientErr)
	}
	if o.serverPeerErr == nil {
		t.Errorf("PeerNodeID of an API client = %d, want an error", o.serverPeerID)
	}
	// A peer is known by its id.
	o = handshake(t, at(SharedServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now), at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(1)), now))
	if o.serverErr != nil || o.clientErr != nil || o.serverPeerErr != nil || o.serverPeerID != 2 {
		t.Fatalf("peer: server %v, client %v, PeerNodeID %d %v", o.serverErr, o.clientErr, o.serverPeerID, o.serverPeerErr)
	}
	// A removed node presenting its certificate is refused, not demoted.
	o = handshake(t, at(SharedServerTLS(n1.TLSCertificate(), pool, allowOnly(3)), now), at(ClientTLS(n2.TLSCertificate(), pool, allowOnly(1)), now))
	if !errors.Is(o.serverErr, errRemoved) || o.clientErr == nil {
		t.Fatalf("removed peer: server %v, client %v", o.serverErr, o.clientErr)
	}
	// A certificate from another CA is refused, not ignored.
	foreign := newTestNode(t, newTestCA(t, "c1"), 2)
	o = handshake(t, at(SharedServerTLS(n1.TLSCertificate(), pool, allowOnly(2)), now), at(ClientTLS(foreign.TLSCertificate(), pool, allowOnly(1)), now))
	if o.serverErr == nil || o.clientErr == nil {
		t.Fatalf("foreign peer: server %v, client %v", o.serverErr, o.clientErr)
	}
}

func TestClientOnlyTLSRefusesWrongServer(t *testing.T) {
	ca := newTestCA(t, "c1")
	other := newTestCA(t, "c1")
	n := newTestNode(t, other, 1)
	now := t0.Add(time.Hour)
	o := handshake(t, at(SharedServerTLS(n.TLSCertificate(), PoolOf(other.Certificate()), allowOnly()), now), at(ClientOnlyTLS(PoolOf(ca.Certificate())), now))
	if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "unknown authority") {
		t.Fatalf("client error %v, want unknown authority", o.clientErr)
	}
	// A server presenting the CA certificate itself is no node.
	caAsServer := tls.Certificate{Certificate: [][]byte{ca.Certificate().Raw}, PrivateKey: ca.key, Leaf: ca.Certificate()}
	o = handshake(t, at(SharedServerTLS(caAsServer, PoolOf(ca.Certificate()), allowOnly()), now), at(ClientOnlyTLS(PoolOf(ca.Certificate())), now))
	if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "CA certificate") {
		t.Fatalf("client error %v, want a refusal of the CA certificate as a server", o.clientErr)
	}
}

func TestJoinTLS(t *testing.T) {
	ca := newTestCA(t, "c1")
	impostorCA := newTestCA(t, "c1")
	n1 := newTestNode(t, ca, 1)
	impostor := newTestNode(t, impostorCA, 1)
	pool := PoolOf(ca.Certificate())
	pin := FingerprintOf(ca.Certificate())
	now := t0.Add(time.Hour)
	server := func(n *NodeCert) *tls.Config {
		return at(SharedServerTLS(n.TLSCertificate(), pool, allowOnly()), now)
	}

	o := handshake(t, server(n1), at(JoinTLS(pin), now))
	if o.serverErr != nil || o.clientErr != nil {
		t.Fatalf("pinned CA: server %v, client %v", o.serverErr, o.clientErr)
	}

	o = handshake(t, server(n1), at(JoinTLS(FingerprintOf(impostorCA.Certificate())), now))
	if !errors.Is(o.clientErr, ErrFingerprintMismatch) {
		t.Fatalf("wrong pin: client %v, want ErrFingerprintMismatch", o.clientErr)
	}

	// An impostor that sends the real CA certificate along with its own
	// node certificate: the pin matches, but the leaf is not signed by it.
	forged := impostor.TLSCertificate()
	forged.Certificate = [][]byte{impostor.Leaf().Raw, ca.Certificate().Raw}
	o = handshake(t, at(SharedServerTLS(forged, pool, allowOnly()), now), at(JoinTLS(pin), now))
	if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "unknown authority") {
		t.Fatalf("impostor with the real CA attached: client %v", o.clientErr)
	}

	// A server that sends only its leaf cannot be checked against the pin.
	leafOnly := n1.TLSCertificate()
	leafOnly.Certificate = leafOnly.Certificate[:1]
	o = handshake(t, at(SharedServerTLS(leafOnly, pool, allowOnly()), now), at(JoinTLS(pin), now))
	if !errors.Is(o.clientErr, ErrFingerprintMismatch) {
		t.Fatalf("leaf only: client %v, want ErrFingerprintMismatch", o.clientErr)
	}

	// The server's certificate expired: refused even with the right pin.
	o = handshake(t, server(n1), at(JoinTLS(pin), n1.Leaf().NotAfter.Add(time.Second)))
	if o.clientErr == nil || !strings.Contains(o.clientErr.Error(), "expired") {
		t.Fatalf("expired server: client %v", o.clientErr)
	}
}

func TestConfigsAreTLS13Only(t *testing.T) {
	ca := newTestCA(t, "c1")
	n := newTestNode(t, ca, 1)
	pool := PoolOf(ca.Certificate())
	all := func(uint64) error { return nil }
	for name, cfg := range map[string]*tls.Config{
		"ServerTLS":       ServerTLS(n.TLSCertificate(), pool, all),
		"SharedServerTLS": SharedServerTLS(n.TLSCertificate(), pool, all),
		"ClientTLS":       ClientTLS(n.TLSCertificate(), pool, all),
		"ClientOnlyTLS":   ClientOnlyTLS(pool),
		"JoinTLS":         JoinTLS(FingerprintOf(ca.Certificate())),
	} {
		if cfg.MinVersion != tls.VersionTLS13 {
			t.Errorf("%s MinVersion %#x, want TLS 1.3", name, cfg.MinVersion)
		}
		if cfg.VerifyConnection == nil {
			t.Errorf("%s has no VerifyConnection", name)
		}
	}
	if cfg := ServerTLS(n.TLSCertificate(), pool, all); cfg.ClientAuth != tls.RequireAndVerifyClientCert || !cfg.SessionTicketsDisabled {
		t.Errorf("ServerTLS ClientAuth %v, tickets disabled %v", cfg.ClientAuth, cfg.SessionTicketsDisabled)
	}
	defer func() {
		if recover() == nil {
			t.Error("ServerTLS with a nil allowed did not panic")
		}
	}()
	ServerTLS(n.TLSCertificate(), pool, nil)
}
