// Command blixard is the single Blixard binary. Everything it does lives in
// internal/cli; main only turns an error into exit status 1.
package main

import (
	"os"

	"github.com/blixard/blixard/internal/cli"
)

func main() {
	// The command has already printed the error; the exit status says it failed.
	if err := cli.Execute(); err != nil {
		os.Exit(1)
	}
}
