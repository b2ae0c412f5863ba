package state

import (
	"crypto/sha256"
	"slices"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Token limits.
const (
	// MaxTokens bounds the records of each kind of token.
	MaxTokens = 1000
	// MaxTokenDescription bounds a token's description, in bytes.
	MaxTokenDescription = 256
	// tokenIDLen is the length of a token id: 16 lowercase hex digits.
	tokenIDLen = 16
)

// tokenKey files a token by kind and id.
type tokenKey struct {
	kind apiv1.TokenKind
	id   string
}

// Secure reports whether joins need a join token: the cluster was
// bootstrapped with TLS.
func (s *State) Secure() bool { return s.secure }

// SecurityVersion changes whenever a token is created or revoked or the
// membership changes: what a node's access checks are built from. It is a
// local counter, not part of the replicated state.
func (s *State) SecurityVersion() uint64 { return s.secVersion }

// Token returns a copy of a token's record, hash included.
func (s *State) Token(kind apiv1.TokenKind, id string) (*apiv1.Token, bool) {
	t, ok := s.tokens[tokenKey{kind, id}]
	if !ok {
		return nil, false
	}
	return proto.CloneOf(t), true
}

// Tokens returns copies of every token record of kind (every kind if
// unspecified), hashes included, sorted by kind and id.
func (s *State) Tokens(kind apiv1.TokenKind) []*apiv1.Token {
	var out []*apiv1.Token
	for k, t := range s.tokens {
		if kind == apiv1.TokenKind_TOKEN_KIND_UNSPECIFIED || k.kind == kind {
			out = append(out, proto.CloneOf(t))
		}
	}
	slices.SortFunc(out, compareTokens)
	return out
}

func compareTokens(a, b *apiv1.Token) int {
	if a.GetKind() != b.GetKind() {
		return int(a.GetKind()) - int(b.GetKind())
	}
	switch {
	case a.GetId() < b.GetId():
		return -1
	case a.GetId() > b.GetId():
		return 1
	}
	return 0
}

// checkToken checks a token record as CreateToken or InitCluster carries it.
func checkToken(field string, t *apiv1.Token) *Error {
	if t == nil {
		return invalid(field, "must be set")
	}
	if !validTokenID(t.GetId()) {
		return invalid(field+".id", "must be %d lowercase hex digits", tokenIDLen)
	}
	if len(t.GetSecretSha256()) != sha256.Size {
		return invalid(field+".secret_sha256", "must be %d bytes", sha256.Size)
	}
	if err := checkText(field+".description", t.GetDescription(), MaxTokenDescription); err != nil {
		return err
	}
	if t.GetCreatedUnixNano() < 0 || t.GetExpiresUnixNano() < 0 {
		return invalid(field, "times must not be negative")
	}
	if t.GetExpiresUnixNano() != 0 && t.GetExpiresUnixNano() <= t.GetCreatedUnixNano() {
		return invalid(field+".expires_unix_nano", "must be after created_unix_nano")
	}
	switch t.GetKind() {
	case apiv1.TokenKind_TOKEN_KIND_JOIN:
		switch t.GetNodeRole() {
		case apiv1.NodeRole_NODE_ROLE_VOTER, apiv1.NodeRole_NODE_ROLE_WORKER:
		default:
			return invalid(field+".node_role", "must be voter or worker")
		}
		if t.GetAccessRole() != apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED {
			return invalid(field+".access_role", "a join token has no access role")
		}
		if t.GetExpiresUnixNano() == 0 {
			return invalid(field+".expires_unix_nano", "a join token must expire")
		}
	case apiv1.TokenKind_TOKEN_KIND_ACL:
		switch t.GetAccessRole() {
		case apiv1.AccessRole_ACCESS_ROLE_VIEWER, apiv1.AccessRole_ACCESS_ROLE_OPERATOR, apiv1.AccessRole_ACCESS_ROLE_ADMIN:
		default:
			return invalid(field+".access_role", "must be viewer, operator or admin")
		}
		if t.GetNodeRole() != apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
			return invalid(field+".node_role", "an ACL token has no node role")
		}
	default:
		return invalid(field+".kind", "must be join or acl")
	}
	return nil
}

func validTokenID(id string) bool {
	if len(id) != tokenIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (s *State) checkCreateToken(op *apiv1.CreateTokenCommand) *Error {
	t := op.GetToken()
	if err := checkToken("token", t); err != nil {
		return err
	}
	if _, dup := s.tokens[tokenKey{t.GetKind(), t.GetId()}]; dup {
		return exists("token.id", "a token with id %s exists", t.GetId())
	}
	n := 0
	for k := range s.tokens {
		if k.kind == t.GetKind() {
			n++
		}
	}
	if n >= MaxTokens {
		return exhausted("token", "the cluster holds %d tokens of this kind, the most it keeps; revoke some", n)
	}
	return nil
}

func (s *State) createToken(op *apiv1.CreateTokenCommand) *apiv1.Response {
	t := proto.CloneOf(op.GetToken())
	s.tokens[tokenKey{t.GetKind(), t.GetId()}] = t
	s.secVersion++
	return &apiv1.Response{Kind: &apiv1.Response_CreateToken{CreateToken: &apiv1.CreateTokenResponse{Token: PublicToken(t)}}}
}

func (s *State) checkRevokeToken(op *apiv1.RevokeTokenCommand) *Error {
	if !validTokenID(op.GetId()) {
		return invalid("id", "must be %d lowercase hex digits", tokenIDLen)
	}
	if _, ok := s.tokens[tokenKey{op.GetKind(), op.GetId()}]; !ok {
		return notFound("id", "no %s token with id %s", kindName(op.GetKind()), op.GetId())
	}
	return nil
}

func (s *State) revokeToken(op *apiv1.RevokeTokenCommand) *apiv1.Response {
	k := tokenKey{op.GetKind(), op.GetId()}
	t := s.tokens[k]
	delete(s.tokens, k)
	s.secVersion++
	return &apiv1.Response{Kind: &apiv1.Response_RevokeToken{RevokeToken: &apiv1.RevokeTokenResponse{Token: PublicToken(t)}}}
}

// PublicToken is a token's record without its hash: what API responses carry.
func PublicToken(t *apiv1.Token) *apiv1.Token {
	out := proto.CloneOf(t)
	out.SecretSha256 = nil
	return out
}

func kindName(k apiv1.TokenKind) string {
	switch k {
	case apiv1.TokenKind_TOKEN_KIND_JOIN:
		return "join"
	case apiv1.TokenKind_TOKEN_KIND_ACL:
		return "ACL"
	}
	return "such"
}

// checkJoinToken is the state's half of a join's token check: in a secure
// cluster the token the API node checked must still exist, must not have
// expired by the proposer's clock (nanos), and must allow the role.
func (s *State) checkJoinToken(join *apiv1.RegisterNodeCommand, nanos int64) *Error {
	if !s.secure {
		return nil
	}
	id := join.GetJoinTokenId()
	if id == "" {
		return precondition("join_token_id", "this cluster admits nodes only with a join token")
	}
	t, ok := s.tokens[tokenKey{apiv1.TokenKind_TOKEN_KIND_JOIN, id}]
	if !ok {
		return precondition("join_token_id", "join token %s was revoked or never existed", id)
	}
	if exp := t.GetExpiresUnixNano(); exp != 0 && nanos >= exp {
		return precondition("join_token_id", "join token %s has expired", id)
	}
	if t.GetNodeRole() == apiv1.NodeRole_NODE_ROLE_WORKER && join.GetRole() != apiv1.NodeRole_NODE_ROLE_WORKER {
		return precondition("role", "join token %s admits workers only", id)
	}
	return nil
}
