//go:build !amd64

package image

import (
	"fmt"
	"runtime"
)

func measureTSCKHz() (uint64, error) {
	return 0, fmt.Errorf("measure the TSC frequency: not on %s", runtime.GOARCH)
}
