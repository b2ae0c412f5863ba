// Package client is the Go client of a Blixard cluster: the public API that
// the blixard command line and users' programs share.
//
// A Client holds a list of node addresses and one gRPC connection per address,
// dialled lazily on first use.
//
// Security: a cluster serves TLS 1.3 with node certificates from its own
// CA, and checks an ACL token on every call. Options.TLS secures the
// connections: a TLS 1.3 config that trusts the cluster's CA (its ca.crt;
// the blixard command line verifies the chain and that the certificate
// names a node, not the host name). Options.Token is sent with every
// call as "authorization: Bearer <token>", and only over TLS: New refuses
// a token without it. A node started with --insecure serves plaintext and
// needs neither; leave both unset.
//
// Each method sends one request message of package apiv1 and returns its
// response message; on the way it:
//
//  1. gives a write (CreateVm, StartVm, StopVm, DeleteVm, SubmitTask,
//     CancelTask, JoinCluster, LeaveCluster, DrainNode, CreateToken,
//     RevokeToken) a client request id when the caller left it empty. The
//     id is made once per call and reused on every attempt, so the cluster
//     applies the write at most once however often it is retried. The
//     caller's message is not modified: a caller that wants to retry across
//     calls sets its own id.
//  2. follows a NotLeader answer (FailedPrecondition carrying an apiv1.Error
//     of code ERROR_CODE_NOT_LEADER and a leader address) by sending the same
//     request to the leader at once;
//  3. on Unavailable (which includes ERROR_CODE_OUTCOME_UNKNOWN), on a
//     connection error or when one attempt runs past Options.Timeout, backs
//     off and tries the next address;
//  4. returns every other error unchanged, as a gRPC status error whose
//     apiv1.Error detail ErrorOf extracts. Unauthenticated (no token, or
//     one the cluster does not know, has revoked or let expire) and
//     PermissionDenied (the token's role does not allow the call) are
//     never retried: every node would say the same.
//
// A call makes at most Options.MaxAttempts attempts (a followed redirect
// counts as one) and stops as soon as its context is done. When it runs out
// of attempts or of time after a retryable failure it returns a *RetryError,
// which wraps the last attempt's error.
//
// The address that last answered, or that a NotLeader answer named, is tried
// first by the next call, so a steady client talks to the leader directly.
//
// A Client is safe for concurrent use. Close it to release its connections.
package client
