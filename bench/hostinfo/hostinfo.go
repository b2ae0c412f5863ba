package hostinfo

import (
	"os"
	"strings"
)

// CPUModel is the first "model name" of /proc/cpuinfo, and how many
// processors it lists; "unknown CPU" and 0 when it cannot be read.
func CPUModel() (model string, processors int) {
	model = "unknown CPU"
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return model, 0
	}
	seen := false
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			processors++
		case "model name":
			if !seen {
				model, seen = strings.TrimSpace(v), true
			}
		}
	}
	return model, processors
}

// LoadAvg is the 1-, 5- and 15-minute load averages, or "unknown".
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
