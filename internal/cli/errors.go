package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
)

// usageError is a command line that cannot work: a bad flag value, a missing
// argument. It is found before any request is sent.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return usageError{fmt.Sprintf(format, args...)}
}

// ExitCodeError ends the process with exit status Code instead of 1, after
// Err is printed as any failure is (Execute prints it; main exits with
// ExitCode). A task's own exit code reaches the shell this way.
type ExitCodeError struct {
	Code int
	Err  error
}

func (e *ExitCodeError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitCodeError) Unwrap() error { return e.Err }

// Exit statuses besides a task's own (ExitCodeError). They are taken from
// the BSD sysexits range, which commands rarely use for anything else; a
// task run with "task submit --wait" may still exit with any of them.
const (
	// ExitFailure: any other failure, usage errors included.
	ExitFailure = 1
	// ExitUnauthenticated: the cluster did not accept the credentials: no
	// token, or one it does not know, has revoked or let expire.
	ExitUnauthenticated = 77
	// ExitPermissionDenied: the token is valid but its role does not allow
	// the request.
	ExitPermissionDenied = 78
)

// ExitCode is the exit status for err, the error Execute returned: 0 for
// nil; an ExitCodeError's code if it is one from 1 to 255;
// ExitUnauthenticated or ExitPermissionDenied for a cluster's refusal of
// the credentials; else ExitFailure.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec *ExitCodeError
	if errors.As(err, &ec) && ec.Code >= 1 && ec.Code <= 255 {
		return ec.Code
	}
	switch refusal(err) {
	case apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		return ExitUnauthenticated
	case apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
		return ExitPermissionDenied
	}
	return ExitFailure
}

// refusal returns the code of a cluster's refusal of the credentials
// (UNAUTHENTICATED or PERMISSION_DENIED), else UNSPECIFIED. Only the gRPC
// code counts: it is what the client declines to retry.
func refusal(err error) apiv1.ErrorCode {
	var re *client.RetryError
	if errors.As(err, &re) {
		return apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED
	}
	switch status.Code(err) {
	case codes.Unauthenticated:
		return apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED
	case codes.PermissionDenied:
		return apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED
	}
	return apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED
}

// Hints that follow a refusal of the credentials, and a failed TLS
// handshake.
const (
	unauthenticatedHint  = "pass --token or set " + tokenEnv
	permissionDeniedHint = "the token's role does not allow this; an admin token can make another with 'blixard acl token create'"
	handshakeHint        = "is --ca this cluster's CA? a node started with --insecure needs --insecure"
	prefaceHint          = "if the node serves TLS, pass --ca rather than --insecure"
)

// errorLine renders the error of cmd as the one line a user sees:
//   - a usage error, with a pointer to the command's help;
//   - an interruption;
//   - a refusal by the cluster, as the node worded it (field first), and
//     for refused credentials a hint of what to do;
//   - anything else, as it is.
func errorLine(cmd *cobra.Command, err error) string {
	var ue usageError
	var re *client.RetryError
	switch {
	case errors.As(err, &ue):
		return fmt.Sprintf("error: %s (see '%s --help')", ue.msg, cmd.CommandPath())
	case errors.Is(err, context.Canceled):
		return "error: interrupted"
	case errors.As(err, &re):
		line := "error: " + oneLine(err.Error())
		switch {
		case strings.Contains(line, "authentication handshake failed"):
			line += " (" + handshakeHint + ")"
		case strings.Contains(line, "error reading server preface"):
			line += " (" + prefaceHint + ")"
		}
		return line
	case cobraUsage(err):
		return fmt.Sprintf("error: %s (see '%s --help')", oneLine(err.Error()), cmd.CommandPath())
	}
	e := client.ErrorOf(err)
	msg := e.GetMessage()
	if f := e.GetField(); f != "" && !strings.HasPrefix(msg, f) {
		msg = f + ": " + msg
	}
	switch refusal(err) {
	case apiv1.ErrorCode_ERROR_CODE_UNAUTHENTICATED:
		msg = refusalText("not authenticated", msg, "unauthenticated")
		if !strings.Contains(msg, "--token") { // the node's own words may say it
			msg += " (" + unauthenticatedHint + ")"
		}
	case apiv1.ErrorCode_ERROR_CODE_PERMISSION_DENIED:
		msg = refusalText("permission denied", msg, "permission") + " (" + permissionDeniedHint + ")"
	}
	if msg == "" {
		msg = strings.ToLower(strings.TrimPrefix(e.GetCode().String(), "ERROR_CODE_"))
	}
	return "error: " + oneLine(msg)
}

// refusalText words a refusal of the credentials: the node's message msg
// after what, unless msg already starts with what or with word.
func refusalText(what, msg, word string) string {
	lower := strings.ToLower(msg)
	switch {
	case msg == "":
		return what
	case strings.HasPrefix(lower, what) || strings.HasPrefix(lower, word):
		return msg
	}
	return what + ": " + msg
}

// oneLine joins the non-empty lines of s with spaces.
func oneLine(s string) string {
	var parts []string
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return strings.Join(parts, " ")
}

// cobraUsage reports whether err is one of cobra's own usage errors, which
// come as plain errors: a command that does not exist, a required flag that
// is missing.
func cobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "required flag(s) ")
}
