package authz

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/internal/pki"
)

// Token formats. Both start with a prefix that says what they are, then
// the public id (16 hex digits) and the secret (32 hex digits: 128 random
// bits). A join token also carries the SHA-256 fingerprint of the cluster
// CA (64 hex digits), which the joining node checks before it sends
// anything:
//
//	ACL:  bxa.<id>.<secret>
//	join: bxj.<id>.<secret>.<ca-sha256>
const (
	aclPrefix  = "bxa"
	joinPrefix = "bxj"
	idBytes    = 8
	secretLen  = 16
	// MaxTokenLen bounds what is parsed as a token at all.
	MaxTokenLen = 256
)

// ErrMalformedToken is returned for a string that is no token.
var ErrMalformedToken = errors.New("malformed token")

// Secret is a token as its holder has it.
type Secret struct {
	Kind   apiv1.TokenKind
	ID     string
	secret string
	// CA is the pinned CA fingerprint of a join token.
	CA pki.Fingerprint
}

// NewSecret draws a new token of kind; ca is pinned by a join token and
// ignored by an ACL token.
func NewSecret(kind apiv1.TokenKind, ca pki.Fingerprint) (Secret, error) {
	if kind != apiv1.TokenKind_TOKEN_KIND_JOIN && kind != apiv1.TokenKind_TOKEN_KIND_ACL {
		return Secret{}, fmt.Errorf("token kind %v is neither join nor acl", kind)
	}
	var b [idBytes + secretLen]byte
	if _, err := rand.Read(b[:]); err != nil {
		return Secret{}, fmt.Errorf("draw a token: %w", err)
	}
	s := Secret{Kind: kind, ID: hex.EncodeToString(b[:idBytes]), secret: hex.EncodeToString(b[idBytes:])}
	if kind == apiv1.TokenKind_TOKEN_KIND_JOIN {
		s.CA = ca
	}
	return s, nil
}

// String is the whole token, secret included: show it once, to its owner.
func (s Secret) String() string {
	if s.Kind == apiv1.TokenKind_TOKEN_KIND_JOIN {
		return joinPrefix + "." + s.ID + "." + s.secret + "." + hex.EncodeToString(s.CA[:])
	}
	return aclPrefix + "." + s.ID + "." + s.secret
}

// GoString hides the secret from %#v.
func (s Secret) GoString() string { return fmt.Sprintf("authz.Secret{Kind: %v, ID: %q}", s.Kind, s.ID) }

// Hash is the SHA-256 of the secret part: all the cluster keeps.
func (s Secret) Hash() []byte {
	h := sha256.Sum256([]byte(s.secret))
	return h[:]
}

// Record is the state's record of s: its id, kind and hash; the caller
// fills in roles, times and description.
func (s Secret) Record() *apiv1.Token {
	return &apiv1.Token{Id: s.ID, Kind: s.Kind, SecretSha256: s.Hash()}
}

// Matches reports, in constant time, whether s is the token rec records.
func (s Secret) Matches(rec *apiv1.Token) bool {
	if rec == nil || rec.GetKind() != s.Kind || rec.GetId() != s.ID || len(rec.GetSecretSha256()) != sha256.Size {
		return false
	}
	return subtle.ConstantTimeCompare(s.Hash(), rec.GetSecretSha256()) == 1
}

// ParseToken reads a token of either kind. Its errors never repeat the
// input, which may be a secret pasted in the wrong place.
func ParseToken(tok string) (Secret, error) {
	if len(tok) > MaxTokenLen {
		return Secret{}, fmt.Errorf("%w: longer than %d characters", ErrMalformedToken, MaxTokenLen)
	}
	parts := strings.Split(strings.TrimSpace(tok), ".")
	var s Secret
	switch {
	case len(parts) == 3 && parts[0] == aclPrefix:
		s.Kind = apiv1.TokenKind_TOKEN_KIND_ACL
	case len(parts) == 4 && parts[0] == joinPrefix:
		s.Kind = apiv1.TokenKind_TOKEN_KIND_JOIN
		fp, err := hex.DecodeString(parts[3])
		if err != nil || len(fp) != len(s.CA) || !isHex(parts[3], 2*len(s.CA)) {
			return Secret{}, fmt.Errorf("%w: the CA fingerprint is not 64 hex digits", ErrMalformedToken)
		}
		copy(s.CA[:], fp)
	default:
		return Secret{}, fmt.Errorf("%w: not bxa.<id>.<secret> (ACL) or bxj.<id>.<secret>.<ca> (join)", ErrMalformedToken)
	}
	if !ValidTokenID(parts[1]) {
		return Secret{}, fmt.Errorf("%w: the id is not %d hex digits", ErrMalformedToken, 2*idBytes)
	}
	if !isHex(parts[2], 2*secretLen) {
		return Secret{}, fmt.Errorf("%w: the secret is not %d hex digits", ErrMalformedToken, 2*secretLen)
	}
	s.ID, s.secret = parts[1], parts[2]
	return s, nil
}

// ValidTokenID reports whether id has the form of a token id: 16
// lowercase hex digits.
func ValidTokenID(id string) bool { return isHex(id, 2*idBytes) }

func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// RoleOf is the Role of an ACL token's access role.
func RoleOf(r apiv1.AccessRole) Role {
	switch r {
	case apiv1.AccessRole_ACCESS_ROLE_VIEWER:
		return RoleViewer
	case apiv1.AccessRole_ACCESS_ROLE_OPERATOR:
		return RoleOperator
	case apiv1.AccessRole_ACCESS_ROLE_ADMIN:
		return RoleAdmin
	}
	return RoleNone
}

// AccessRole is the API's name of r.
func (r Role) AccessRole() apiv1.AccessRole {
	switch r {
	case RoleViewer:
		return apiv1.AccessRole_ACCESS_ROLE_VIEWER
	case RoleOperator:
		return apiv1.AccessRole_ACCESS_ROLE_OPERATOR
	case RoleAdmin:
		return apiv1.AccessRole_ACCESS_ROLE_ADMIN
	}
	return apiv1.AccessRole_ACCESS_ROLE_UNSPECIFIED
}
