package server

import (
	"context"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/authz"
)

// Token lifetimes.
const (
	// DefaultJoinTokenTTL is a join token's lifetime when none is asked for.
	DefaultJoinTokenTTL = time.Hour
	// MaxTokenTTL bounds any token's lifetime.
	MaxTokenTTL = 365 * 24 * time.Hour
)

type tokenService struct {
	apiv1grpc.UnsafeTokenServiceServer
	b   Backend
	sec Security
	now func() time.Time
}

// CreateToken draws the token's secret here, at the edge: the core, the
// log and the state see only its hash, and the secret goes back to the
// caller this once.
func (s *tokenService) CreateToken(ctx context.Context, r *apiv1.CreateTokenRequest) (*apiv1.CreateTokenResponse, error) {
	if s.sec == nil {
		return nil, insecureRefusal()
	}
	rec, err := newTokenRecord(r, s.now())
	if err != nil {
		return nil, err
	}
	secret, serr := authz.NewSecret(r.GetKind(), s.sec.CAFingerprint())
	if serr != nil {
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Message: serr.Error()})
	}
	rec.Id, rec.SecretSha256 = secret.ID, secret.Hash()
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_CreateToken{CreateToken: &apiv1.CreateTokenCommand{
		ClientRequestId: r.GetClientRequestId(), Token: rec}}})
	if err != nil {
		return nil, err
	}
	out := resp.GetCreateToken()
	if out == nil {
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			Message: "client_request_id was used by another request"})
	}
	if out.GetToken().GetId() != secret.ID {
		// A retry of a request that an earlier attempt carried out, with a
		// secret this attempt never saw.
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
			Message: "an earlier attempt of this request created token " + out.GetToken().GetId() +
				" but its secret was lost on the way: revoke it and create another"})
	}
	out.Secret = secret.String()
	return out, nil
}

// newTokenRecord checks a CreateTokenRequest and makes the record it asks
// for, less its id and hash.
func newTokenRecord(r *apiv1.CreateTokenRequest, now time.Time) (*apiv1.Token, error) {
	ttl := time.Duration(r.GetTtlSeconds()) * time.Second
	if r.GetTtlSeconds() < 0 || ttl > MaxTokenTTL || r.GetTtlSeconds() > int64(MaxTokenTTL/time.Second) {
		return nil, invalidField("ttl_seconds", "must be between 0 and %d (a year)", int64(MaxTokenTTL/time.Second))
	}
	rec := &apiv1.Token{Kind: r.GetKind(), CreatedUnixNano: now.UnixNano(), Description: r.GetDescription()}
	switch r.GetKind() {
	case apiv1.TokenKind_TOKEN_KIND_JOIN:
		rec.NodeRole = r.GetNodeRole()
		if rec.NodeRole == apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
			rec.NodeRole = apiv1.NodeRole_NODE_ROLE_VOTER
		}
		if r.GetAccessRole() != apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED {
			return nil, invalidField("access_role", "a join token has no access role")
		}
		if ttl == 0 {
			ttl = DefaultJoinTokenTTL
		}
	case apiv1.TokenKind_TOKEN_KIND_ACL:
		rec.AccessRole = r.GetAccessRole()
		if rec.AccessRole == apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED {
			return nil, invalidField("access_role", "must be viewer, operator or admin")
		}
		if r.GetNodeRole() != apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
			return nil, invalidField("node_role", "an ACL token has no node role")
		}
	default:
		return nil, invalidField("kind", "must be join or acl")
	}
	if ttl > 0 {
		rec.ExpiresUnixNano = now.Add(ttl).UnixNano()
	}
	return rec, nil
}

func (s *tokenService) ListTokens(ctx context.Context, r *apiv1.ListTokensRequest) (*apiv1.ListTokensResponse, error) {
	if s.sec == nil {
		return nil, insecureRefusal()
	}
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_ListTokens{ListTokens: r}})
	return resp.GetListTokens(), err
}

func (s *tokenService) RevokeToken(ctx context.Context, r *apiv1.RevokeTokenRequest) (*apiv1.RevokeTokenResponse, error) {
	if s.sec == nil {
		return nil, insecureRefusal()
	}
	if !authz.ValidTokenID(r.GetId()) {
		return nil, invalidField("id", "must be a token id: 16 lowercase hex digits")
	}
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_RevokeToken{RevokeToken: r}})
	return resp.GetRevokeToken(), err
}

func insecureRefusal() error {
	return StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION,
		Message: "this node runs with --insecure: it has no tokens and checks none"})
}

// CA rotation bounds.
const (
	// DefaultCAOverlap is each phase of a CA rotation when none is asked for.
	DefaultCAOverlap = time.Hour
	// MinCAOverlap and MaxCAOverlap bound a rotation's phases.
	MinCAOverlap = 5 * time.Second
	MaxCAOverlap = 7 * 24 * time.Hour
)

// RotateCa starts a CA rotation: this node (a voter) makes the new CA and
// seals its key with the current one, so that only voters can open it
// from the log.
func (s *clusterService) RotateCa(ctx context.Context, r *apiv1.RotateCaRequest) (*apiv1.RotateCaResponse, error) {
	if s.sec == nil {
		return nil, insecureRefusal()
	}
	overlap := DefaultCAOverlap
	if r.GetOverlapSeconds() != 0 {
		if r.GetOverlapSeconds() < int64(MinCAOverlap/time.Second) || r.GetOverlapSeconds() > int64(MaxCAOverlap/time.Second) {
			return nil, invalidField("overlap_seconds", "must be between %d and %d", int64(MinCAOverlap/time.Second), int64(MaxCAOverlap/time.Second))
		}
		overlap = time.Duration(r.GetOverlapSeconds()) * time.Second
	}
	cert, sealed, err := s.sec.RotateCA()
	if err != nil {
		return nil, StatusOf(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Message: err.Error()})
	}
	resp, err := do(ctx, s.b, &apiv1.Request{Kind: &apiv1.Request_RotateCa{RotateCa: &apiv1.RotateCaCommand{
		ClientRequestId: r.GetClientRequestId(), ToPhase: apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST,
		NewCertificate: cert, SealedKey: sealed, OverlapNanos: int64(overlap)}}})
	return resp.GetRotateCa(), err
}
