package clienttest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// Token limits and defaults the fake applies, as the cluster does.
const (
	maxTokenDescription = 256
	defaultJoinTokenTTL = time.Hour
)

// FakeCAFingerprint is the CA fingerprint, 64 hex digits, that the fake's
// join tokens pin.
const FakeCAFingerprint = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0"

type tokenKey struct {
	kind apiv1.TokenKind
	id   string
}

type tokenService struct {
	apiv1grpc.UnimplementedTokenServiceServer
	n *Node
}

// CreateToken makes a token whose id is the log index in 16 hex digits
// and whose secret is predictable from it: "bxa.<id>.<32 hex digits>" for
// an ACL token, the same with a ".<FakeCAFingerprint>" suffix and the
// prefix "bxj" for a join token.
func (s tokenService) CreateToken(_ context.Context, req *apiv1.CreateTokenRequest) (*apiv1.CreateTokenResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.CreateTokenResponse, error) {
		t := &apiv1.Token{Kind: req.GetKind(), NodeRole: req.GetNodeRole(), AccessRole: req.GetAccessRole(), Description: req.GetDescription()}
		ttl := time.Duration(req.GetTtlSeconds()) * time.Second
		switch {
		case req.GetTtlSeconds() < 0:
			return nil, fieldError(invalid, "ttl_seconds", "must not be negative")
		case len(req.GetDescription()) > maxTokenDescription:
			return nil, fieldError(invalid, "description", "must be at most %d bytes", maxTokenDescription)
		}
		switch req.GetKind() {
		case apiv1.TokenKind_TOKEN_KIND_JOIN:
			if t.NodeRole == apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
				t.NodeRole = apiv1.NodeRole_NODE_ROLE_VOTER
			}
			if t.AccessRole != apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED {
				return nil, fieldError(invalid, "access_role", "a join token has no access role")
			}
			if ttl == 0 {
				ttl = defaultJoinTokenTTL
			}
		case apiv1.TokenKind_TOKEN_KIND_ACL:
			if t.AccessRole == apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED {
				return nil, fieldError(invalid, "access_role", "must be viewer, operator or admin")
			}
			if t.NodeRole != apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
				return nil, fieldError(invalid, "node_role", "an ACL token has no node role")
			}
		default:
			return nil, fieldError(invalid, "kind", "must be join or acl")
		}
		index, nanos := n.tick()
		t.Id = fmt.Sprintf("%016x", index)
		t.CreatedUnixNano = nanos
		if ttl > 0 {
			t.ExpiresUnixNano = nanos + int64(ttl)
		}
		n.tokens[tokenKey{t.Kind, t.Id}] = t
		secret := fmt.Sprintf("bxa.%s.%032x", t.Id, index)
		if t.Kind == apiv1.TokenKind_TOKEN_KIND_JOIN {
			secret = fmt.Sprintf("bxj.%s.%032x.%s", t.Id, index, FakeCAFingerprint)
		}
		return &apiv1.CreateTokenResponse{Secret: secret, Token: proto.CloneOf(t)}, nil
	})
}

// ListTokens lists the tokens of a kind (every kind if unspecified) by
// kind, then id.
func (s tokenService) ListTokens(_ context.Context, req *apiv1.ListTokensRequest) (*apiv1.ListTokensResponse, error) {
	return read(s.n, func() (*apiv1.ListTokensResponse, error) {
		resp := &apiv1.ListTokensResponse{}
		for k, t := range s.n.tokens {
			if req.GetKind() == apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED || k.kind == req.GetKind() {
				resp.Tokens = append(resp.Tokens, proto.CloneOf(t))
			}
		}
		slices.SortFunc(resp.Tokens, func(a, b *apiv1.Token) int {
			if a.GetKind() != b.GetKind() {
				return int(a.GetKind()) - int(b.GetKind())
			}
			return strings.Compare(a.GetId(), b.GetId())
		})
		return resp, nil
	})
}

// RevokeToken deletes a token.
func (s tokenService) RevokeToken(_ context.Context, req *apiv1.RevokeTokenRequest) (*apiv1.RevokeTokenResponse, error) {
	n := s.n
	return write(n, req.GetClientRequestId(), func() (*apiv1.RevokeTokenResponse, error) {
		k := tokenKey{req.GetKind(), req.GetId()}
		t, ok := n.tokens[k]
		if !ok {
			return nil, fieldError(apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, "id", "no such token %s", req.GetId())
		}
		n.tick()
		delete(n.tokens, k)
		return &apiv1.RevokeTokenResponse{Token: t}, nil
	})
}
