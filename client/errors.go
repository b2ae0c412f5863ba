package client

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// RetryError reports a call that failed after retrying: it ran out of
// attempts, or its context ended, after retryable failures. For a write the
// outcome is unknown; retrying it with the same client request id is safe.
type RetryError struct {
	// Attempts that failed, redirects included; one cut short by the
	// context is not counted.
	Attempts int
	// Addr is the address of the last failed attempt.
	Addr string
	// Err is the last failed attempt's error (a gRPC status error).
	Err error
	// Context is the context's error if it ended the call, else nil.
	Context error
}

func (e *RetryError) Error() string {
	what := fmt.Sprintf("gave up after %d attempts", e.Attempts)
	if e.Context != nil {
		what = fmt.Sprintf("%v after %d attempts", e.Context, e.Attempts)
	}
	return fmt.Sprintf("%s; the last, at %s: %s", what, e.Addr, describe(e.Err))
}

// Unwrap returns the context's error, if any, and the last attempt's error,
// so that errors.Is(err, context.DeadlineExceeded) and ErrorOf both work.
func (e *RetryError) Unwrap() []error {
	if e.Context != nil {
		return []error{e.Context, e.Err}
	}
	return []error{e.Err}
}

// ErrorOf returns the apiv1.Error that err carries: the detail a node
// attached to its gRPC status, or else one built from the status's code and
// message. An error that holds no gRPC status yields ERROR_CODE_UNSPECIFIED
// with err's text. ErrorOf(nil) is nil. The result is the caller's to keep.
//
// It looks through wrapping (fmt.Errorf's %w, RetryError).
func ErrorOf(err error) *apiv1.Error {
	if err == nil {
		return nil
	}
	st, ok := statusOf(err)
	if !ok {
		return &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED, Message: err.Error()}
	}
	if e := detailOf(st); e != nil {
		return proto.CloneOf(e)
	}
	return &apiv1.Error{Code: codeOf(st.Code()), Message: st.Message()}
}

// statusOf finds the first gRPC status in err's chain, unchanged (unlike
// status.FromError, which rewrites the message of a wrapped status).
func statusOf(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return nil, false
	}
	st := se.GRPCStatus()
	return st, st != nil
}

// detailOf returns the apiv1.Error attached to st, or nil.
func detailOf(st *status.Status) *apiv1.Error {
	for _, d := range st.Details() {
		if e, ok := d.(*apiv1.Error); ok {
			return e
		}
	}
	return nil
}

// codeOf maps a gRPC code to the API's, the reverse of the server's mapping.
func codeOf(c codes.Code) apiv1.ErrorCode {
	switch c {
	case codes.InvalidArgument:
		return apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT
	case codes.NotFound:
		return apiv1.ErrorCode_ERROR_CODE_NOT_FOUND
	case codes.AlreadyExists:
		return apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS
	case codes.FailedPrecondition:
		return apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION
	case codes.Unavailable:
		return apiv1.ErrorCode_ERROR_CODE_UNAVAILABLE
	case codes.ResourceExhausted:
		return apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED
	case codes.Unauthenticated:
		return apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED
	case codes.PermissionDenied:
		return apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED
	}
	return apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED
}

// describe renders an attempt's error for people: the node's message, or
// the gRPC code and message of a status without a detail.
func describe(err error) string {
	st, ok := statusOf(err)
	if !ok {
		return err.Error()
	}
	if e := detailOf(st); e != nil && e.GetMessage() != "" {
		return e.GetMessage()
	}
	return st.Code().String() + ": " + st.Message()
}
