package cli

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// What the token commands of "cluster token" (join tokens) and "acl token"
// (ACL tokens) share. A token is "<prefix>.<id>.<secret>[.<ca>]"; the
// cluster keeps only a hash of the secret, so create prints the whole
// token once and list and revoke deal in ids.

// maxTokenTTL bounds --ttl: a year.
const maxTokenTTL = 8760 * time.Hour

// timeNow is the clock that tells whether a listed token has expired (a
// variable for tests).
var timeNow = time.Now

// tokenKind is one kind of token as the command line names it.
type tokenKind struct {
	kind   apiv1.TokenKind
	noun   string // "join token"
	prefix string // of the whole token: "bxj"
	// group is the command that manages it: "cluster token".
	group string
}

var (
	joinTokens = tokenKind{apiv1.TokenKind_TOKEN_KIND_JOIN, "join token", "bxj", "cluster token"}
	aclTokens  = tokenKind{apiv1.TokenKind_TOKEN_KIND_ACL, "ACL token", "bxa", "acl token"}
)

// ttlSeconds checks --ttl and returns it in whole seconds, rounded up. Zero
// is allowed (never expires) only if zeroOK.
func ttlSeconds(ttl time.Duration, zeroOK bool) (int64, error) {
	switch {
	case ttl == 0 && zeroOK:
		return 0, nil
	case ttl <= 0 || ttl > maxTokenTTL:
		lowest := "more than 0"
		if zeroOK {
			lowest = "0 (never expires) or more"
		}
		return 0, usageErrorf("--ttl must be %s and at most 8760h (a year), got %s", lowest, ttl)
	}
	return int64((ttl + time.Second - 1) / time.Second), nil
}

// tokenID returns the token id arg names: the id itself (16 hex digits),
// or a whole token of kind k, whose id it takes.
func (k tokenKind) tokenID(arg string) (string, error) {
	id := strings.ToLower(arg)
	if prefix, rest, ok := strings.Cut(arg, "."); ok {
		switch {
		case prefix == k.prefix:
			id, _, _ = strings.Cut(rest, ".")
		case prefix == joinTokens.prefix || prefix == aclTokens.prefix:
			other := joinTokens
			if prefix == aclTokens.prefix {
				other = aclTokens
			}
			return "", usageErrorf("that is a whole %s: 'blixard %s revoke' revokes it", other.noun, other.group)
		default:
			return "", usageErrorf("%s id %q is not 16 hex digits", k.noun, truncate(arg, 20))
		}
	}
	if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", usageErrorf("%s id %q is not 16 hex digits", k.noun, truncate(id, 20))
	}
	return id, nil
}

// roleText shows a token's role: the node role of a join token, the
// access role of an ACL token.
func roleText(t *apiv1.Token) string {
	if t.GetKind() == apiv1.TokenKind_TOKEN_KIND_JOIN {
		return enumText(t.GetNodeRole())
	}
	return enumText(t.GetAccessRole())
}

// expiresText shows when a token expires: a time, "never", or "expired"
// once it has passed.
func expiresText(t *apiv1.Token, now time.Time) string {
	switch exp := t.GetExpiresUnixNano(); {
	case exp == 0:
		return "never"
	case exp <= now.UnixNano():
		return "expired"
	default:
		return timeText(exp)
	}
}

// runTokenCreate sends req and prints the new token: in table mode the
// whole token alone on stdout (so that $(blixard ... create) is the
// token) and a note on stderr; with -o json the CreateTokenResponse, and
// the note too.
func runTokenCreate(g *globalFlags, cmd *cobra.Command, k tokenKind, req *apiv1.CreateTokenRequest) error {
	s, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer s.close()
	req.Kind = k.kind
	resp, err := s.client.CreateToken(s.ctx, req)
	if err != nil {
		return err
	}
	if resp.GetSecret() == "" {
		return fmt.Errorf("the cluster made %s %s but sent no secret", k.noun, resp.GetToken().GetId())
	}
	if s.json {
		err = printJSON(s.out, resp)
	} else {
		_, err = fmt.Fprintln(s.out, resp.GetSecret())
	}
	if err != nil {
		return err
	}
	t := resp.GetToken()
	expires := "never expires"
	if t.GetExpiresUnixNano() != 0 {
		expires = "expires " + timeText(t.GetExpiresUnixNano())
	}
	fmt.Fprintf(s.errOut, "created %s %s: role %s, %s; it is shown only this once\n", k.noun, t.GetId(), roleText(t), expires)
	if k.kind == apiv1.TokenKind_TOKEN_KIND_JOIN {
		fmt.Fprintln(s.errOut, "a new node joins with: blixard node --id N --join ADDR --join-token TOKEN")
	} else {
		fmt.Fprintln(s.errOut, "a client uses it with --token TOKEN or: export "+tokenEnv+"=TOKEN")
	}
	return nil
}

// runTokenList lists the tokens of kind k.
func runTokenList(g *globalFlags, cmd *cobra.Command, k tokenKind) error {
	s, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer s.close()
	resp, err := s.client.ListTokens(s.ctx, &apiv1.ListTokensRequest{Kind: k.kind})
	if err != nil {
		return err
	}
	if !s.json && len(resp.GetTokens()) == 0 {
		_, err := fmt.Fprintf(s.errOut, "no %ss\n", k.noun)
		return err
	}
	now := timeNow()
	return s.emit(resp, func(w io.Writer) {
		row(w, "ID", "ROLE", "CREATED", "EXPIRES", "DESCRIPTION")
		for _, t := range resp.GetTokens() {
			row(w, t.GetId(), roleText(t), timeText(t.GetCreatedUnixNano()), expiresText(t, now), truncate(orDash(t.GetDescription()), 60))
		}
	})
}

// runTokenRevoke revokes the token of kind k that arg names.
func runTokenRevoke(g *globalFlags, cmd *cobra.Command, k tokenKind, arg string) error {
	id, err := k.tokenID(arg)
	if err != nil {
		return err
	}
	s, err := g.open(cmd)
	if err != nil {
		return err
	}
	defer s.close()
	resp, err := s.client.RevokeToken(s.ctx, &apiv1.RevokeTokenRequest{Kind: k.kind, Id: id})
	if err != nil {
		return err
	}
	if s.json {
		return printJSON(s.out, resp)
	}
	_, err = fmt.Fprintf(s.out, "%s %s revoked\n", k.noun, id)
	return err
}
