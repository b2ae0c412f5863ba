package state

import (
	"fmt"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Error is a command the state refused. It names the field at fault, as a
// dotted path into the command ("spec.memory_mib"), where one is to blame.
type Error struct {
	Code  apiv1.ErrorCode
	Field string
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Proto returns the error as it travels in a Response.
func (e *Error) Proto() *apiv1.Error {
	return &apiv1.Error{Code: e.Code, Message: e.Error(), Field: e.Field}
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func notFound(field, format string, args ...any) *Error {
	return &Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func exists(field, format string, args ...any) *Error {
	return &Error{Code: apiv1.ErrorCode_ERROR_CODE_ALREADY_EXISTS, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func precondition(field, format string, args ...any) *Error {
	return &Error{Code: apiv1.ErrorCode_ERROR_CODE_FAILED_PRECONDITION, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func exhausted(field, format string, args ...any) *Error {
	return &Error{Code: apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED, Field: field, Msg: fmt.Sprintf(format, args...)}
}
