package cli

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/spf13/cobra"

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
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ExitCode(tc.err); got != tc.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
