// Command blixard is the single Blixard binary. Everything it does lives in
// internal/cli; main only turns an error into an exit status: the one a
// cli.ExitCodeError asks for (a task's own exit code), 77 for refused
// credentials, 78 for a role that does not allow the request, else 1.
package main

import (
	"os"

	"github.com/blixard/blixard/internal/cli"
)

func main() {
	// The command has already printed the error; the exit status says it failed.
	if err := cli.Execute(); err != nil {
		os.Exit(cli.ExitCode(err))
	}
}
