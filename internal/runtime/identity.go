package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// identityFile records, in the data directory, who the node is: its id and
// role are fixed when it first starts. A restart with another --id is
// refused (it would corrupt the cluster); the role comes back from here, so
// a worker restarted without --role stays a worker.
const identityFile = "identity"

// settleIdentity writes the identity of a fresh data directory, or checks
// cfg against the one recorded and fills in the role.
func settleIdentity(cfg *Config, roleGiven bool) error {
	path := filepath.Join(cfg.DataDir, identityFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", cfg.DataDir, err)
		}
		body := fmt.Sprintf("id=%d\nrole=%s\nsecurity=%s\n", cfg.ID, cfg.Role, securityMode(cfg.Insecure))
		return writeDurably(path, []byte(body))
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var id uint64
	var role apiv1.NodeRole
	// Data directories from before TLS existed hold no security line:
	// those nodes ran in plaintext.
	mode := securityMode(true)
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "id":
			if id, err = strconv.ParseUint(v, 10, 64); err != nil {
				return fmt.Errorf("%s: bad id %q", path, v)
			}
		case "role":
			r, ok := apiv1.NodeRole_value[v]
			if !ok {
				return fmt.Errorf("%s: bad role %q", path, v)
			}
			role = apiv1.NodeRole(r)
		case "security":
			mode = v
		}
	}
	if id != cfg.ID {
		return fmt.Errorf("data directory %s belongs to node %d, not %d", cfg.DataDir, id, cfg.ID)
	}
	if roleGiven && role != cfg.Role {
		return fmt.Errorf("node %d was created as %s; its role cannot change (drop --role)", id, roleName(role))
	}
	if mode != securityMode(cfg.Insecure) {
		if cfg.Insecure {
			return fmt.Errorf("node %d was created with TLS; it cannot run --insecure (drop --insecure)", id)
		}
		return fmt.Errorf("node %d was created with --insecure; start it with --insecure, or make a new node", id)
	}
	cfg.Role = role
	return nil
}

func securityMode(insecure bool) string {
	if insecure {
		return "insecure"
	}
	return "tls"
}

func roleName(r apiv1.NodeRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "NODE_ROLE_"))
}

// writeDurably writes a file so that a crash leaves either nothing or all
// of it: a temporary file, synced, renamed into place, directory synced.
func writeDurably(path string, body []byte) error { return writeDurablyMode(path, body, 0o644) }

// writeDurablyMode is writeDurably for a file of mode perm.
func writeDurablyMode(path string, body []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp) // a leftover would keep its mode
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(body); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", filepath.Dir(path), err)
	}
	return nil
}
