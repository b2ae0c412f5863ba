package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

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

// ExitCode is the exit status for err, the error Execute returned: 0 for
// nil, an ExitCodeError's code if it is one from 1 to 255, else 1.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ec *ExitCodeError
	if errors.As(err, &ec) && ec.Code >= 1 && ec.Code <= 255 {
		return ec.Code
	}
	return 1
}

// errorLine renders the error of cmd as the one line a user sees:
//   - a usage error, with a pointer to the command's help;
//   - an interruption;
//   - a refusal by the cluster, as the node worded it (field first);
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
		return "error: " + oneLine(err.Error())
	case cobraUsage(err):
		return fmt.Sprintf("error: %s (see '%s --help')", oneLine(err.Error()), cmd.CommandPath())
	}
	e := client.ErrorOf(err)
	msg := e.GetMessage()
	if f := e.GetField(); f != "" && !strings.HasPrefix(msg, f) {
		msg = f + ": " + msg
	}
	if msg == "" {
		msg = strings.ToLower(strings.TrimPrefix(e.GetCode().String(), "ERROR_CODE_"))
	}
	return "error: " + oneLine(msg)
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
