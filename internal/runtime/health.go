package runtime

import (
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthServices are the names the standard health service answers for:
// the whole node ("") and each API service. All share one status: SERVING
// while the node knows a leader and its store works, NOT_SERVING otherwise
// (no leader, removed, stopping).
var healthServices = []string{
	"",
	"blixard.v1.ClusterService",
	"blixard.v1.VmService",
	"blixard.v1.TaskService",
	"blixard.v1.TokenService",
}

func newHealth() *health.Server {
	h := health.NewServer()
	for _, s := range healthServices {
		h.SetServingStatus(s, healthpb.HealthCheckResponse_NOT_SERVING)
	}
	return h
}

// setServing publishes whether the node serves. Called by the owner
// goroutine when the leader it knows changes.
func (n *Node) setServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, s := range healthServices {
		n.health.SetServingStatus(s, st)
	}
}
