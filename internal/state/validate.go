package state

import (
	"sort"
	"unicode/utf8"

	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Limits on what a command may carry. They bound the memory a record takes
// and the size of a snapshot; each is checked at the edge and again in Apply.
const (
	MaxNameLen          = 63      // VM names, anti-affinity groups: DNS labels
	MaxLabelKeyLen      = 63      // label, constraint and env keys
	MaxLabelValueLen    = 255     // label, constraint and env values
	MaxLabels           = 64      // entries in one label/constraint/env map
	MaxAddressLen       = 255     // a node's host:port
	MaxImageLen         = 255     // an image name
	MaxKernelCmdlineLen = 4096    // bytes of kernel command line
	MaxVcpus            = 1024    // vCPUs of one node, VM or task
	MaxMemoryMiB        = 1 << 24 // 16 TiB: memory of one node, VM or task
	MaxDiskMiB          = 1 << 32 // 4 PiB
	MaxFeatures         = 32      // features of one node or task
	MaxCommandLen       = 4096    // bytes of a task's command
	MaxArgs             = 256     // arguments of a task
	MaxArgLen           = 4096    // bytes of one argument
	MaxOutputTailBytes  = 4096    // bytes of a task's output kept in its result
	MaxReasonLen        = 1024    // bytes of a reason or error text
	MaxClusterIDLen     = 64      // bytes of a cluster id
	MaxClientRequestID  = 128     // bytes of a client request id
)

// validName reports whether s is a DNS label: 1-63 of [a-z0-9-], starting
// and ending with a letter or digit.
func validName(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return false
		}
	}
	return true
}

// checkText checks free text: valid UTF-8 and at most max bytes.
func checkText(field, s string, max int) *Error {
	if !utf8.ValidString(s) {
		return invalid(field, "must be valid UTF-8")
	}
	if len(s) > max {
		return invalid(field, "is %d bytes, at most %d allowed", len(s), max)
	}
	return nil
}

// checkKey checks a label, constraint or env key.
func checkKey(field, k string) *Error {
	if k == "" {
		return invalid(field, "key must not be empty")
	}
	if len(k) > MaxLabelKeyLen {
		return invalid(field, "key %q is longer than %d bytes", k, MaxLabelKeyLen)
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		ok := (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			c == '-' || c == '_' || c == '.' || c == '/'
		if !ok {
			return invalid(field, "key %q may hold only letters, digits and -_./", k)
		}
	}
	return nil
}

// checkMap checks a string map in sorted key order, so that the first error
// reported does not depend on map iteration order.
func checkMap(field string, m map[string]string, keyCheck func(string, string) *Error) *Error {
	if len(m) > MaxLabels {
		return invalid(field, "has %d entries, at most %d allowed", len(m), MaxLabels)
	}
	for _, k := range sortedKeys(m) {
		if err := keyCheck(field, k); err != nil {
			return err
		}
		if err := checkText(field+"["+k+"]", m[k], MaxLabelValueLen); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// knownEnum reports whether v is a value declared by its enum type.
func knownEnum(v protoreflect.Enum) bool {
	return v.Descriptor().Values().ByNumber(v.Number()) != nil
}

// checkEnum rejects values the enum does not declare and, unless
// allowUnspecified, its zero value.
func checkEnum(field string, v protoreflect.Enum, allowUnspecified bool) *Error {
	if !knownEnum(v) {
		return invalid(field, "unknown value %d", v.Number())
	}
	if !allowUnspecified && v.Number() == 0 {
		return invalid(field, "must be set")
	}
	return nil
}

// checkResources checks an amount of machine. Features are sorted and unique.
func checkResources(field string, r *apiv1.Resources) *Error {
	if r == nil {
		return invalid(field, "must be set")
	}
	if r.GetVcpus() == 0 || r.GetVcpus() > MaxVcpus {
		return invalid(field+".vcpus", "must be between 1 and %d", MaxVcpus)
	}
	if r.GetMemoryMib() == 0 || r.GetMemoryMib() > MaxMemoryMiB {
		return invalid(field+".memory_mib", "must be between 1 and %d", MaxMemoryMiB)
	}
	if r.GetDiskMib() > MaxDiskMiB {
		return invalid(field+".disk_mib", "must be at most %d", MaxDiskMiB)
	}
	return checkFeatures(field+".features", r.GetFeatures())
}
