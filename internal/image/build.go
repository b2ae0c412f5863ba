package image

import (
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// AgentEnv names the environment variable that LocateAgent reads first.
const AgentEnv = "BLIXARD_AGENT"

// agentName is the agent binary's file name.
const agentName = "blixard-agent"

// DefaultBusybox is the busybox that Build uses unless told otherwise: the
// static one of Debian's busybox-static package.
const DefaultBusybox = "/bin/busybox"

// DefaultName is the image that Ensure builds when it is absent.
const DefaultName = "default"

// DefaultMinMemoryMiB is the MinMemoryMiB of the default image built from
// Debian 12's kernel (6.1, whose loaded image ends at 74 MiB), for a node to
// announce before it has built the image; the built image's own figure
// (computed by minMemoryMiB, and checked against this by the tests) is the
// one to enforce.
const DefaultMinMemoryMiB = 96

// BuildOptions say what Build puts in an image.
type BuildOptions struct {
	// Kernel is a bzImage (vmlinuz) or an ELF vmlinux. "" means the newest
	// /boot/vmlinuz-*-amd64, else the kernel package that Debian's
	// linux-image-amd64 depends on, fetched with apt-get download from the
	// configured apt sources and unpacked with dpkg-deb -x.
	Kernel string
	// Agent is the static blixard-agent binary; "" means LocateAgent().
	Agent string
	// Busybox is a static busybox; "" means DefaultBusybox.
	Busybox string
	// Logger may be nil.
	Logger *slog.Logger
	// Progress, if set, is told of each step of the build as it happens:
	// step is a few words ("kernel found", "initramfs packed") and detail
	// what the step found or made (a path, a release, a size). Build calls
	// it on its own goroutine, and the build waits for it to return. It
	// has no part in what the build makes: Ensure ignores it when it
	// decides whether an image is out of date.
	Progress func(step, detail string)
}

// progress passes a build step to opts.Progress, if it is set.
func (opts BuildOptions) progress(step, detail string) {
	if opts.Progress != nil {
		opts.Progress(step, detail)
	}
}

// LocateAgent finds the blixard-agent binary: $BLIXARD_AGENT, else
// blixard-agent beside the running program, else blixard-agent in PATH.
func LocateAgent() (string, error) {
	if p := os.Getenv(AgentEnv); p != "" {
		if err := regularFile(p); err != nil {
			return "", fmt.Errorf("$%s: %w", AgentEnv, err)
		}
		return filepath.Abs(p)
	}
	var beside string
	if exe, err := os.Executable(); err == nil {
		beside = filepath.Join(filepath.Dir(exe), agentName)
		if regularFile(beside) == nil {
			return beside, nil
		}
	}
	if p, err := exec.LookPath(agentName); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%s not found: $%s is not set, there is no %s, and none is in PATH; "+
		"build it with `make build` in the blixard source tree (it puts bin/blixard-agent beside bin/blixard), "+
		"or with `CGO_ENABLED=0 go build -trimpath -ldflags=\"-s -w\" -o %s ./cmd/blixard-agent`, or set %s to its path",
		agentName, AgentEnv, beside, beside, AgentEnv)
}

func regularFile(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}

// Build builds the default guest image into outDir: the kernel as an ELF
// vmlinux (extracted from a bzImage if need be), an initramfs holding the
// agent as /init and busybox, and image.json. The same inputs give the same
// files and digest. The image's Name is DefaultName.
func Build(ctx context.Context, outDir string, opts BuildOptions) (*Image, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	img, err := build(ctx, outDir, opts, log)
	if err != nil {
		return nil, fmt.Errorf("build guest image in %s: %w", outDir, err)
	}
	log.Info("built guest image", "dir", img.Dir, "digest", img.Digest, "kernel", img.KernelRelease,
		"min_memory_mib", img.MinMemoryMiB, "took", time.Since(start).Round(time.Millisecond))
	return img, nil
}

func build(ctx context.Context, outDir string, opts BuildOptions, log *slog.Logger) (*Image, error) {
	agent := opts.Agent
	if agent == "" {
		var err error
		if agent, err = LocateAgent(); err != nil {
			return nil, err
		}
	}
	busybox := opts.Busybox
	if busybox == "" {
		busybox = DefaultBusybox
	}
	if err := checkStatic(agent); err != nil {
		return nil, fmt.Errorf("agent: %w (build it with CGO_ENABLED=0)", err)
	}
	if err := checkStatic(busybox); err != nil {
		return nil, fmt.Errorf("busybox: %w (Debian's busybox-static package has a static one)", err)
	}
	opts.progress("agent found", agent)
	tmp, err := os.MkdirTemp("", "blixard-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	kernelSrc, err := findKernel(ctx, opts.Kernel, tmp, log, opts.progress)
	if err != nil {
		return nil, err
	}
	opts.progress("kernel found", kernelSrc)
	dir, err := filepath.Abs(outDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	img := &Image{
		Name:   DefaultName,
		Dir:    dir,
		Kernel: filepath.Join(dir, KernelFile),
		Initrd: filepath.Join(dir, InitrdFile),
	}
	// Ensure (store.go) says why it builds; the sources are detail.
	log.Debug("building guest image", "kernel", kernelSrc, "agent", agent, "busybox", busybox, "dir", dir)

	kernel, err := writeVMLinux(ctx, kernelSrc, img.Kernel)
	if err != nil {
		return nil, err
	}
	img.KernelRelease = kernel.release
	opts.progress("kernel unpacked", kernelDetail(kernel.release, img.Kernel))
	applets, err := busyboxApplets(ctx, busybox)
	if err != nil {
		return nil, err
	}
	agentData, err := readLimited(agent, 256<<20)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	busyboxData, err := readLimited(busybox, 256<<20)
	if err != nil {
		return nil, fmt.Errorf("busybox: %w", err)
	}
	if err := writeInitramfs(img.Initrd, initramfsEntries(agentData, busyboxData, applets)); err != nil {
		return nil, err
	}
	opts.progress("initramfs packed", fmt.Sprintf("%s, busybox with %d applets", sizeText(img.Initrd), len(applets)))
	if img.Digest, err = digestFiles(img.Kernel, img.Initrd); err != nil {
		return nil, err
	}
	m := manifest{
		Format:        manifestFormat,
		Name:          img.Name,
		Kernel:        KernelFile,
		Initrd:        InitrdFile,
		Digest:        img.Digest,
		KernelRelease: img.KernelRelease,
	}
	for _, f := range []struct {
		path string
		size *int64
	}{{img.Kernel, &m.KernelSize}, {img.Initrd, &m.InitrdSize}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return nil, err
		}
		*f.size = fi.Size()
	}
	img.MinMemoryMiB = minMemoryMiB(kernel.loadEnd, m.InitrdSize)
	m.MinMemoryMiB = img.MinMemoryMiB
	if m.Sources, err = sourcesOf(kernelSrc, agent, busybox, tmp); err != nil {
		return nil, err
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeAtomically(filepath.Join(dir, ManifestFile), func(w io.Writer) error {
		_, err := w.Write(append(data, '\n'))
		return err
	}); err != nil {
		return nil, err
	}
	opts.progress("image written", img.Digest)
	return img, nil
}

// kernelDetail describes the unpacked kernel at path for a progress step:
// its release, if known, and its size.
func kernelDetail(release, path string) string {
	if release == "" {
		return sizeText(path)
	}
	return release + ", " + sizeText(path)
}

// sizeText is the size of the file at path in MiB, to one decimal ("" if
// it cannot be read).
func sizeText(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20))
}

// sourcesOf records the inputs of a build. A kernel fetched with apt (under
// tmp) is recorded by its file name alone.
func sourcesOf(kernel, agent, busybox, tmp string) ([]source, error) {
	var out []source
	for _, s := range []source{{Role: "kernel", Path: kernel}, {Role: "agent", Path: agent}, {Role: "busybox", Path: busybox}} {
		sum, err := fileSHA256(s.Path)
		if err != nil {
			return nil, err
		}
		s.SHA256 = sum
		if rel, err := filepath.Rel(tmp, s.Path); err == nil && filepath.IsLocal(rel) {
			s.Path = "apt:" + filepath.Base(s.Path)
		}
		out = append(out, s)
	}
	return out, nil
}

// checkStatic checks that path is an x86-64 ELF executable that needs no
// dynamic loader: the initramfs has no shared libraries.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s is built for %v, not x86-64", path, f.Machine)
	}
	if f.Type != elf.ET_EXEC && f.Type != elf.ET_DYN {
		return fmt.Errorf("%s is not an executable (ELF type %v)", path, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// memoryHeadroomMiB is the memory a guest needs beyond its kernel's image
// and two copies of its initramfs (the archive QEMU loads and the files
// unpacked from it): the kernel's own allocations, the agent, a small task.
//
// Measured (QEMU 7.2 microvm, TCG, Debian 6.1.0-56-amd64 whose image ends at
// 74 MiB, a 4.3 MiB initramfs): 86 MiB boots and runs "sh -c 'free -m;
// exit 3'" (free says 38 MiB total, 10 MiB free); 84 MiB does not boot. So
// 74 + 2×4.3 = 82.6 MiB plus about 3.4 MiB is the floor; 8 MiB of headroom,
// rounded up to 8 MiB, gives 96 MiB for the default image, and the boot
// tests boot every image at exactly its MinMemoryMiB.
const memoryHeadroomMiB = 8

// minMemoryMiB is the least guest memory an image boots with: its kernel's
// loaded image, its initramfs twice, and the headroom, rounded up to a
// multiple of 8 MiB.
func minMemoryMiB(kernelLoadEnd uint64, initrdBytes int64) uint64 {
	const mib = 1 << 20
	need := (kernelLoadEnd+2*uint64(initrdBytes)+mib-1)/mib + memoryHeadroomMiB
	return (need + 7) / 8 * 8
}
