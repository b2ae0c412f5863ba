package client

import "context"

// bearer is an ACL token as per-call credentials: every call, unary or
// streaming, carries it as the metadata "authorization: Bearer <token>".
type bearer string

// GetRequestMetadata returns the authorization header.
func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

// RequireTransportSecurity is true: gRPC refuses to send the token over a
// connection without TLS, so a misconfigured dial option cannot leak it.
func (bearer) RequireTransportSecurity() bool { return true }

// String hides the token from %v.
func (bearer) String() string { return "bearer(***)" }

// GoString hides the token from %#v.
func (b bearer) GoString() string { return b.String() }
