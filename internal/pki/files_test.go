package pki

import (
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

func TestCAFilesRoundTrip(t *testing.T) {
	ca := newTestCA(t, "c1")
	dir := filepath.Join(t.TempDir(), "data") // Save creates it
	if err := ca.Save(dir); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, filepath.Join(dir, "ca.key")); got != 0o600 {
		t.Errorf("ca.key mode %#o, want 0600", got)
	}
	if got := fileMode(t, filepath.Join(dir, "ca.crt")); got != 0o644 {
		t.Errorf("ca.crt mode %#o, want 0644", got)
	}
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("created directory mode %#o, want 0700", got)
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Fingerprint() != ca.Fingerprint() || !loaded.key.Equal(ca.key) || loaded.ClusterID() != "c1" {
		t.Fatalf("loaded %s, saved %s", loaded, ca)
	}
	// The loaded CA signs certificates that the original's pool trusts.
	n, err := loaded.NewNode(2, nil, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyNode(n.Leaf(), PoolOf(ca.Certificate()), x509.ExtKeyUsageServerAuth, t0); err != nil {
		t.Fatal(err)
	}
	b, err := LoadBundle(dir)
	if err != nil || len(b) != 1 || !FingerprintOf(b[0]).Equal(FingerprintOf(ca.Certificate())) {
		t.Fatalf("LoadBundle = %d certificates, %v", len(b), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want ca.crt and ca.key only (no temporary files)", len(entries))
	}
}

func TestCASaveDuringRotation(t *testing.T) {
	oldCA := newTestCA(t, "c1")
	newCA := newTestCA(t, "c1")
	dir := t.TempDir()
	// The new CA signs; the old one stays trusted. Saving the CA itself
	// again in alsoTrust is harmless.
	if err := newCA.Save(dir, oldCA.Certificate(), newCA.Certificate()); err != nil {
		t.Fatal(err)
	}
	b, err := LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2 || !FingerprintOf(b[0]).Equal(FingerprintOf(newCA.Certificate())) ||
		!FingerprintOf(b[1]).Equal(FingerprintOf(oldCA.Certificate())) {
		t.Fatalf("bundle holds %d certificates, want the new CA then the old", len(b))
	}
	loaded, err := LoadCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.Fingerprint() != newCA.Fingerprint() {
		t.Fatalf("LoadCA picked %s, want the CA whose key is saved (%s)", loaded, newCA)
	}
	// The bundle finds each by fingerprint.
	if b.Find(FingerprintOf(oldCA.Certificate())) == nil || b.Find(Fingerprint{}) != nil {
		t.Fatal("Bundle.Find")
	}
	// A worker keeps only the trust bundle, without a key.
	workerDir := t.TempDir()
	if err := SaveBundle(workerDir, b); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCA(workerDir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadCA without ca.key: %v, want not-exist", err)
	}
}

func TestNodeFilesRoundTrip(t *testing.T) {
	ca := newTestCA(t, "c1")
	n := newTestNode(t, ca, 12)
	dir := t.TempDir()
	if err := n.Save(dir); err != nil {
		t.Fatal(err)
	}
	if got := fileMode(t, filepath.Join(dir, "node.key")); got != 0o600 {
		t.Errorf("node.key mode %#o, want 0600", got)
	}
	if got := fileMode(t, filepath.Join(dir, "node.crt")); got != 0o644 {
		t.Errorf("node.crt mode %#o, want 0644", got)
	}
	loaded, err := LoadNode(dir)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.NodeID() != 12 || !loaded.key.Equal(n.key) || !loaded.Leaf().Equal(n.Leaf()) || !loaded.Issuer().Equal(ca.Certificate()) {
		t.Fatalf("loaded %s, saved %s", loaded, n)
	}
	// Renewal overwrites in place, and the modes stay.
	renewed := newTestNode(t, ca, 12)
	if err := renewed.Save(dir); err != nil {
		t.Fatal(err)
	}
	loaded, err = LoadNode(dir)
	if err != nil || !loaded.Leaf().Equal(renewed.Leaf()) {
		t.Fatalf("after renewal: %v", err)
	}
	if got := fileMode(t, filepath.Join(dir, "node.key")); got != 0o600 {
		t.Errorf("node.key mode after overwrite %#o, want 0600", got)
	}
}

func TestKeyFileWithLooseModeRefused(t *testing.T) {
	ca := newTestCA(t, "c1")
	n := newTestNode(t, ca, 1)
	for _, mode := range []fs.FileMode{0o644, 0o640, 0o604, 0o660, 0o700 | 0o010} {
		caDir, nodeDir := t.TempDir(), t.TempDir()
		if err := ca.Save(caDir); err != nil {
			t.Fatal(err)
		}
		if err := n.Save(nodeDir); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(caDir, "ca.key"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(nodeDir, "node.key"), mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCA(caDir); !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("LoadCA with ca.key %#o: %v, want ErrKeyPermissions", mode, err)
		}
		if _, err := LoadNode(nodeDir); !errors.Is(err, ErrKeyPermissions) {
			t.Errorf("LoadNode with node.key %#o: %v, want ErrKeyPermissions", mode, err)
		}
	}
	// 0400 is fine: owner-only.
	dir := t.TempDir()
	if err := n.Save(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "node.key"), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNode(dir); err != nil {
		t.Errorf("LoadNode with node.key 0400: %v", err)
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	ca := newTestCA(t, "c1")
	otherCA := newTestCA(t, "c1")
	n := newTestNode(t, ca, 1)
	other := newTestNode(t, ca, 2)

	write := func(t *testing.T, dir, name, content string, mode fs.FileMode) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(dir, name), mode); err != nil {
			t.Fatal(err)
		}
	}
	read := func(t *testing.T, dir, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	t.Run("node key of another node", func(t *testing.T) {
		dir, otherDir := t.TempDir(), t.TempDir()
		_ = n.Save(dir)
		_ = other.Save(otherDir)
		write(t, dir, "node.key", read(t, otherDir, "node.key"), 0o600)
		if _, err := LoadNode(dir); err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("LoadNode: %v", err)
		}
	})
	t.Run("CA key of another CA", func(t *testing.T) {
		dir, otherDir := t.TempDir(), t.TempDir()
		_ = ca.Save(dir)
		_ = otherCA.Save(otherDir)
		write(t, dir, "ca.key", read(t, otherDir, "ca.key"), 0o600)
		if _, err := LoadCA(dir); err == nil || !strings.Contains(err.Error(), "matches none") {
			t.Fatalf("LoadCA: %v", err)
		}
	})
	t.Run("node.crt without its CA", func(t *testing.T) {
		dir := t.TempDir()
		_ = n.Save(dir)
		write(t, dir, "node.crt", string(encodeCerts(n.Leaf())), 0o644)
		if _, err := LoadNode(dir); err == nil || !strings.Contains(err.Error(), "want the node's and its CA's") {
			t.Fatalf("LoadNode: %v", err)
		}
	})
	t.Run("trailing garbage in ca.crt", func(t *testing.T) {
		dir := t.TempDir()
		_ = ca.Save(dir)
		write(t, dir, "ca.crt", read(t, dir, "ca.crt")+"garbage\n", 0o644)
		if _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), "after the last") {
			t.Fatalf("LoadBundle: %v", err)
		}
	})
	t.Run("a key in ca.crt", func(t *testing.T) {
		dir := t.TempDir()
		_ = ca.Save(dir)
		write(t, dir, "ca.crt", read(t, dir, "ca.crt")+read(t, dir, "ca.key"), 0o644)
		_, err := LoadBundle(dir)
		if err == nil || !strings.Contains(err.Error(), `"PRIVATE KEY"`) {
			t.Fatalf("LoadBundle: %v", err)
		}
	})
	t.Run("node certificate in ca.crt", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "ca.crt", string(encodeCerts(n.Leaf())), 0o644)
		if _, err := LoadBundle(dir); err == nil || !strings.Contains(err.Error(), "not a CA") {
			t.Fatalf("LoadBundle: %v", err)
		}
	})
	t.Run("empty ca.crt", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "ca.crt", "", 0o644)
		if _, err := LoadBundle(dir); err == nil {
			t.Fatal("LoadBundle of an empty file succeeded")
		}
	})
	t.Run("garbage key never quoted", func(t *testing.T) {
		dir := t.TempDir()
		_ = n.Save(dir)
		secret := "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXNlY3JldA==\n-----END PRIVATE KEY-----\n"
		write(t, dir, "node.key", secret, 0o600)
		_, err := LoadNode(dir)
		if err == nil || strings.Contains(err.Error(), "c2VjcmV0") {
			t.Fatalf("LoadNode: %v", err)
		}
	})
	t.Run("key file is a directory", func(t *testing.T) {
		dir := t.TempDir()
		_ = n.Save(dir)
		os.Remove(filepath.Join(dir, "node.key"))
		if err := os.Mkdir(filepath.Join(dir, "node.key"), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadNode(dir); err == nil || !strings.Contains(err.Error(), "regular") {
			t.Fatalf("LoadNode: %v", err)
		}
	})
	t.Run("missing files", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadNode(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LoadNode: %v", err)
		}
		if _, err := LoadBundle(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("LoadBundle: %v", err)
		}
	})
	t.Run("bundle limits", func(t *testing.T) {
		if err := SaveBundle(t.TempDir(), nil); err == nil {
			t.Error("SaveBundle of nothing succeeded")
		}
		if err := SaveBundle(t.TempDir(), Bundle{ca.Certificate(), ca.Certificate()}); err == nil {
			t.Error("SaveBundle with a duplicate succeeded")
		}
		var many Bundle
		for i := 0; i <= MaxBundleCerts; i++ {
			many = append(many, newTestCA(t, "c1").Certificate())
		}
		if err := SaveBundle(t.TempDir(), many); err == nil {
			t.Error("SaveBundle over the limit succeeded")
		}
	})
}

func TestLoadAcceptsSEC1Key(t *testing.T) {
	// An operator may bring a key written by openssl ("EC PRIVATE KEY").
	n := newTestNode(t, newTestCA(t, "c1"), 1)
	dir := t.TempDir()
	if err := n.Save(dir); err != nil {
		t.Fatal(err)
	}
	der, err := x509MarshalEC(n)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "node.key"), der, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadNode(dir); err != nil {
		t.Fatal(err)
	}
}
