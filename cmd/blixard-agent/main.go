// Command blixard-agent is the init process (PID 1) of a Blixard guest's
// initramfs: see package internal/guest. Build it static and small:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o bin/blixard-agent ./cmd/blixard-agent
package main

import "github.com/blixard/blixard/internal/guest"

func main() {
	guest.Main()
}
