// Package server holds Blixard's gRPC API services: ClusterService,
// VmService, TaskService and TokenService, and the guard in front of every
// service of a node's gRPC server (Interceptors): the permission table of
// internal/authz checked against the caller's ACL token or node
// certificate, then the per-client Limits. Security-bearing handlers work
// at the edge, where the secrets are: CreateToken draws a token's secret
// and sends the core only its hash; a secure JoinCluster checks the join
// token and the CSR, and once the join is committed has the certificate
// issued; RotateCa makes the new CA and sends it, its key sealed. Other
// handlers only translate: it wraps the
// request message in an apiv1.Request, hands it to the node through the
// Backend the runtime provides, waits for the core's answer, and turns a
// core error into a gRPC status. The logic — who may accept a write,
// NotLeader with a leader hint, validation, idempotency — is the core's, so
// the simulator exercises it. The one exception is a check no state could
// answer otherwise: DrainNode refuses node id 0 itself.
//
// Error mapping (every error status carries the *apiv1.Error as a detail,
// so clients can read its code, field and leader hint):
//
//	INVALID_ARGUMENT    → codes.InvalidArgument
//	NOT_FOUND           → codes.NotFound
//	ALREADY_EXISTS      → codes.AlreadyExists
//	FAILED_PRECONDITION → codes.FailedPrecondition
//	NOT_LEADER          → codes.FailedPrecondition (leader id and address in the detail)
//	UNAVAILABLE         → codes.Unavailable
//	OUTCOME_UNKNOWN     → codes.Unavailable ("outcome unknown")
//	RESOURCE_EXHAUSTED  → codes.ResourceExhausted
//	UNAUTHENTICATED     → codes.Unauthenticated
//	PERMISSION_DENIED   → codes.PermissionDenied
//
// A caller's deadline or cancellation ends the wait with
// codes.DeadlineExceeded or codes.Canceled; a write already proposed may
// still apply, which a retry with the same client request id resolves.
package server
