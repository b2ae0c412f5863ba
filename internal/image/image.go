package image

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Names of the files of an image in its directory.
const (
	KernelFile   = "vmlinux"
	InitrdFile   = "initrd.img"
	ManifestFile = "image.json"
)

// manifestFormat is the version of image.json's layout.
const manifestFormat = 1

// ErrUnknownImage: no image of that name exists in the data directory.
var ErrUnknownImage = errors.New("unknown image")

// Image is a guest image: a PVH kernel and an initramfs whose /init is the
// Blixard agent.
type Image struct {
	// Name is what the image is known by, e.g. "default".
	Name string
	// Dir is the absolute directory holding the files.
	Dir string
	// Kernel is the absolute path to the PVH vmlinux (ELF).
	Kernel string
	// Initrd is the absolute path to the initramfs (cpio newc, uncompressed).
	Initrd string
	// Digest is "sha256:<hex>" over the kernel's and the initrd's contents:
	// the SHA-256 of the 64 bytes SHA-256(vmlinux) ‖ SHA-256(initrd.img).
	Digest string
	// MinMemoryMiB is the least guest memory the image boots with.
	MinMemoryMiB uint64
	// KernelRelease is the kernel's release ("6.1.0-56-amd64"); "" if
	// unknown.
	KernelRelease string
}

// manifest is image.json.
type manifest struct {
	Format        int    `json:"format"`
	Name          string `json:"name"`
	Kernel        string `json:"kernel"`
	Initrd        string `json:"initrd"`
	Digest        string `json:"digest"`
	KernelSize    int64  `json:"kernel_size"`
	InitrdSize    int64  `json:"initrd_size"`
	MinMemoryMiB  uint64 `json:"min_memory_mib"`
	KernelRelease string `json:"kernel_release,omitempty"`
	// Sources are the files the image was built from, with their SHA-256,
	// so that Ensure sees when the installed agent has changed.
	Sources []source `json:"sources"`
}

type source struct {
	Role   string `json:"role"` // "kernel", "agent", "busybox"
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
}

// loadDir reads the image in dir (an absolute path) and checks that its
// files are there with the sizes its manifest records.
func loadDir(dir string) (*Image, *manifest, error) {
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, nil, err
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", filepath.Join(dir, ManifestFile), err)
	}
	if m.Format != manifestFormat {
		return nil, nil, fmt.Errorf("%s: format %d, this blixard reads %d", filepath.Join(dir, ManifestFile), m.Format, manifestFormat)
	}
	if m.Kernel != KernelFile || m.Initrd != InitrdFile || !strings.HasPrefix(m.Digest, "sha256:") {
		return nil, nil, fmt.Errorf("%s: unexpected files %q, %q or digest %q", filepath.Join(dir, ManifestFile), m.Kernel, m.Initrd, m.Digest)
	}
	img := &Image{
		Name:          m.Name,
		Dir:           dir,
		Kernel:        filepath.Join(dir, KernelFile),
		Initrd:        filepath.Join(dir, InitrdFile),
		Digest:        m.Digest,
		MinMemoryMiB:  m.MinMemoryMiB,
		KernelRelease: m.KernelRelease,
	}
	for _, f := range []struct {
		path string
		size int64
	}{{img.Kernel, m.KernelSize}, {img.Initrd, m.InitrdSize}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return nil, nil, err
		}
		if fi.Size() != f.size {
			return nil, nil, fmt.Errorf("%s is %d bytes, its manifest says %d", f.path, fi.Size(), f.size)
		}
	}
	return img, &m, nil
}

// digestFiles computes an image's digest from its kernel and initrd.
func digestFiles(kernel, initrd string) (string, error) {
	outer := sha256.New()
	for _, p := range []string{kernel, initrd} {
		sum, err := fileSHA256(p)
		if err != nil {
			return "", err
		}
		b, _ := hex.DecodeString(sum)
		outer.Write(b)
	}
	return "sha256:" + hex.EncodeToString(outer.Sum(nil)), nil
}

// verify recomputes the image's digest and compares it with the recorded
// one.
func (img *Image) verify() error {
	d, err := digestFiles(img.Kernel, img.Initrd)
	if err != nil {
		return err
	}
	if d != img.Digest {
		return fmt.Errorf("image %s in %s: its files have digest %s, not %s", img.Name, img.Dir, d, img.Digest)
	}
	return nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeAtomically writes path through a temporary file in its directory,
// synced and renamed into place: path is either whole or untouched.
func writeAtomically(path string, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
