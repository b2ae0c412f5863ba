package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/pki"
)

// Security is what a secure node gives its API: who a caller is, and the
// cluster CA's services. A node started with --insecure has none (nil).
type Security interface {
	// ACLRole returns the role of an ACL token (the whole "bxa.…" string),
	// or an error that says why it is refused: malformed, unknown,
	// revoked, expired.
	ACLRole(token string) (authz.Role, error)
	// JoinToken checks a join token (the whole "bxj.…" string) and returns
	// its record, or an error that says why it is refused.
	JoinToken(token string) (*apiv1.Token, error)
	// PeerAllowed reports why node id may not connect (it was removed),
	// or nil.
	PeerAllowed(id uint64) error
	// CAFingerprint is the fingerprint of the CA that join tokens pin.
	CAFingerprint() pki.Fingerprint
	// Issue signs a certificate for node id's key (a CSR naming id) with
	// the cluster CA, and returns it and the CA certificates to trust, in
	// PEM. withCAKey adds the CA's private key (PEM), for a joining voter.
	Issue(csr []byte, id uint64, addr string, withCAKey bool) (cert, cas, caKey []byte, err error)
	// RotateCA makes the CA that is to succeed the current one: its
	// certificate (DER) and its key sealed with the current CA's.
	RotateCA() (cert, sealedKey []byte, err error)
}

// Interceptors return the server options that enforce the permission
// table (authz.Methods) on every call of every service of the server,
// then the per-client limits: with sec nil (--insecure) every call
// passes the table, but a method missing from it is still refused.
func Interceptors(sec Security, limits Limits) []grpc.ServerOption {
	g := guard{sec: sec}
	lm := newLimiter(limits)
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := g.authorize(ctx, info.FullMethod)
			if err != nil {
				return nil, err
			}
			c := callerOf(ctx)
			if c.node == 0 && !lm.allow(clientKey(ctx, c)) {
				return nil, rateRefusal()
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := g.authorize(ss.Context(), info.FullMethod)
			if err != nil {
				return err
			}
			c := callerOf(ctx)
			key := clientKey(ctx, c)
			if c.node == 0 && !lm.allow(key) {
				return rateRefusal()
			}
			release, ok := lm.open(key)
			if !ok {
				return streamRefusal(lm.l.Streams)
			}
			defer release()
			return h(srv, &callerStream{ServerStream: ss, ctx: ctx})
		}),
	}
}

type guard struct{ sec Security }

// nodeReadable is the one Read method a node certificate may call.
const nodeReadable = "/blixard.v1.ClusterService/GetClusterStatus"

// caller is who made a call, as the guard found: a node (by its
// certificate) or a client (by its token's role).
type caller struct {
	node    uint64
	role    authz.Role
	tokenID string
}

type callerKey struct{}

// callerOf is the caller the guard let in; zero with --insecure.
func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

func (g guard) authorize(ctx context.Context, method string) (context.Context, error) {
	perm, ok := authz.Required(method)
	if !ok {
		return ctx, deny(apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, method+" is in no permission table; refused")
	}
	if g.sec == nil {
		return context.WithValue(ctx, callerKey{}, caller{}), nil
	}
	var c caller
	node, err := peerNode(ctx)
	if err != nil {
		return ctx, deny(apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, err.Error())
	}
	if node != 0 {
		// The handshake checked the certificate and that the node was
		// allowed then; a connection outlives a removal, so ask again.
		if err := g.sec.PeerAllowed(node); err != nil {
			return ctx, deny(apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, err.Error())
		}
		c.node = node
	}
	switch {
	case perm == authz.Public || perm == authz.Join:
		// Join checks its join token itself: it needs the request.
	case perm == authz.Peer:
		if node == 0 {
			return ctx, deny(apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, "only nodes of the cluster, with their certificates, may call "+method)
		}
	case node != 0 && method == nodeReadable:
		// Nodes read the cluster's status (whether they were removed);
		// nothing else without a token: not consoles, not workloads.
	default:
		tok := bearer(ctx)
		if tok == "" {
			return ctx, deny(apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, "no token: pass --token or set BLIXARD_TOKEN")
		}
		role, err := g.sec.ACLRole(tok)
		if err != nil {
			return ctx, deny(apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, err.Error())
		}
		if !role.Grants(perm) {
			return ctx, deny(apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED,
				article(role.String())+" "+role.String()+" token may not call "+methodName(method)+" (it needs "+perm.String()+")")
		}
		c.role = role
		if sec, err := authz.ParseToken(tok); err == nil {
			c.tokenID = sec.ID
		}
	}
	return context.WithValue(ctx, callerKey{}, c), nil
}

func deny(code apiv1.ErrorCode, msg string) error {
	return StatusOf(&apiv1.Error{Code: code, Message: msg})
}

func methodName(full string) string {
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		return full[i+1:]
	}
	return full
}

// peerNode is the node id in the caller's TLS client certificate, 0 for a
// caller without one.
func peerNode(ctx context.Context) (uint64, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return 0, nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return 0, nil
	}
	return pki.PeerNodeID(info.State)
}

// bearer is the token in the call's "authorization: Bearer <token>"
// metadata, or "".
func bearer(ctx context.Context) string {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return ""
	}
	for _, v := range md.Get("authorization") {
		if tok, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(tok)
		}
	}
	return ""
}

// article is "a" or "an" before word.
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}
