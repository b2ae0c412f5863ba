package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/client/clienttest"
)

func TestErrorLine(t *testing.T) {
	cmd := &cobra.Command{Use: "blixard"}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"usage", usageErrorf("--memory must be at least 1 (MiB), got 0"),
			"error: --memory must be at least 1 (MiB), got 0 (see 'blixard --help')"},
		{"refusal naming its field", clienttest.Status(&apiv1.Error{
			Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Field: "spec.memory_mib",
			Message: "spec.memory_mib: must be between 1 and 16777216"}),
			"error: spec.memory_mib: must be between 1 and 16777216"},
		{"refusal whose message lacks the field", clienttest.Status(&apiv1.Error{
			Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, Field: "name", Message: `no VM named "web"`}),
			`error: name: no VM named "web"`},
		{"refusal without a message", clienttest.Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_RESOURCE_EXHAUSTED}),
			"error: resource_exhausted"},
		{"interrupted", fmt.Errorf("waiting: %w", context.Canceled), "error: interrupted"},
		{"retries exhausted", &client.RetryError{Attempts: 10, Addr: "10.0.0.1:7001", Err: clienttest.Unavailable("no leader known; retry")},
			"error: gave up after 10 attempts; the last, at 10.0.0.1:7001: no leader known; retry"},
		{"multi-line cobra error", errors.New("unknown command \"stauts\" for \"blixard\"\n\nDid you mean this?\n\tstatus\n"),
			`error: unknown command "stauts" for "blixard" Did you mean this? status (see 'blixard --help')`},
		{"plain", errors.New("task 4 failed: exit code 2"), "error: task 4 failed: exit code 2"},
		{"unauthenticated", clienttest.Unauthenticated("token bxa.1234 is unknown or revoked"),
			"error: not authenticated: token bxa.1234 is unknown or revoked (pass --token or set BLIXARD_TOKEN)"},
		{"unauthenticated with the hint already", clienttest.Unauthenticated("no token: pass --token or set BLIXARD_TOKEN"),
			"error: not authenticated: no token: pass --token or set BLIXARD_TOKEN"},
		{"plaintext client of a TLS node", &client.RetryError{Attempts: 10, Addr: "10.0.0.1:7001",
			Err: status.Error(codes.Unavailable, `connection error: desc = "error reading server preface: EOF"`)},
			`error: gave up after 10 attempts; the last, at 10.0.0.1:7001: Unavailable: connection error: desc = "error reading server preface: EOF" (if the node serves TLS, pass --ca rather than --insecure)`},
		{"unauthenticated without a message", status.Error(codes.Unauthenticated, ""),
			"error: not authenticated (pass --token or set BLIXARD_TOKEN)"},
		{"wrapped unauthenticated", fmt.Errorf("stream the console: %w", status.Error(codes.Unauthenticated, "no token")),
			"error: not authenticated: no token (pass --token or set BLIXARD_TOKEN)"},
		{"permission denied", clienttest.PermissionDenied("permission denied: a viewer may not drain nodes"),
			"error: permission denied: a viewer may not drain nodes (the token's role does not allow this; an admin token can make another with 'blixard acl token create')"},
		{"exit code", &ExitCodeError{Code: 3, Err: errors.New("task 1 exited with code 3")}, "error: task 1 exited with code 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := errorLine(cmd, tc.err); got != tc.want {
				t.Errorf("errorLine = %q\nwant          %q", got, tc.want)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"none", nil, 0},
		{"plain", errors.New("boom"), 1},
		{"usage", usageErrorf("bad flag"), 1},
		{"task's code", &ExitCodeError{Code: 3, Err: errors.New("task 1 exited with code 3")}, 3},
		{"wrapped", fmt.Errorf("run: %w", &ExitCodeError{Code: 42}), 42},
		{"highest", &ExitCodeError{Code: 255}, 255},
		{"zero is still a failure", &ExitCodeError{Code: 0}, 1},
		{"negative", &ExitCodeError{Code: -1}, 1},
		{"beyond a byte", &ExitCodeError{Code: 256}, 1},
		{"unauthenticated", clienttest.Unauthenticated("no token"), ExitUnauthenticated},
		{"wrapped unauthenticated", fmt.Errorf("x: %w", status.Error(codes.Unauthenticated, "no token")), 77},
		{"permission denied", clienttest.PermissionDenied("viewer"), ExitPermissionDenied},
		{"permission denied is 78", status.Error(codes.PermissionDenied, "viewer"), 78},
		{"other refusal", clienttest.Status(&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND}), 1},
		{"retries exhausted", &client.RetryError{Attempts: 2, Addr: "a:1", Err: clienttest.Unavailable("no leader")}, 1},
		{"task's code wins", &ExitCodeError{Code: 3, Err: status.Error(codes.PermissionDenied, "x")}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
