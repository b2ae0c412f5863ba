package runtime

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/blixard/blixard/internal/pki"
)

// TestHealthAndReflectionWithoutToken: the standard health service says
// SERVING for the node and each API service once the node has a leader,
// NotFound for a service it does not serve, and reflection lists the
// services — all over TLS with no token, as probes and grpcurl call them.
func TestHealthAndReflectionWithoutToken(t *testing.T) {
	dir := t.TempDir()
	conn, stop := startNode(t, dir)
	defer stop()
	bundle, err := pki.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	bare, err := grpc.NewClient(conn.Target(), grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientOnlyTLS(bundle.Pool()))))
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := healthpb.NewHealthClient(bare)
	for _, svc := range healthServices {
		eventually(t, "health of "+svc, func() error {
			resp, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				return err
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return status.Errorf(codes.Unavailable, "%q is %v", svc, resp.GetStatus())
			}
			return nil
		})
	}
	if _, err := h.Check(ctx, &healthpb.HealthCheckRequest{Service: "no.such.Service"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health of an unknown service: %v, want NotFound", err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(bare).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection without a token: %v", err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"blixard.v1.VmService", "blixard.v1.ClusterService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, without %s", names, want)
		}
	}
}
