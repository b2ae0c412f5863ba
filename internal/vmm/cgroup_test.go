package vmm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCgroupPaths(t *testing.T) {
	proc := "12:pids:/user.slice\n4:memory:/process_api/abc\n1:cpu,cpuacct:/svc\n0::/unified/x\n"
	tests := []struct {
		controller, want string
	}{{"memory", "/process_api/abc"}, {"cpu", "/svc"}, {"cpuacct", "/svc"}, {"pids", "/user.slice"}}
	for _, tt := range tests {
		got, err := cgroupPathV1([]byte(proc), tt.controller)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.controller, got, err, tt.want)
		}
	}
	if _, err := cgroupPathV1([]byte(proc), "blkio"); err == nil {
		t.Error("found a blkio cgroup that is not there")
	}
	if p, ok := cgroupPathV2([]byte(proc)); !ok || p != "/unified/x" {
		t.Errorf("v2 path %q %v", p, ok)
	}
	for in, want := range map[string]int64{"max": -1, "100000": 100000} {
		if got, err := parseCgroupInt(in); err != nil || got != want {
			t.Errorf("parseCgroupInt(%q) = %d, %v", in, got, err)
		}
	}
}

// Under a fake v2 root, the VM's cgroup gets cpu.max and memory.max and the
// controllers are enabled down the path.
func TestMakeCgroupsV2(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte("cpuset cpu io memory pids\n"), 0o644)
	spec := Spec{Name: "web-1", Vcpus: 2, MemoryMiB: 256}
	cg := makeCgroups(root, "0a1b2c3d-web-1", spec)
	dir := filepath.Join(root, "blixard", "0a1b2c3d-web-1")
	if cg.limits.Cgroup != "v2" || len(cg.limits.Dirs) != 1 || cg.limits.Dirs[0] != dir || cg.limits.Warning != "" {
		t.Fatalf("limits %+v", cg.limits)
	}
	read := func(p string) string {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if got := read(filepath.Join(dir, "cpu.max")); got != "200000 100000" {
		t.Errorf("cpu.max %q", got)
	}
	if got := read(filepath.Join(dir, "memory.max")); got != "402653184" {
		t.Errorf("memory.max %q, want (256+128) MiB", got)
	}
	for _, d := range []string{root, filepath.Join(root, "blixard")} {
		if got := read(filepath.Join(d, "cgroup.subtree_control")); !strings.Contains(got, "+cpu +memory") {
			t.Errorf("%s/cgroup.subtree_control %q", d, got)
		}
	}
	if cg.limits.CPUQuotaMicros != 200000 || cg.limits.MemoryBytes != MemoryLimitBytes(spec) {
		t.Errorf("recorded limits %+v", cg.limits)
	}
}

// A host that allows no cgroups records why and applies nothing.
func TestMakeCgroupsNone(t *testing.T) {
	root := filepath.Join(t.TempDir(), "missing")
	if err := os.WriteFile(root, nil, 0o444); err != nil { // a file: nothing can be made below it
		t.Fatal(err)
	}
	cg := makeCgroups(root, "x-web", Spec{Name: "web", Vcpus: 1, MemoryMiB: 64})
	cg.verify(os.Getpid())
	if cg.limits.Cgroup != "" || cg.limits.CPUQuotaMicros != 0 || cg.limits.MemoryBytes != 0 || cg.limits.Warning == "" {
		t.Fatalf("limits %+v, want none applied and a warning", cg.limits)
	}
}

func TestNodeHash(t *testing.T) {
	a, b := nodeHash("/var/lib/blixard/n1"), nodeHash("/var/lib/blixard/n2")
	if len(a) != 8 || a == b || nodeHash("/var/lib/blixard/n1/") != a {
		t.Fatalf("hashes %q %q", a, b)
	}
}
