package image

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// The image store of a data directory:
//
//	<dataDir>/images/sha256-<hex>/{vmlinux,initrd.img,image.json}  one per digest
//	<dataDir>/images/<name> -> sha256-<hex>                         a symlink per name
//	<dataDir>/images/.lock                                          flock(2)ed by Ensure
//
// A digest directory is complete before it gets its final name, and a name
// is switched to another digest by renaming a new symlink over it, so a
// reader sees an old image or a new one, never half of one. Digest
// directories are never deleted by Ensure: a VM may be running from one.
const (
	imagesDir       = "images"
	digestDirPrefix = "sha256-"
	lockFile        = ".lock"
)

// lockPollInterval is how often Ensure retries a lock that another process
// holds.
const lockPollInterval = 100 * time.Millisecond

// namePattern is what an image name may look like.
var namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

func checkName(name string) error {
	if !namePattern.MatchString(name) || strings.HasPrefix(name, digestDirPrefix) {
		return fmt.Errorf("image name %q: want 1 to 63 of a-z 0-9 . _ -, starting with a letter or digit, and not %s...", name, digestDirPrefix)
	}
	return nil
}

// Load returns the image called name in dataDir's image store, having
// checked that its files are there with the sizes its manifest records (it
// does not hash them; Ensure does). An absent name gives an error wrapping
// ErrUnknownImage.
func Load(dataDir, name string) (*Image, error) {
	img, _, err := load(dataDir, name)
	return img, err
}

func load(dataDir, name string) (*Image, *manifest, error) {
	if err := checkName(name); err != nil {
		return nil, nil, err
	}
	root, err := filepath.Abs(filepath.Join(dataDir, imagesDir))
	if err != nil {
		return nil, nil, err
	}
	link := filepath.Join(root, name)
	target, err := os.Readlink(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("image %q is not in %s: %w", name, root, ErrUnknownImage)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("image %q: %s should be a symlink to a %s<hex> directory: %w", name, link, digestDirPrefix, err)
	}
	if !strings.HasPrefix(target, digestDirPrefix) || filepath.Base(target) != target {
		return nil, nil, fmt.Errorf("image %q: %s points to %q, not to a %s<hex> directory beside it", name, link, target, digestDirPrefix)
	}
	img, m, err := loadDir(filepath.Join(root, target))
	if err != nil {
		return nil, nil, fmt.Errorf("image %q: %w", name, err)
	}
	if want := digestDirPrefix + strings.TrimPrefix(img.Digest, "sha256:"); want != target {
		return nil, nil, fmt.Errorf("image %q: directory %s holds an image of digest %s", name, target, img.Digest)
	}
	img.Name = name
	return img, m, nil
}

// List returns the images of dataDir's image store, sorted by name. Images
// that cannot be loaded are left out and named in the error, which is
// returned with the others.
func List(dataDir string) ([]*Image, error) {
	root := filepath.Join(dataDir, imagesDir)
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	var (
		images []*Image
		errs   []error
	)
	for _, e := range entries {
		if e.Type()&fs.ModeSymlink == 0 || checkName(e.Name()) != nil {
			continue
		}
		img, err := Load(dataDir, e.Name())
		if err != nil {
			errs = append(errs, err)
			continue
		}
		images = append(images, img)
	}
	slices.SortFunc(images, func(a, b *Image) int { return strings.Compare(a.Name, b.Name) })
	return images, errors.Join(errs...)
}

// Ensure returns the image called name from dataDir's image store, after
// checking its files against its digest. The default image is built (with
// opts) when it is absent, damaged, or out of date: built from files other
// than those opts now resolve to (a new agent after an upgrade, a new
// kernel in /boot). Any other name must be present: if it is not, the error
// wraps ErrUnknownImage. Concurrent calls, from this process or others,
// are serialized by a lock in the store.
func Ensure(ctx context.Context, dataDir, name string, opts BuildOptions) (*Image, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	root, err := filepath.Abs(filepath.Join(dataDir, imagesDir))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	unlock, err := lockStore(ctx, root)
	if err != nil {
		return nil, err
	}
	defer unlock()

	img, m, err := load(dataDir, name)
	if err == nil {
		err = img.verify()
	}
	switch {
	case err == nil && name != DefaultName:
		return img, nil
	case err == nil:
		why := outOfDate(m, opts)
		if why == "" {
			return img, nil
		}
		log.Info("rebuilding the default guest image", "reason", why, "old_digest", img.Digest)
	case name != DefaultName:
		return nil, err
	case errors.Is(err, ErrUnknownImage):
		log.Info("building the default guest image", "store", root)
	default:
		log.Warn("rebuilding the default guest image", "reason", err)
	}
	if err := buildInto(ctx, root, name, opts, log); err != nil {
		return nil, err
	}
	img, _, err = load(dataDir, name)
	return img, err
}

// buildInto builds an image in a temporary directory of root, moves it to
// its digest directory and points name at it.
func buildInto(ctx context.Context, root, name string, opts BuildOptions, log *slog.Logger) error {
	tmp, err := os.MkdirTemp(root, ".build-")
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer os.RemoveAll(tmp)
	built, err := Build(ctx, tmp, opts)
	if err != nil {
		return err
	}
	digestDir := digestDirPrefix + strings.TrimPrefix(built.Digest, "sha256:")
	final := filepath.Join(root, digestDir)
	if old, _, err := loadDir(final); err == nil && old.verify() == nil {
		log.Debug("the built image is in the store already", "dir", final)
	} else {
		if err := os.RemoveAll(final); err != nil {
			return fmt.Errorf("image store: remove the damaged %s: %w", final, err)
		}
		if err := os.Rename(tmp, final); err != nil {
			return fmt.Errorf("image store: %w", err)
		}
	}
	link := filepath.Join(root, name)
	tmpLink := filepath.Join(root, ".link-"+name+"-"+filepath.Base(tmp))
	if err := os.Symlink(digestDir, tmpLink); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	if err := os.Rename(tmpLink, link); err != nil {
		os.Remove(tmpLink)
		return fmt.Errorf("image store: point %s at %s: %w", link, digestDir, err)
	}
	return syncDir(root)
}

// outOfDate says why an image built from the sources m records differs
// from one built with opts now, or "" if it does not (or it cannot tell
// cheaply: a kernel that would come from apt is not fetched to compare).
func outOfDate(m *manifest, opts BuildOptions) string {
	want := map[string]string{}
	if opts.Agent != "" {
		want["agent"] = opts.Agent
	} else if p, err := LocateAgent(); err == nil {
		want["agent"] = p
	}
	want["busybox"] = cmp.Or(opts.Busybox, DefaultBusybox)
	if opts.Kernel != "" {
		want["kernel"] = opts.Kernel
	} else if k, err := newestBootKernel(); err == nil {
		want["kernel"] = k
	}
	for _, s := range m.Sources {
		p, ok := want[s.Role]
		if !ok {
			continue
		}
		sum, err := fileSHA256(p)
		if err != nil {
			return fmt.Sprintf("%s %s: %v", s.Role, p, err)
		}
		if sum != s.SHA256 {
			return fmt.Sprintf("%s %s has changed since the image was built", s.Role, p)
		}
	}
	return ""
}

// lockStore takes the store's lock, waiting for another holder until ctx
// ends, and returns its release.
func lockStore(ctx context.Context, root string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(root, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("image store lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("image store lock: %w", err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for the image store lock %s: %w", f.Name(), context.Cause(ctx))
		case <-time.After(lockPollInterval):
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
