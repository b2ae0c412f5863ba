package runtime

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blixard/blixard/internal/pki"
)

// With --http-tls the dashboard is HTTPS with the node's certificate,
// which a client checking host names against the cluster CA (as a browser
// does) accepts, and every data request needs a token.
func TestDashboardHTTPS(t *testing.T) {
	dir := t.TempDir()
	n, _, stop := startNodeWith(t, dir, func(c *Config) { c.HTTPListen, c.HTTPTLS = "127.0.0.1:0", true })
	defer stop()
	bundle, err := pki.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	admin := strings.TrimSpace(string(raw))
	// Host names checked, as a browser does: no InsecureSkipVerify.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: bundle.Pool()}}}
	t.Cleanup(hc.CloseIdleConnections)
	base := "https://" + n.HTTPAddr()
	get := func(path, tok string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	if r := get("/", ""); r.StatusCode != http.StatusOK {
		t.Errorf("page: status %d", r.StatusCode)
	}
	for _, path := range []string{"/api/overview", "/api/events", "/api/vms/x", "/api/stream"} {
		if r := get(path, ""); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a token: status %d, want 401", path, r.StatusCode)
		}
		if r := get(path, "bxa.0000000000000000.00000000000000000000000000000000"); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s with an unknown token: status %d, want 401", path, r.StatusCode)
		}
	}
	r := get("/api/overview", admin)
	var o struct {
		NodeID   uint64 `json:"node_id"`
		LeaderID uint64 `json:"leader_id"`
		Nodes    []struct {
			ID uint64 `json:"id"`
		} `json:"nodes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&o); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("overview with the admin token: status %d, %v", r.StatusCode, err)
	}
	if o.NodeID != 1 || len(o.Nodes) != 1 || o.Nodes[0].ID != 1 {
		t.Errorf("overview = %+v", o)
	}

	// Sign-in sets a Secure, HttpOnly cookie of this host only.
	req, _ := http.NewRequest(http.MethodPost, base+"/api/login", strings.NewReader(`{"token":"`+admin+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, port, _ := net.SplitHostPort(n.HTTPAddr())
	cs := resp.Cookies()
	if resp.StatusCode != http.StatusOK || len(cs) != 1 || cs[0].Name != "__Host-blixard_token_"+port || !cs[0].Secure || !cs[0].HttpOnly {
		t.Errorf("sign-in: status %d, cookies %+v", resp.StatusCode, cs)
	}

	// Plain HTTP to the TLS port gets nothing.
	if resp, err := http.Get("http://" + n.HTTPAddr() + "/api/overview"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP to the HTTPS dashboard answered 200")
		}
	}
}

// checkConfigErr fails t (going on) when err does not match wantErr: nil
// for "", else an error that names wantErr.
func checkConfigErr(t *testing.T, name string, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Errorf("%s: %v", name, err)
	case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
		t.Errorf("%s: err %v, want one naming %q", name, err, wantErr)
	}
}

// Where the dashboard may listen: TLS needs the cluster's certificates,
// which --insecure has not.
func TestDashboardListenRules(t *testing.T) {
	for _, c := range []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{"loopback", func(c *Config) { c.HTTPListen = "127.0.0.1:8081" }, ""},
		{"anywhere, secure", func(c *Config) { c.HTTPListen = "0.0.0.0:8081" }, ""},
		{"loopback, insecure", func(c *Config) { c.HTTPListen, c.Insecure = "127.0.0.1:8081", true }, ""},
		{"anywhere, insecure", func(c *Config) { c.HTTPListen, c.Insecure = "0.0.0.0:8081", true }, "--insecure"},
		{"tls on loopback, insecure", func(c *Config) { c.HTTPListen, c.HTTPTLS, c.Insecure = "127.0.0.1:8081", true, true }, "--insecure"},
		{"not host:port", func(c *Config) { c.HTTPListen = "8081" }, "not host:port"},
	} {
		cfg := Config{ID: 1, DataDir: t.TempDir(), Listen: "127.0.0.1:7001"}
		c.edit(&cfg)
		_, err := cfg.withDefaults()
		checkConfigErr(t, c.name, err, c.wantErr)
	}
	if !(Config{HTTPListen: "10.0.0.1:8081"}).dashboardTLS() || (Config{HTTPListen: "127.0.0.1:8081"}).dashboardTLS() {
		t.Error("dashboardTLS: want TLS off loopback only (without HTTPTLS)")
	}
}
