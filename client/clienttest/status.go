package clienttest

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// grpcCodes maps the API's error codes to gRPC codes as the server does.
var grpcCodes = map[apiv1.ErrorCode]codes.Code{
	apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT:    codes.InvalidArgument,
	apiv1.ErrorCode_ERROR_CODE_NOT_FOUND:           codes.NotFound,
	apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS:      codes.AlreadyExists,
	apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION: codes.FailedPrecondition,
	apiv1.ErrorCode_ERROR_CODE_NOT_LEADER:          codes.FailedPrecondition,
	apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE:         codes.Unavailable,
	apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN:     codes.Unavailable,
	apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED:  codes.ResourceExhausted,
	apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:     codes.Unauthenticated,
	apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:   codes.PermissionDenied,
}

// Status returns e as a node sends it: a gRPC status of the matching code,
// with e's message and e itself attached as a detail.
func Status(e *apiv1.Error) error {
	code, ok := grpcCodes[e.GetCode()]
	if !ok {
		code = codes.Unknown
	}
	st, err := status.New(code, e.GetMessage()).WithDetails(e)
	if err != nil {
		panic(fmt.Sprintf("clienttest: attach %v to a status: %v", e, err))
	}
	return st.Err()
}

// NotLeader is the answer of a follower to a write: leaderID at leaderAddr
// is the leader.
func NotLeader(followerID, leaderID uint64, leaderAddr string) error {
	return Status(&apiv1.Error{
		Code:          apiv1.ErrorCode_ERROR_CODE_NOT_LEADER,
		Message:       fmt.Sprintf("node %d is not the leader; node %d is", followerID, leaderID),
		LeaderId:      leaderID,
		LeaderAddress: leaderAddr,
	})
}

// Unavailable is the answer of a node that cannot serve the request now.
func Unavailable(msg string) error {
	return Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE, Message: msg})
}

// OutcomeUnknown is the answer to a write whose fate is unknown because
// leadership changed while it was in flight.
func OutcomeUnknown() error {
	return Status(&apiv1.Error{
		Code:    apiv1.ErrorCode_ERROR_CODE_OUTCOME_UNKNOWN,
		Message: "outcome unknown: leadership changed; retry with the same client request id",
	})
}

// Unauthenticated is the answer of a secure node to a call without a
// token it knows.
func Unauthenticated(msg string) error {
	return Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED, Message: msg})
}

// PermissionDenied is the answer of a secure node to a call its token's
// role does not allow.
func PermissionDenied(msg string) error {
	return Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED, Message: msg})
}

func fieldError(code apiv1.ErrorCode, field, format string, args ...any) error {
	return Status(&apiv1.Error{Code: code, Field: field, Message: field + ": " + fmt.Sprintf(format, args...)})
}
