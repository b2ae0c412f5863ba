package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/pki"
)

// ---- fakes -------------------------------------------------------------------

// fakeSecurity checks real tokens against the records it holds, as a
// node does, and signs nothing: Issue returns recognisable bytes.
type fakeSecurity struct {
	mu       sync.Mutex
	records  []*apiv1.Token
	removed  map[uint64]bool
	ca       pki.Fingerprint
	issueErr error
	issued   []issueCall
}

type issueCall struct {
	csr       []byte
	id        uint64
	addr      string
	withCAKey bool
}

func newFakeSecurity() *fakeSecurity {
	f := &fakeSecurity{removed: map[uint64]bool{}}
	f.ca[0], f.ca[31] = 0xca, 0xfe
	return f
}

// mint makes a token of kind and records it; edit sets its roles.
func (f *fakeSecurity) mint(t *testing.T, kind apiv1.TokenKind, edit func(*apiv1.Token)) (string, *apiv1.Token) {
	t.Helper()
	s, err := authz.NewSecret(kind, f.ca)
	if err != nil {
		t.Fatal(err)
	}
	rec := s.Record()
	edit(rec)
	f.mu.Lock()
	f.records = append(f.records, rec)
	f.mu.Unlock()
	return s.String(), rec
}

func (f *fakeSecurity) acl(t *testing.T, r apiv1.AccessRole) string {
	tok, _ := f.mint(t, apiv1.TokenKind_TOKEN_KIND_ACL, func(rec *apiv1.Token) { rec.AccessRole = r })
	return tok
}

// tokID is the id of a token string.
func tokID(tok string) string {
	s, _ := authz.ParseToken(tok)
	return s.ID
}

func (f *fakeSecurity) join(t *testing.T, r apiv1.NodeRole) (string, *apiv1.Token) {
	return f.mint(t, apiv1.TokenKind_TOKEN_KIND_JOIN, func(rec *apiv1.Token) { rec.NodeRole = r })
}

func (f *fakeSecurity) lookup(tok string, kind apiv1.TokenKind) (*apiv1.Token, error) {
	s, err := authz.ParseToken(tok)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.records {
		if r.GetKind() == kind && s.Matches(r) {
			return r, nil
		}
	}
	return nil, errors.New("unknown token")
}

func (f *fakeSecurity) ACLRole(tok string) (authz.Role, error) {
	rec, err := f.lookup(tok, apiv1.TokenKind_TOKEN_KIND_ACL)
	if err != nil {
		return authz.RoleNone, err
	}
	return authz.RoleOf(rec.GetAccessRole()), nil
}

func (f *fakeSecurity) JoinToken(tok string) (*apiv1.Token, error) {
	return f.lookup(tok, apiv1.TokenKind_TOKEN_KIND_JOIN)
}

func (f *fakeSecurity) PeerAllowed(id uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.removed[id] {
		return errors.New("removed")
	}
	return nil
}

func (f *fakeSecurity) CAFingerprint() pki.Fingerprint { return f.ca }

// RotateCA makes a new CA certificate; the sealed key is a marker.
func (f *fakeSecurity) RotateCA() (cert, sealed []byte, err error) {
	ca, err := pki.NewCA("rotated", time.Now(), 0)
	if err != nil {
		return nil, nil, err
	}
	return ca.Certificate().Raw, []byte("sealed"), nil
}

func (f *fakeSecurity) Issue(csr []byte, id uint64, addr string, withCAKey bool) (cert, cas, caKey []byte, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.issued = append(f.issued, issueCall{csr: csr, id: id, addr: addr, withCAKey: withCAKey})
	if f.issueErr != nil {
		return nil, nil, nil, f.issueErr
	}
	if withCAKey {
		caKey = []byte("ca-key")
	}
	return []byte("node-cert"), []byte("ca-certs"), caKey, nil
}

func (f *fakeSecurity) issues() []issueCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]issueCall(nil), f.issued...)
}

// authBackend records every request and answers each with a response of
// its kind (or with respond's, when set).
type authBackend struct {
	mu      sync.Mutex
	reqs    []*apiv1.Request
	respond func(*apiv1.Request) *apiv1.Response
}

func (b *authBackend) Do(_ context.Context, req *apiv1.Request) (*apiv1.Response, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reqs = append(b.reqs, proto.CloneOf(req))
	if b.respond != nil {
		return b.respond(req), nil
	}
	return okResponse(req), nil
}

func (b *authBackend) requests() []*apiv1.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*apiv1.Request(nil), b.reqs...)
}

// statusNodes are the nodes GetClusterStatus reports.
var statusNodes = []*apiv1.Node{{Id: 2, Address: "10.0.0.2:7000"}, {Id: 3, Address: "10.0.0.3:7000"}}

func okResponse(req *apiv1.Request) *apiv1.Response {
	switch r := req.GetKind().(type) {
	case *apiv1.Request_HealthCheck:
		return &apiv1.Response{Kind: &apiv1.Response_HealthCheck{HealthCheck: &apiv1.HealthCheckResponse{}}}
	case *apiv1.Request_GetClusterStatus:
		return &apiv1.Response{Kind: &apiv1.Response_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusResponse{Nodes: statusNodes}}}
	case *apiv1.Request_CreateVm:
		return &apiv1.Response{Kind: &apiv1.Response_CreateVm{CreateVm: &apiv1.CreateVmResponse{}}}
	case *apiv1.Request_LeaveCluster:
		return &apiv1.Response{Kind: &apiv1.Response_LeaveCluster{LeaveCluster: &apiv1.LeaveClusterResponse{}}}
	case *apiv1.Request_DrainNode:
		return &apiv1.Response{Kind: &apiv1.Response_DrainNode{DrainNode: &apiv1.DrainNodeResponse{}}}
	case *apiv1.Request_ListTokens:
		return &apiv1.Response{Kind: &apiv1.Response_ListTokens{ListTokens: &apiv1.ListTokensResponse{}}}
	case *apiv1.Request_RevokeToken:
		return &apiv1.Response{Kind: &apiv1.Response_RevokeToken{RevokeToken: &apiv1.RevokeTokenResponse{
			Token: &apiv1.Token{Id: r.RevokeToken.GetId(), Kind: r.RevokeToken.GetKind()}}}}
	case *apiv1.Request_CreateToken:
		pub := proto.CloneOf(r.CreateToken.GetToken())
		pub.SecretSha256 = nil
		return &apiv1.Response{Kind: &apiv1.Response_CreateToken{CreateToken: &apiv1.CreateTokenResponse{Token: pub}}}
	case *apiv1.Request_JoinCluster:
		return &apiv1.Response{Kind: &apiv1.Response_JoinCluster{JoinCluster: &apiv1.JoinClusterResponse{
			ClusterId: "c1", Membership: &apiv1.Membership{Voters: []uint64{1}, Learners: []uint64{r.JoinCluster.GetNodeId()}}}}}
	}
	return &apiv1.Response{Error: &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Message: "the test backend does not answer this"}}
}

// ---- servers -----------------------------------------------------------------

// serveGuarded serves the API on a loopback port behind Interceptors(sec, Limits{}),
// over creds (plaintext if nil), and returns its address.
func serveGuarded(t *testing.T, b Backend, sec Security, creds credentials.TransportCredentials) string {
	t.Helper()
	return serveLimited(t, b, sec, creds, Limits{})
}

// serveLimited is serveGuarded with limits.
func serveLimited(t *testing.T, b Backend, sec Security, creds credentials.TransportCredentials, limits Limits) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts := Interceptors(sec, limits)
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	s := grpc.NewServer(opts...)
	Register(s, b, sec)
	s.RegisterService(&hiddenServiceDesc, &hiddenService{})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func dialWith(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// bearerCtx carries tok as a client sends it; "" sends none.
func bearerCtx(tok string) context.Context {
	if tok == "" {
		return context.Background()
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// hiddenService is a service whose method is in no permission table.
type hiddenService struct {
	mu     sync.Mutex
	called int
}

const hiddenMethod = "/blixard.v1.HiddenService/Poke"

var hiddenServiceDesc = grpc.ServiceDesc{
	ServiceName: "blixard.v1.HiddenService",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Poke",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(context.Context, any) (any, error) {
				hs := srv.(*hiddenService)
				hs.mu.Lock()
				hs.called++
				hs.mu.Unlock()
				return &emptypb.Empty{}, nil
			}
			if interceptor == nil {
				return h(ctx, in)
			}
			return interceptor(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: hiddenMethod}, h)
		},
	}},
}

// ---- calls -------------------------------------------------------------------

type rpc func(ctx context.Context, conn *grpc.ClientConn) error

var (
	callHealth rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewClusterServiceClient(c).HealthCheck(ctx, &apiv1.HealthCheckRequest{})
		return err
	}
	callStatus rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewClusterServiceClient(c).GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{})
		return err
	}
	callListVms rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewVmServiceClient(c).ListVms(ctx, &apiv1.ListVmsRequest{})
		if status.Code(err) == codes.InvalidArgument {
			return nil // the test backend does not answer ListVms: the guard let it through
		}
		return err
	}
	callCreateVm rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewVmServiceClient(c).CreateVm(ctx, &apiv1.CreateVmRequest{ClientRequestId: "k1", Name: "web"})
		return err
	}
	callLeave rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewClusterServiceClient(c).LeaveCluster(ctx, &apiv1.LeaveClusterRequest{ClientRequestId: "k2", NodeId: 2})
		return err
	}
	callDrain rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewClusterServiceClient(c).DrainNode(ctx, &apiv1.DrainNodeRequest{ClientRequestId: "k3", NodeId: 2, Drain: true})
		return err
	}
	callListTokens rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewTokenServiceClient(c).ListTokens(ctx, &apiv1.ListTokensRequest{})
		return err
	}
	callRenew rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		_, err := apiv1grpc.NewClusterServiceClient(c).RenewCertificate(ctx, &apiv1.RenewCertificateRequest{Csr: []byte("csr")})
		return err
	}
	callWatch rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		st, err := apiv1grpc.NewVmServiceClient(c).WatchVms(ctx, &apiv1.WatchVmsRequest{})
		if err != nil {
			return err
		}
		_, err = st.Recv()
		return err
	}
	callHidden rpc = func(ctx context.Context, c *grpc.ClientConn) error {
		return c.Invoke(ctx, hiddenMethod, &emptypb.Empty{}, &emptypb.Empty{})
	}
)

// ---- the guard ---------------------------------------------------------------

func TestGuardEnforcesThePermissionTable(t *testing.T) {
	sec := newFakeSecurity()
	viewer := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_VIEWER)
	operator := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_OPERATOR)
	admin := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_ADMIN)
	joinTok, _ := sec.join(t, apiv1.NodeRole_NODE_ROLE_VOTER)
	unknown, err := authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_ACL, pki.Fingerprint{})
	if err != nil {
		t.Fatal(err)
	}
	// The right id with another secret.
	forged := "bxa." + strings.Split(admin, ".")[1] + "." + strings.Repeat("0", 32)

	tests := []struct {
		name    string
		call    rpc
		tok     string
		code    codes.Code
		backend bool // the backend was called
	}{
		{"public, no token", callHealth, "", codes.OK, true},
		{"public, a bad token", callHealth, "junk", codes.OK, true},
		{"read, no token", callStatus, "", codes.Unauthenticated, false},
		{"read, malformed token", callStatus, "bxa.nope", codes.Unauthenticated, false},
		{"read, unknown token", callStatus, unknown.String(), codes.Unauthenticated, false},
		{"read, forged secret", callStatus, forged, codes.Unauthenticated, false},
		{"read, a join token", callStatus, joinTok, codes.Unauthenticated, false},
		{"read, viewer", callStatus, viewer, codes.OK, true},
		{"read, viewer lists VMs", callListVms, viewer, codes.OK, true},
		{"operate, no token", callCreateVm, "", codes.Unauthenticated, false},
		{"operate, viewer", callCreateVm, viewer, codes.PermissionDenied, false},
		{"operate, operator", callCreateVm, operator, codes.OK, true},
		{"operate, admin", callCreateVm, admin, codes.OK, true},
		{"administer, viewer", callLeave, viewer, codes.PermissionDenied, false},
		{"administer, operator", callLeave, operator, codes.PermissionDenied, false},
		{"administer, admin", callLeave, admin, codes.OK, true},
		{"drain, operator", callDrain, operator, codes.PermissionDenied, false},
		{"drain, admin", callDrain, admin, codes.OK, true},
		{"tokens, operator", callListTokens, operator, codes.PermissionDenied, false},
		{"tokens, admin", callListTokens, admin, codes.OK, true},
		{"peer, no certificate, admin token", callRenew, admin, codes.PermissionDenied, false},
		{"peer, no certificate, no token", callRenew, "", codes.PermissionDenied, false},
		{"stream read, no token", callWatch, "", codes.Unauthenticated, false},
		{"stream read, viewer", callWatch, viewer, codes.Unimplemented, false}, // past the guard: the backend cannot be watched
		{"unlisted method, admin", callHidden, admin, codes.PermissionDenied, false},
	}
	b := &authBackend{}
	conn := dialWith(t, serveGuarded(t, b, sec, nil), nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.requests())
			err := tc.call(bearerCtx(tc.tok), conn)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.code)
			}
			if called := len(b.requests()) > before; called != tc.backend {
				t.Fatalf("backend called: %v, want %v", called, tc.backend)
			}
			if tc.tok != "" && err != nil {
				if secret := strings.Split(tc.tok, "."); len(secret) > 2 && strings.Contains(err.Error(), secret[2]) {
					t.Fatalf("error %q repeats the token's secret", err)
				}
			}
			if tc.code == codes.Unauthenticated || tc.code == codes.PermissionDenied {
				st := status.Convert(err)
				if len(st.Details()) != 1 {
					t.Fatalf("details = %v, want the apiv1.Error", st.Details())
				}
			}
		})
	}
}

func TestGuardNeedsTheBearerScheme(t *testing.T) {
	sec := newFakeSecurity()
	viewer := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_VIEWER)
	b := &authBackend{}
	conn := dialWith(t, serveGuarded(t, b, sec, nil), nil)
	for _, tc := range []struct {
		header string
		code   codes.Code
	}{
		{"Bearer " + viewer, codes.OK},
		{"Bearer   " + viewer + "  ", codes.OK},
		{viewer, codes.Unauthenticated},
		{"Basic " + viewer, codes.Unauthenticated},
		{"bearer " + viewer, codes.Unauthenticated},
		{"Bearer ", codes.Unauthenticated},
	} {
		ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", tc.header)
		if got := status.Code(callStatus(ctx, conn)); got != tc.code {
			t.Errorf("authorization %q: code %v, want %v", tc.header, got, tc.code)
		}
	}
}

func TestInsecureGuardLetsEverythingThrough(t *testing.T) {
	b := &authBackend{}
	conn := dialWith(t, serveGuarded(t, b, nil, nil), nil)
	for _, tc := range []struct {
		name string
		call rpc
		code codes.Code
	}{
		{"health", callHealth, codes.OK},
		{"status", callStatus, codes.OK},
		{"create VM", callCreateVm, codes.OK},
		{"leave", callLeave, codes.OK},
		{"drain", callDrain, codes.OK},
		// Past the guard, the handlers say there is nothing to do.
		{"tokens", callListTokens, codes.FailedPrecondition},
		{"renew", callRenew, codes.FailedPrecondition},
		// Still refused: in no table.
		{"unlisted method", callHidden, codes.PermissionDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := status.Code(tc.call(context.Background(), conn)); got != tc.code {
				t.Fatalf("code = %v, want %v", got, tc.code)
			}
		})
	}
	if n := len(b.requests()); n != 5 {
		t.Fatalf("backend got %d requests, want 5 (health, status, create, leave, drain)", n)
	}
}

func TestUnlistedMethodNeverRuns(t *testing.T) {
	for _, sec := range []Security{nil, newFakeSecurity()} {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(Interceptors(sec, Limits{})...)
		hs := &hiddenService{}
		s.RegisterService(&hiddenServiceDesc, hs)
		go func() { _ = s.Serve(lis) }()
		conn := dialWith(t, lis.Addr().String(), nil)
		err = callHidden(context.Background(), conn)
		s.Stop()
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("secure %v: code = %v, want PermissionDenied", sec != nil, status.Code(err))
		}
		hs.mu.Lock()
		called := hs.called
		hs.mu.Unlock()
		if called != 0 {
			t.Fatalf("secure %v: the unlisted handler ran %d times", sec != nil, called)
		}
	}
}

// ---- the guard, called directly with made-up peers ---------------------------

func testCA(t *testing.T) (*pki.CA, *x509.CertPool) {
	t.Helper()
	ca, err := pki.NewCA("c1", time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return ca, pki.PoolOf(ca.Certificate())
}

func testNode(t *testing.T, ca *pki.CA, id uint64) *pki.NodeCert {
	t.Helper()
	n, err := ca.NewNode(id, []string{"127.0.0.1"}, time.Now(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// tlsPeer is a context as gRPC gives a handler whose caller presented
// certs; verified says whether crypto/tls verified them.
func tlsPeer(ctx context.Context, verified bool, certs ...*x509.Certificate) context.Context {
	st := tls.ConnectionState{PeerCertificates: certs}
	if verified {
		st.VerifiedChains = [][]*x509.Certificate{certs}
	}
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: st}})
}

func TestGuardAuthorize(t *testing.T) {
	ca, _ := testCA(t)
	n2, n3 := testNode(t, ca, 2), testNode(t, ca, 3)
	sec := newFakeSecurity()
	sec.removed[3] = true
	operator := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_OPERATOR)
	g := guard{sec: sec}
	in := func(tok string) context.Context {
		if tok == "" {
			return context.Background()
		}
		return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok))
	}
	const (
		read    = "/blixard.v1.ClusterService/GetClusterStatus"
		health  = "/blixard.v1.ClusterService/HealthCheck"
		create  = "/blixard.v1.VmService/CreateVm"
		leave   = "/blixard.v1.ClusterService/LeaveCluster"
		raft    = "/blixard.transport.v1.RaftTransport/Stream"
		joinRPC = "/blixard.v1.ClusterService/JoinCluster"
	)
	tests := []struct {
		name   string
		ctx    context.Context
		method string
		code   apiv1.ErrorCode // 0: allowed
		want   caller
	}{
		{"node reads", tlsPeer(in(""), true, n2.Leaf(), ca.Certificate()), read, 0, caller{node: 2}},
		{"node streams raft", tlsPeer(in(""), true, n2.Leaf(), ca.Certificate()), raft, 0, caller{node: 2}},
		{"node joins", tlsPeer(in(""), true, n2.Leaf(), ca.Certificate()), joinRPC, 0, caller{node: 2}},
		{"node operates without a token", tlsPeer(in(""), true, n2.Leaf(), ca.Certificate()), create, apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, caller{}},
		{"node operates with a token", tlsPeer(in(operator), true, n2.Leaf(), ca.Certificate()), create, 0, caller{node: 2, role: authz.RoleOperator}},
		{"node administers with an operator token", tlsPeer(in(operator), true, n2.Leaf(), ca.Certificate()), leave, apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, caller{}},
		{"removed node reads", tlsPeer(in(""), true, n3.Leaf(), ca.Certificate()), read, apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, caller{}},
		{"removed node health check", tlsPeer(in(""), true, n3.Leaf(), ca.Certificate()), health, apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, caller{}},
		{"removed node streams raft", tlsPeer(in(""), true, n3.Leaf(), ca.Certificate()), raft, apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, caller{}},
		{"unverified certificate", tlsPeer(in(operator), false, n2.Leaf(), ca.Certificate()), read, apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, caller{}},
		{"verified CA certificate, no node", tlsPeer(in(operator), true, ca.Certificate()), read, apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, caller{}},
		{"TLS client without a certificate, token", tlsPeer(in(operator), false), create, 0, caller{role: authz.RoleOperator}},
		{"TLS client without a certificate, raft", tlsPeer(in(operator), false), raft, apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, caller{}},
		{"no peer at all, token", in(operator), create, 0, caller{role: authz.RoleOperator}},
		{"no peer at all, public", in(""), health, 0, caller{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, err := g.authorize(tc.ctx, tc.method)
			if tc.code == 0 {
				if err != nil {
					t.Fatalf("authorize = %v, want nil", err)
				}
				// The token id only names the client for the limits.
				if got := callerOf(ctx); got.node != tc.want.node || got.role != tc.want.role {
					t.Fatalf("caller = %+v, want %+v", got, tc.want)
				}
				return
			}
			want := StatusOf(&apiv1.Error{Code: tc.code})
			if status.Code(err) != status.Code(want) {
				t.Fatalf("authorize = %v, want code %v", err, status.Code(want))
			}
			if callerOf(ctx) != (caller{}) {
				t.Fatalf("a refused call carries caller %+v", callerOf(ctx))
			}
		})
	}
}

// ---- over real TLS -----------------------------------------------------------

func TestGuardOverTLS(t *testing.T) {
	ca, pool := testCA(t)
	srv := testNode(t, ca, 1)
	sec := newFakeSecurity()
	sec.removed[3] = true
	viewer := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_VIEWER)
	admin := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_ADMIN)
	b := &authBackend{}
	// The handshake lets every node in: what is refused is the guard's doing.
	addr := serveGuarded(t, b, sec, credentials.NewTLS(pki.SharedServerTLS(srv.TLSCertificate(), pool, func(uint64) error { return nil })))
	asNode := func(id uint64) credentials.TransportCredentials {
		return credentials.NewTLS(pki.ClientTLS(testNode(t, ca, id).TLSCertificate(), pool, func(uint64) error { return nil }))
	}
	node2 := dialWith(t, addr, asNode(2))
	node3 := dialWith(t, addr, asNode(3))
	client := dialWith(t, addr, credentials.NewTLS(pki.ClientOnlyTLS(pool)))

	tests := []struct {
		name    string
		conn    *grpc.ClientConn
		call    rpc
		tok     string
		code    codes.Code
		backend bool
	}{
		{"node reads without a token", node2, callStatus, "", codes.OK, true},
		{"node renews its certificate", node2, callRenew, "", codes.OK, true},
		{"node operates without a token", node2, callCreateVm, "", codes.Unauthenticated, false},
		{"node administers with a viewer token", node2, callLeave, viewer, codes.PermissionDenied, false},
		{"removed node reads", node3, callStatus, "", codes.PermissionDenied, false},
		{"removed node renews", node3, callRenew, "", codes.PermissionDenied, false},
		{"removed node health check", node3, callHealth, "", codes.PermissionDenied, false},
		{"removed node with an admin token", node3, callLeave, admin, codes.PermissionDenied, false},
		{"client reads with a token", client, callStatus, viewer, codes.OK, true},
		{"client reads without one", client, callStatus, "", codes.Unauthenticated, false},
		{"client renews", client, callRenew, admin, codes.PermissionDenied, false},
		{"client health check", client, callHealth, "", codes.OK, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(b.requests())
			err := tc.call(bearerCtx(tc.tok), tc.conn)
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.code)
			}
			if called := len(b.requests()) > before; called != tc.backend {
				t.Fatalf("backend called: %v, want %v", called, tc.backend)
			}
		})
	}

	// The renewal was for the calling node, at its address in the status.
	renewals := sec.issues()
	if len(renewals) != 1 {
		t.Fatalf("Issue called %d times, want once: %+v", len(renewals), renewals)
	}
	if c := renewals[0]; c.id != 2 || c.addr != "10.0.0.2:7000" || c.withCAKey || string(c.csr) != "csr" {
		t.Fatalf("Issue(%q, %d, %q, %v), want the CSR sent, node 2 at 10.0.0.2:7000, no CA key", c.csr, c.id, c.addr, c.withCAKey)
	}
}

func TestRenewCertificateReturnsTheIssuedCertificate(t *testing.T) {
	ca, pool := testCA(t)
	srv := testNode(t, ca, 1)
	sec := newFakeSecurity()
	addr := serveGuarded(t, &authBackend{}, sec, credentials.NewTLS(pki.SharedServerTLS(srv.TLSCertificate(), pool, func(uint64) error { return nil })))
	conn := dialWith(t, addr, credentials.NewTLS(pki.ClientTLS(testNode(t, ca, 2).TLSCertificate(), pool, func(uint64) error { return nil })))
	cc := apiv1grpc.NewClusterServiceClient(conn)

	resp, err := cc.RenewCertificate(context.Background(), &apiv1.RenewCertificateRequest{Csr: []byte("csr")})
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.GetCertificate()) != "node-cert" || string(resp.GetCaCertificates()) != "ca-certs" {
		t.Fatalf("response = %v, want the issued certificate and CAs", resp)
	}
	sec.mu.Lock()
	sec.issueErr = errors.New("csr names node 9")
	sec.mu.Unlock()
	if _, err := cc.RenewCertificate(context.Background(), &apiv1.RenewCertificateRequest{Csr: []byte("csr")}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a refused renewal: %v, want FailedPrecondition", err)
	}
}

// ---- JoinCluster -------------------------------------------------------------

type joinKey struct {
	csr   []byte
	keyID string
}

func newJoinKey(t *testing.T, node uint64) joinKey {
	t.Helper()
	key, err := pki.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.NewCSR(node, key)
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := pki.CSRKeyID(csr)
	if err != nil {
		t.Fatal(err)
	}
	return joinKey{csr: csr, keyID: id}
}

func TestJoinClusterSecure(t *testing.T) {
	sec := newFakeSecurity()
	voterTok, voterRec := sec.join(t, apiv1.NodeRole_NODE_ROLE_VOTER)
	workerTok, workerRec := sec.join(t, apiv1.NodeRole_NODE_ROLE_WORKER)
	admin := sec.acl(t, apiv1.AccessRole_ACCESS_ROLE_ADMIN)
	stranger, err := authz.NewSecret(apiv1.TokenKind_TOKEN_KIND_JOIN, sec.ca)
	if err != nil {
		t.Fatal(err)
	}
	k, other := newJoinKey(t, 5), newJoinKey(t, 5)

	request := func(role apiv1.NodeRole, edit func(*apiv1.JoinClusterRequest)) *apiv1.JoinClusterRequest {
		r := &apiv1.JoinClusterRequest{
			ClientRequestId: JoinRequestID(5, k.keyID, voterRec.GetId()),
			NodeId:          5,
			Address:         "10.0.0.5:7000",
			Role:            role,
			Capacity:        &apiv1.Resources{Vcpus: 4, MemoryMib: 4096},
			Csr:             k.csr,
			JoinTokenId:     "forged-by-the-caller",
		}
		if edit != nil {
			edit(r)
		}
		return r
	}
	voter, worker, unspecified := apiv1.NodeRole_NODE_ROLE_VOTER, apiv1.NodeRole_NODE_ROLE_WORKER, apiv1.NodeRole_NODE_ROLE_UNSPECIFIED
	tests := []struct {
		name      string
		tok       string
		req       *apiv1.JoinClusterRequest
		code      codes.Code
		field     string       // of an InvalidArgument
		rec       *apiv1.Token // the token the backend must see: nil if not called
		withCAKey bool
	}{
		{"no token", "", request(voter, nil), codes.Unauthenticated, "", nil, false},
		{"malformed token", "bxj.abc", request(voter, nil), codes.Unauthenticated, "", nil, false},
		{"unknown token", stranger.String(), request(voter, nil), codes.Unauthenticated, "", nil, false},
		{"an ACL token", admin, request(voter, nil), codes.Unauthenticated, "", nil, false},
		{"worker token, voter", workerTok, request(voter, nil), codes.PermissionDenied, "", nil, false},
		{"worker token, role unspecified (a voter)", workerTok, request(unspecified, nil), codes.PermissionDenied, "", nil, false},
		{"no CSR", voterTok, request(voter, func(r *apiv1.JoinClusterRequest) { r.Csr = nil }), codes.InvalidArgument, "csr", nil, false},
		{"garbage CSR", voterTok, request(voter, func(r *apiv1.JoinClusterRequest) { r.Csr = []byte("not a csr") }), codes.InvalidArgument, "csr", nil, false},
		{"request id without the prefix", voterTok, request(voter, func(r *apiv1.JoinClusterRequest) { r.ClientRequestId = k.keyID }), codes.InvalidArgument, "client_request_id", nil, false},
		{"no request id", voterTok, request(voter, func(r *apiv1.JoinClusterRequest) { r.ClientRequestId = "" }), codes.InvalidArgument, "client_request_id", nil, false},
		{"request id of another key", voterTok, request(voter, func(r *apiv1.JoinClusterRequest) { r.ClientRequestId = JoinRequestID(5, other.keyID, voterRec.GetId()) }), codes.InvalidArgument, "client_request_id", nil, false},
		{"CSR of another key", voterTok, request(voter, func(r *apiv1.JoinClusterRequest) { r.Csr = other.csr }), codes.InvalidArgument, "client_request_id", nil, false},
		{"worker token, worker", workerTok, request(worker, func(r *apiv1.JoinClusterRequest) { r.ClientRequestId = JoinRequestID(5, k.keyID, workerRec.GetId()) }), codes.OK, "", workerRec, false},
		{"request id of another token", workerTok, request(worker, nil), codes.InvalidArgument, "client_request_id", nil, false},
		{"voter token, worker", voterTok, request(worker, nil), codes.OK, "", voterRec, false},
		{"voter token, voter", voterTok, request(voter, nil), codes.OK, "", voterRec, true},
		{"voter token, role unspecified (a voter)", voterTok, request(unspecified, nil), codes.OK, "", voterRec, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &authBackend{}
			sec.mu.Lock()
			sec.issued = nil
			sec.mu.Unlock()
			conn := dialWith(t, serveGuarded(t, b, sec, nil), nil)
			resp, err := apiv1grpc.NewClusterServiceClient(conn).JoinCluster(bearerCtx(tc.tok), tc.req)
			st := status.Convert(err)
			if st.Code() != tc.code {
				t.Fatalf("code = %v (%v), want %v", st.Code(), err, tc.code)
			}
			if tc.field != "" {
				if len(st.Details()) != 1 || st.Details()[0].(*apiv1.Error).GetField() != tc.field {
					t.Fatalf("details = %v, want an error on %q", st.Details(), tc.field)
				}
			}
			reqs := b.requests()
			if tc.rec == nil {
				if len(reqs) != 0 || len(sec.issues()) != 0 {
					t.Fatalf("refused join reached the backend (%v) or Issue (%v)", reqs, sec.issues())
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("backend got %d requests, want 1", len(reqs))
			}
			got := reqs[0].GetJoinCluster()
			if got.GetJoinTokenId() != tc.rec.GetId() {
				t.Fatalf("backend got join_token_id %q, want the checked token's id %q", got.GetJoinTokenId(), tc.rec.GetId())
			}
			if got.GetNodeId() != 5 || !bytes.Equal(got.GetCsr(), k.csr) || got.GetClientRequestId() != JoinRequestID(5, k.keyID, tc.rec.GetId()) {
				t.Fatalf("backend got %v, want the request as sent", got)
			}
			// The token travels in metadata only, and stops at the edge.
			wire, err := proto.Marshal(reqs[0])
			if err != nil {
				t.Fatal(err)
			}
			secret := strings.Split(tc.tok, ".")[2]
			if bytes.Contains(wire, []byte(secret)) || strings.Contains(prototext.Format(reqs[0]), secret) {
				t.Fatalf("the request the backend got holds the token's secret")
			}
			calls := sec.issues()
			if len(calls) != 1 {
				t.Fatalf("Issue called %d times, want once", len(calls))
			}
			if c := calls[0]; c.id != 5 || c.addr != "10.0.0.5:7000" || !bytes.Equal(c.csr, k.csr) || c.withCAKey != tc.withCAKey {
				t.Fatalf("Issue(csr, %d, %q, %v), want node 5 at 10.0.0.5:7000 with CA key %v", c.id, c.addr, c.withCAKey, tc.withCAKey)
			}
			wantKey := ""
			if tc.withCAKey {
				wantKey = "ca-key"
			}
			if resp.GetClusterId() != "c1" || string(resp.GetCertificate()) != "node-cert" ||
				string(resp.GetCaCertificates()) != "ca-certs" || string(resp.GetCaKey()) != wantKey {
				t.Fatalf("response = %v, want the backend's answer with the issued credentials (CA key %q)", resp, wantKey)
			}
		})
	}
}

func TestJoinClusterSecureFailures(t *testing.T) {
	sec := newFakeSecurity()
	voterTok, _ := sec.join(t, apiv1.NodeRole_NODE_ROLE_VOTER)
	k := newJoinKey(t, 5)
	req := &apiv1.JoinClusterRequest{ClientRequestId: JoinRequestID(5, k.keyID, tokID(voterTok)), NodeId: 5, Address: "10.0.0.5:7000", Csr: k.csr}

	// The core refuses: no certificate is issued.
	b := &authBackend{respond: func(*apiv1.Request) *apiv1.Response {
		return &apiv1.Response{Error: &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Message: "join token expired"}}
	}}
	conn := dialWith(t, serveGuarded(t, b, sec, nil), nil)
	if _, err := apiv1grpc.NewClusterServiceClient(conn).JoinCluster(bearerCtx(voterTok), req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("core refusal: %v, want FailedPrecondition", err)
	}
	if n := len(sec.issues()); n != 0 {
		t.Fatalf("Issue called %d times after the core refused the join", n)
	}

	// The core admits the node but no certificate can be issued: a retry helps.
	sec.issueErr = errors.New("no CA key here")
	b2 := &authBackend{}
	conn2 := dialWith(t, serveGuarded(t, b2, sec, nil), nil)
	if _, err := apiv1grpc.NewClusterServiceClient(conn2).JoinCluster(bearerCtx(voterTok), req); status.Code(err) != codes.Unavailable {
		t.Fatalf("Issue failing: %v, want Unavailable", err)
	}
	if n := len(b2.requests()); n != 1 {
		t.Fatalf("backend got %d requests, want 1", n)
	}
}

func TestJoinClusterInsecure(t *testing.T) {
	b := &authBackend{}
	conn := dialWith(t, serveGuarded(t, b, nil, nil), nil)
	req := &apiv1.JoinClusterRequest{ClientRequestId: "j1", NodeId: 5, Address: "10.0.0.5:7000", JoinTokenId: "forged"}
	resp, err := apiv1grpc.NewClusterServiceClient(conn).JoinCluster(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	reqs := b.requests()
	if len(reqs) != 1 || reqs[0].GetJoinCluster().GetJoinTokenId() != "" || reqs[0].GetJoinCluster().GetClientRequestId() != "j1" {
		t.Fatalf("backend got %v, want the request with join_token_id cleared", reqs)
	}
	if resp.GetCertificate() != nil || resp.GetCaKey() != nil || resp.GetClusterId() != "c1" {
		t.Fatalf("insecure join response = %v", resp)
	}
}

// ---- tokens ------------------------------------------------------------------

var tokenNow = time.Unix(1_700_000_000, 0)

func newTokenService(b Backend, sec Security) *tokenService {
	return &tokenService{b: b, sec: sec, now: func() time.Time { return tokenNow }}
}

func TestCreateToken(t *testing.T) {
	join, acl := apiv1.TokenKind_TOKEN_KIND_JOIN, apiv1.TokenKind_TOKEN_KIND_ACL
	tests := []struct {
		name   string
		req    *apiv1.CreateTokenRequest
		want   *apiv1.Token // less id and hash
		wantCA bool
	}{
		{"viewer, no expiry",
			&apiv1.CreateTokenRequest{ClientRequestId: "t1", Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER, Description: "dashboard"},
			&apiv1.Token{Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER, CreatedUnixNano: tokenNow.UnixNano(), Description: "dashboard"}, false},
		{"admin for a day",
			&apiv1.CreateTokenRequest{ClientRequestId: "t2", Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_ADMIN, TtlSeconds: 86400},
			&apiv1.Token{Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_ADMIN, CreatedUnixNano: tokenNow.UnixNano(),
				ExpiresUnixNano: tokenNow.Add(24 * time.Hour).UnixNano()}, false},
		{"join, defaults",
			&apiv1.CreateTokenRequest{ClientRequestId: "t3", Kind: join},
			&apiv1.Token{Kind: join, NodeRole: apiv1.NodeRole_NODE_ROLE_VOTER, CreatedUnixNano: tokenNow.UnixNano(),
				ExpiresUnixNano: tokenNow.Add(DefaultJoinTokenTTL).UnixNano()}, true},
		{"join, worker, a minute",
			&apiv1.CreateTokenRequest{ClientRequestId: "t4", Kind: join, NodeRole: apiv1.NodeRole_NODE_ROLE_WORKER, TtlSeconds: 60},
			&apiv1.Token{Kind: join, NodeRole: apiv1.NodeRole_NODE_ROLE_WORKER, CreatedUnixNano: tokenNow.UnixNano(),
				ExpiresUnixNano: tokenNow.Add(time.Minute).UnixNano()}, true},
		{"longest ttl",
			&apiv1.CreateTokenRequest{Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_OPERATOR, TtlSeconds: int64(MaxTokenTTL / time.Second)},
			&apiv1.Token{Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_OPERATOR, CreatedUnixNano: tokenNow.UnixNano(),
				ExpiresUnixNano: tokenNow.Add(MaxTokenTTL).UnixNano()}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sec := newFakeSecurity()
			b := &authBackend{}
			resp, err := newTokenService(b, sec).CreateToken(context.Background(), tc.req)
			if err != nil {
				t.Fatalf("CreateToken = %v", err)
			}
			reqs := b.requests()
			if len(reqs) != 1 || reqs[0].GetCreateToken() == nil {
				t.Fatalf("backend got %v, want one CreateToken", reqs)
			}
			cmd := reqs[0].GetCreateToken()
			rec := cmd.GetToken()
			if cmd.GetClientRequestId() != tc.req.GetClientRequestId() {
				t.Fatalf("client request id %q, want %q", cmd.GetClientRequestId(), tc.req.GetClientRequestId())
			}
			if !authz.ValidTokenID(rec.GetId()) || len(rec.GetSecretSha256()) != 32 {
				t.Fatalf("record %v lacks an id or hash", rec)
			}
			bare := proto.CloneOf(rec)
			bare.Id, bare.SecretSha256 = "", nil
			if !proto.Equal(bare, tc.want) {
				t.Fatalf("record = %v, want %v", bare, tc.want)
			}

			secret, err := authz.ParseToken(resp.GetSecret())
			if err != nil {
				t.Fatalf("the secret returned does not parse: %v", err)
			}
			if secret.Kind != tc.req.GetKind() || secret.ID != rec.GetId() || !secret.Matches(rec) {
				t.Fatalf("the secret returned (%#v) is not the recorded token %v", secret, rec)
			}
			if tc.wantCA != (secret.CA == sec.ca) {
				t.Fatalf("secret pins CA %x; want the node's CA: %v", secret.CA, tc.wantCA)
			}
			if resp.GetToken().GetSecretSha256() != nil || resp.GetToken().GetId() != rec.GetId() {
				t.Fatalf("response token = %v, want the public record", resp.GetToken())
			}
			// Only the hash reaches the core.
			part := strings.Split(resp.GetSecret(), ".")[2]
			wire, err := proto.Marshal(reqs[0])
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(wire, []byte(part)) || strings.Contains(prototext.Format(reqs[0]), part) {
				t.Fatal("the request to the core holds the token's secret")
			}
		})
	}
}

func TestCreateTokenRefusals(t *testing.T) {
	good := &apiv1.CreateTokenRequest{ClientRequestId: "t1", Kind: apiv1.TokenKind_TOKEN_KIND_ACL, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER}

	// Insecure: nothing to create.
	b := &authBackend{}
	if _, err := newTokenService(b, nil).CreateToken(context.Background(), good); status.Code(err) != codes.FailedPrecondition || len(b.requests()) != 0 {
		t.Fatalf("insecure CreateToken: %v (backend got %d requests), want FailedPrecondition", err, len(b.requests()))
	}

	// The core answers with another token (an earlier attempt's): the
	// secret drawn now does not open it, so none is returned.
	other := &authBackend{respond: func(*apiv1.Request) *apiv1.Response {
		return &apiv1.Response{Kind: &apiv1.Response_CreateToken{CreateToken: &apiv1.CreateTokenResponse{
			Token: &apiv1.Token{Id: "00000000000000ff", Kind: apiv1.TokenKind_TOKEN_KIND_ACL}}}}
	}}
	resp, err := newTokenService(other, newFakeSecurity()).CreateToken(context.Background(), good)
	if status.Code(err) != codes.FailedPrecondition || resp.GetSecret() != "" {
		t.Fatalf("mismatched id: %v, %v; want FailedPrecondition and no secret", resp, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "00000000000000ff") || strings.Contains(msg, "bxa.") {
		t.Fatalf("mismatched id: message %q should name the token made, and no secret", msg)
	}

	// The core refuses: its error passes through.
	refused := &authBackend{respond: func(*apiv1.Request) *apiv1.Response {
		return &apiv1.Response{Error: &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED, Message: "too many"}}
	}}
	if _, err := newTokenService(refused, newFakeSecurity()).CreateToken(context.Background(), good); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("core refusal: %v, want ResourceExhausted", err)
	}
}

func TestNewTokenRecordRefusals(t *testing.T) {
	join, acl := apiv1.TokenKind_TOKEN_KIND_JOIN, apiv1.TokenKind_TOKEN_KIND_ACL
	maxSeconds := int64(MaxTokenTTL / time.Second)
	for _, tc := range []struct {
		name  string
		req   *apiv1.CreateTokenRequest
		field string
	}{
		{"no kind", &apiv1.CreateTokenRequest{}, "kind"},
		{"unknown kind", &apiv1.CreateTokenRequest{Kind: 9}, "kind"},
		{"negative ttl", &apiv1.CreateTokenRequest{Kind: join, TtlSeconds: -1}, "ttl_seconds"},
		{"ttl over a year", &apiv1.CreateTokenRequest{Kind: join, TtlSeconds: maxSeconds + 1}, "ttl_seconds"},
		{"ttl that overflows a Duration", &apiv1.CreateTokenRequest{Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER, TtlSeconds: math.MaxInt64}, "ttl_seconds"},
		{"ttl that wraps to a small Duration", &apiv1.CreateTokenRequest{Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER, TtlSeconds: math.MaxInt64/int64(time.Second) + 2}, "ttl_seconds"},
		{"join with an access role", &apiv1.CreateTokenRequest{Kind: join, AccessRole: apiv1.AccessRole_ACCESS_ROLE_ADMIN}, "access_role"},
		{"acl without an access role", &apiv1.CreateTokenRequest{Kind: acl}, "access_role"},
		{"acl with a node role", &apiv1.CreateTokenRequest{Kind: acl, AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER, NodeRole: apiv1.NodeRole_NODE_ROLE_VOTER}, "node_role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := newTokenRecord(tc.req, tokenNow)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || rec != nil {
				t.Fatalf("newTokenRecord = %v, %v; want InvalidArgument", rec, err)
			}
			if len(st.Details()) != 1 || st.Details()[0].(*apiv1.Error).GetField() != tc.field {
				t.Fatalf("details = %v, want an error on %q", st.Details(), tc.field)
			}
			// Through the service, the backend never hears of it.
			b := &authBackend{}
			if _, err := newTokenService(b, newFakeSecurity()).CreateToken(context.Background(), tc.req); status.Code(err) != codes.InvalidArgument || len(b.requests()) != 0 {
				t.Fatalf("CreateToken = %v with %d backend requests, want InvalidArgument and none", err, len(b.requests()))
			}
		})
	}
}

func TestRevokeAndListTokens(t *testing.T) {
	ctx := context.Background()
	b := &authBackend{}
	ts := newTokenService(b, newFakeSecurity())
	for _, id := range []string{"", "abc", "00000000000000AB", "00000000000000ab0"} {
		_, err := ts.RevokeToken(ctx, &apiv1.RevokeTokenRequest{ClientRequestId: "r", Kind: apiv1.TokenKind_TOKEN_KIND_ACL, Id: id})
		st := status.Convert(err)
		if st.Code() != codes.InvalidArgument || len(st.Details()) != 1 || st.Details()[0].(*apiv1.Error).GetField() != "id" {
			t.Fatalf("RevokeToken(%q) = %v, want InvalidArgument on id", id, err)
		}
	}
	if n := len(b.requests()); n != 0 {
		t.Fatalf("bad ids reached the backend %d times", n)
	}
	req := &apiv1.RevokeTokenRequest{ClientRequestId: "r", Kind: apiv1.TokenKind_TOKEN_KIND_JOIN, Id: "00000000000000ab"}
	resp, err := ts.RevokeToken(ctx, req)
	if err != nil || resp.GetToken().GetId() != req.GetId() {
		t.Fatalf("RevokeToken = %v, %v", resp, err)
	}
	if reqs := b.requests(); len(reqs) != 1 || !proto.Equal(reqs[0].GetRevokeToken(), req) {
		t.Fatalf("backend got %v, want the request unchanged", reqs)
	}
	if _, err := ts.ListTokens(ctx, &apiv1.ListTokensRequest{Kind: apiv1.TokenKind_TOKEN_KIND_ACL}); err != nil {
		t.Fatalf("ListTokens = %v", err)
	}
	if reqs := b.requests(); len(reqs) != 2 || reqs[1].GetListTokens().GetKind() != apiv1.TokenKind_TOKEN_KIND_ACL {
		t.Fatalf("backend got %v, want the list request", reqs)
	}

	open := newTokenService(b, nil)
	if _, err := open.RevokeToken(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("insecure RevokeToken = %v, want FailedPrecondition", err)
	}
	if _, err := open.ListTokens(ctx, &apiv1.ListTokensRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("insecure ListTokens = %v, want FailedPrecondition", err)
	}
	if n := len(b.requests()); n != 2 {
		t.Fatalf("insecure calls reached the backend: %d requests", n)
	}
}

// TestJoinClusterWithAnotherRequestsAnswer: the core answers a request id
// it remembers with the remembered response, whatever its kind. A join
// whose id was first used by another request must get an error, not take
// the node down.
func TestJoinClusterWithAnotherRequestsAnswer(t *testing.T) {
	sec := newFakeSecurity()
	voterTok, _ := sec.join(t, apiv1.NodeRole_NODE_ROLE_VOTER)
	k := newJoinKey(t, 5)
	b := &authBackend{respond: func(*apiv1.Request) *apiv1.Response {
		return &apiv1.Response{Kind: &apiv1.Response_CreateVm{CreateVm: &apiv1.CreateVmResponse{}}}
	}}
	s := &clusterService{b: b, sec: sec, keyID: pki.CSRKeyID}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+voterTok))
	req := &apiv1.JoinClusterRequest{ClientRequestId: JoinRequestID(5, k.keyID, tokID(voterTok)), NodeId: 5, Address: "10.0.0.5:7000", Csr: k.csr}
	var err error
	func() {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("JoinCluster panicked: %v", p)
			}
		}()
		_, err = s.JoinCluster(ctx, req)
	}()
	if err == nil {
		t.Fatal("JoinCluster answered with another request's response and no error")
	}
	if n := len(sec.issues()); n != 0 {
		t.Fatalf("Issue called %d times for a join the core did not make", n)
	}
}

// TestJoinClusterChecksTheCSRNodeFirst: a CSR for another node than the
// one joining must be refused before the join is proposed; after it, the
// node is a member that can never get a certificate.
func TestJoinClusterChecksTheCSRNodeFirst(t *testing.T) {
	sec := newFakeSecurity()
	voterTok, _ := sec.join(t, apiv1.NodeRole_NODE_ROLE_VOTER)
	k6 := newJoinKey(t, 6)
	b := &authBackend{}
	conn := dialWith(t, serveGuarded(t, b, sec, nil), nil)
	req := &apiv1.JoinClusterRequest{ClientRequestId: JoinRequestID(5, k6.keyID, tokID(voterTok)), NodeId: 5, Address: "10.0.0.5:7000", Csr: k6.csr}
	_, err := apiv1grpc.NewClusterServiceClient(conn).JoinCluster(bearerCtx(voterTok), req)
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || len(st.Details()) != 1 || st.Details()[0].(*apiv1.Error).GetField() != "csr" {
		t.Fatalf("join as node 5 with node 6's CSR: %v, want InvalidArgument on csr", err)
	}
	if n := len(b.requests()); n != 0 {
		t.Fatalf("the join reached the core (%d requests)", n)
	}
}

// rememberingBackend answers a client request id it has seen with the
// first answer, as the core does.
type rememberingBackend struct {
	authBackend
	seen map[string]*apiv1.Response
}

func (b *rememberingBackend) Do(ctx context.Context, req *apiv1.Request) (*apiv1.Response, error) {
	id := req.GetJoinCluster().GetClientRequestId()
	b.mu.Lock()
	first, ok := b.seen[id]
	b.mu.Unlock()
	if ok {
		return first, nil
	}
	resp, err := b.authBackend.Do(ctx, req)
	b.mu.Lock()
	b.seen[id] = resp
	b.mu.Unlock()
	return resp, err
}

// TestJoinRetryCannotChangeTheNode: a retry of a join (same key, same
// request id) gets the first answer from the core without any check; the
// certificate it gets must still be for the node that joined, not for
// whichever node id the retry names.
func TestJoinRetryCannotChangeTheNode(t *testing.T) {
	sec := newFakeSecurity()
	workerTok, _ := sec.join(t, apiv1.NodeRole_NODE_ROLE_WORKER)
	key, err := pki.NewNodeKey()
	if err != nil {
		t.Fatal(err)
	}
	csrFor := func(id uint64) []byte {
		csr, err := pki.NewCSR(id, key)
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	keyID, err := pki.KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	b := &rememberingBackend{seen: map[string]*apiv1.Response{}}
	cc := apiv1grpc.NewClusterServiceClient(dialWith(t, serveGuarded(t, b, sec, nil), nil))
	join := func(id uint64) error {
		_, err := cc.JoinCluster(bearerCtx(workerTok), &apiv1.JoinClusterRequest{
			// The first join's request id, whatever node the retry names.
			ClientRequestId: JoinRequestID(5, keyID, tokID(workerTok)), NodeId: id, Address: "10.0.0.5:7000",
			Role: apiv1.NodeRole_NODE_ROLE_WORKER, Csr: csrFor(id)})
		return err
	}
	if err := join(5); err != nil {
		t.Fatalf("join as node 5: %v", err)
	}
	// The same key and request id, now naming node 1 (a voter of the cluster).
	err = join(1)
	for _, c := range sec.issues() {
		if c.id == 1 {
			t.Fatalf("a worker that joined as node 5 was issued a certificate for node 1 (retry error %v)", err)
		}
	}
	if err == nil {
		t.Fatal("a retry naming another node succeeded")
	}
}
