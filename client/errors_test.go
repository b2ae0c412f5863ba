package client_test

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/client/clienttest"
)

func TestErrorOf(t *testing.T) {
	detail := &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_INVALID_ARGUMENT, Field: "spec.vcpus", Message: "spec.vcpus: must be between 1 and 1024"}
	withDetail := clienttest.Status(detail)
	tests := []struct {
		name string
		err  error
		want *apiv1.Error
	}{
		{"nil", nil, nil},
		{"status with detail", withDetail, detail},
		{"wrapped status with detail", fmt.Errorf("creating web: %w", withDetail), detail},
		{"retry error", &client.RetryError{Attempts: 2, Addr: "a:1", Err: withDetail}, detail},
		{"status without detail", status.Error(codes.NotFound, "no such thing"),
			&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: "no such thing"}},
		{"unmapped code", status.Error(codes.Internal, "boom"),
			&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED, Message: "boom"}},
		{"plain error", errors.New("broken pipe"),
			&apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_UNSPECIFIED, Message: "broken pipe"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := client.ErrorOf(tc.err); !proto.Equal(got, tc.want) {
				t.Errorf("ErrorOf = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRetryErrorText(t *testing.T) {
	err := &client.RetryError{Attempts: 10, Addr: "10.0.0.1:7001", Err: clienttest.Unavailable("no leader known; retry")}
	want := "gave up after 10 attempts; the last, at 10.0.0.1:7001: no leader known; retry"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	err.Err = status.Error(codes.Unavailable, "connection refused")
	if !strings.HasSuffix(err.Error(), "Unavailable: connection refused") {
		t.Errorf("Error() = %q, want the code and message of a status without detail", err.Error())
	}
}

func TestNewRequestID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for range 100 {
		id := client.NewRequestID()
		if !uuid.MatchString(id) {
			t.Fatalf("NewRequestID() = %q, want a version 4 UUID", id)
		}
		if seen[id] {
			t.Fatalf("NewRequestID() repeated %q", id)
		}
		seen[id] = true
	}
}
