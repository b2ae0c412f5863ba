package client

import (
	"context"

	"google.golang.org/grpc"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// CreateToken makes a join token (req.Kind TOKEN_KIND_JOIN: a new node's
// credential to join and get its certificate) or an ACL token
// (TOKEN_KIND_ACL: an API client's credential, with an access role). The
// response holds the whole token in Secret, shown this once: the cluster
// keeps only a hash. It is a write; it needs an admin token.
func (c *Client) CreateToken(ctx context.Context, req *apiv1.CreateTokenRequest) (*apiv1.CreateTokenResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.CreateTokenResponse, error) {
		return apiv1grpc.NewTokenServiceClient(cc).CreateToken(ctx, req)
	})
}

// ListTokens reads the records of the tokens of req.Kind (every kind if
// unspecified), secrets and hashes left out. It needs an admin token.
func (c *Client) ListTokens(ctx context.Context, req *apiv1.ListTokensRequest) (*apiv1.ListTokensResponse, error) {
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.ListTokensResponse, error) {
		return apiv1grpc.NewTokenServiceClient(cc).ListTokens(ctx, req)
	})
}

// RevokeToken deletes a token by kind and id, so that it stops working.
// The response holds the token's last record. It is a write; it needs an
// admin token.
func (c *Client) RevokeToken(ctx context.Context, req *apiv1.RevokeTokenRequest) (*apiv1.RevokeTokenResponse, error) {
	req = withRequestID(req)
	return call(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*apiv1.RevokeTokenResponse, error) {
		return apiv1grpc.NewTokenServiceClient(cc).RevokeToken(ctx, req)
	})
}
