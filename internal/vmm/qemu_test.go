package vmm

import (
	"slices"
	"strings"
	"testing"

	"github.com/blixard/blixard/internal/guest/wire"
)

// microvmHelp is the start of "qemu-system-x86_64 -M microvm,help" of QEMU
// 7.2.
const microvmHelp = `microvm-machine options:
  acpi=<OnOffAuto>       - Enable ACPI
  rtc=<OnOffAuto>        - Enable MC146818 RTC
  x-option-roms=<bool>   - Set off to disable loading option ROMs
`

func TestParseQEMUCaps(t *testing.T) {
	tests := []struct {
		name string
		help string
		want qemuCaps
	}{
		{"qemu 7.2", microvmHelp, qemuCaps{RTC: true, OptionROMs: true, MicrovmSeen: true}},
		{"no rtc option", "microvm-machine options:\n  x-option-roms=<bool> - x\n", qemuCaps{OptionROMs: true, MicrovmSeen: true}},
		{"no microvm", "qemu-system-x86_64: unsupported machine type\n", qemuCaps{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseQEMUCaps([]byte(tt.help)); got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func testLaunch(dir string) launch {
	return launch{
		Version: launchVersion,
		Spec: Spec{Name: "web-1", Generation: 3, Vcpus: 2, MemoryMiB: 256,
			Kernel: "/img/vmlinux", Initrd: "/img/initrd.img"},
		Dir:               dir,
		Driver:            "qemu",
		Binary:            "/usr/bin/qemu-system-x86_64",
		QEMUCaps:          qemuCaps{RTC: true, OptionROMs: true, MicrovmSeen: true},
		Accel:             AccelTCG,
		BootTimeoutMillis: 60000,
		StopGraceMillis:   5000,
		CgroupRoot:        DefaultCgroupRoot,
		CgroupName:        "0a1b2c3d-web-1",
	}
}

func TestQEMUArgs(t *testing.T) {
	const dir = "/var/lib/blixard/vms/web-1"
	base := func(accel []string, machine string) []string {
		return slices.Concat(
			[]string{"-name", "blixard-web-1,debug-threads=on", "-S", "-M", machine},
			accel,
			[]string{"-smp", "2", "-m", "256M", "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
				"-kernel", "/img/vmlinux", "-initrd", "/img/initrd.img",
				"-append", "console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests",
				"-chardev", "socket,id=ser0,path=" + dir + "/serial.sock,server=on,wait=off,logfile=" + dir + "/console.log,logappend=on",
				"-serial", "chardev:ser0",
				"-chardev", "socket,id=qmp0,path=" + dir + "/qmp.sock,server=on,wait=off", "-mon", "chardev=qmp0,mode=control"})
	}
	tcg := []string{"-accel", "tcg,tb-size=64"}
	tests := []struct {
		name   string
		modify func(*launch)
		want   []string
	}{
		{"tcg", func(*launch) {}, base(tcg, "microvm,x-option-roms=off,rtc=on")},
		{"kvm", func(l *launch) { l.Accel = AccelKVM }, base([]string{"-accel", "kvm", "-cpu", "host"}, "microvm,x-option-roms=off,rtc=on")},
		{"qemu without rtc option", func(l *launch) { l.QEMUCaps.RTC = false }, base(tcg, "microvm,x-option-roms=off")},
		{"extra cmdline", func(l *launch) {
			l.AccelCmdline = "tsc_early_khz=2095992"
			l.Spec.Cmdline = "  init=/bin/sh loglevel=3 "
		}, func() []string {
			a := base(tcg, "microvm,x-option-roms=off,rtc=on")
			a[slices.Index(a, "-append")+1] += " tsc_early_khz=2095992 init=/bin/sh loglevel=3"
			return a
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := testLaunch(dir)
			tt.modify(&l)
			got := qemuArgs(l, l.QEMUCaps)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("args:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// Every path of the VM's own files names its directory, commas in it are
// escaped for QEMU's option syntax, and a directory too deep for a unix
// socket address gets relative socket names (QEMU runs in the directory)
// while the command line still names it through the log file.
func TestQEMUArgsPaths(t *testing.T) {
	t.Run("comma", func(t *testing.T) {
		l := testLaunch("/data/a,b/vms/web-1")
		args := strings.Join(qemuArgs(l, l.QEMUCaps), " ")
		for _, want := range []string{"path=/data/a,,b/vms/web-1/serial.sock,", "logfile=/data/a,,b/vms/web-1/console.log,", "id=qmp0,path=/data/a,,b/vms/web-1/qmp.sock,"} {
			if !strings.Contains(args, want) {
				t.Errorf("args lack %q: %s", want, args)
			}
		}
	})
	t.Run("deep directory", func(t *testing.T) {
		dir := "/" + strings.Repeat("d", 100) + "/vms/web-1"
		l := testLaunch(dir)
		args := qemuArgs(l, l.QEMUCaps)
		joined := strings.Join(args, " ")
		if !strings.Contains(joined, "socket,id=ser0,path=serial.sock,") || !strings.Contains(joined, "socket,id=qmp0,path=qmp.sock,") {
			t.Errorf("sockets are not relative: %s", joined)
		}
		if !strings.Contains(joined, "logfile="+dir+"/console.log") {
			t.Errorf("the log file does not name the directory: %s", joined)
		}
		cmd, err := qemuDriver{}.command(l)
		if err != nil {
			t.Fatal(err)
		}
		if cmd.Dir != dir || !cmd.SysProcAttr.Setpgid {
			t.Errorf("QEMU runs in %q (want %q), own process group %v", cmd.Dir, dir, cmd.SysProcAttr.Setpgid)
		}
	})
}

func TestLimitsOfSpec(t *testing.T) {
	s := Spec{Vcpus: 3, MemoryMiB: 512}
	if got, want := MemoryLimitBytes(s), int64(512+MemoryOverheadMiB)<<20; got != want {
		t.Errorf("MemoryLimitBytes = %d, want %d", got, want)
	}
	if got := CPUQuotaMicros(s); got != 300000 {
		t.Errorf("CPUQuotaMicros = %d, want 300000", got)
	}
}

func TestSpecValidate(t *testing.T) {
	ok := Spec{Name: "web-1", Vcpus: 1, MemoryMiB: 128, Kernel: "k", Initrd: "i"}
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string // "" for valid
	}{
		{"valid", func(*Spec) {}, ""},
		{"task", func(s *Spec) { s.Task = &wire.Run{Command: "sh", TimeoutMillis: 1000} }, ""},
		{"task VM name", func(s *Spec) { s.Name = "task.42" }, ""},
		{"upper case name", func(s *Spec) { s.Name = "Web" }, "is not 1-63"},
		{"leading hyphen", func(s *Spec) { s.Name = "-web" }, "is not 1-63"},
		{"trailing dot", func(s *Spec) { s.Name = "task." }, "is not 1-63"},
		{"two dots", func(s *Spec) { s.Name = "a..b" }, "is not 1-63"},
		{"long name", func(s *Spec) { s.Name = strings.Repeat("a", 64) }, "is not 1-63"},
		{"path in name", func(s *Spec) { s.Name = "../x" }, "is not 1-63"},
		{"slash in name", func(s *Spec) { s.Name = "a/b" }, "is not 1-63"},
		{"no vcpus", func(s *Spec) { s.Vcpus = 0 }, "vcpus 0"},
		{"little memory", func(s *Spec) { s.MemoryMiB = 8 }, "memory 8 MiB"},
		{"no kernel", func(s *Spec) { s.Kernel = "" }, "no kernel"},
		{"newline in cmdline", func(s *Spec) { s.Cmdline = "a\nb" }, "newline"},
		{"task without command", func(s *Spec) { s.Task = &wire.Run{} }, "no command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := ok
			tt.modify(&s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
