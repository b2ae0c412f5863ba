package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client/clienttest"
	"github.com/blixard/blixard/internal/pki"
)

// newCAs makes k CA certificates (DER) for cluster "c".
func newCAs(t *testing.T, k int) [][]byte {
	t.Helper()
	var out [][]byte
	for range k {
		ca, err := pki.NewCA("c", time.Now(), 0)
		if err != nil {
			t.Fatalf("NewCA: %v", err)
		}
		out = append(out, ca.Certificate().Raw)
	}
	return out
}

// setCAs makes n's cluster record hold cas, in phase with the next phase
// at next (Unix nanoseconds).
func setCAs(n *clienttest.Node, cas [][]byte, phase apiv1.CARotationPhase, next int64) {
	n.UpdateCluster(func(r *apiv1.GetClusterStatusResponse) {
		r.Cluster.CaCertificates = cas
		r.Cluster.CaRotationPhase = phase
		r.Cluster.CaRotationNextUnixNano = next
	})
}

// clusterCAs returns the CA certificates n's cluster record holds.
func clusterCAs(n *clienttest.Node) [][]byte {
	var cas [][]byte
	n.UpdateCluster(func(r *apiv1.GetClusterStatusResponse) { cas = r.GetCluster().GetCaCertificates() })
	return cas
}

// pemCerts returns the DER of the CERTIFICATE blocks of data, and fails
// the test on anything else.
func pemCerts(t *testing.T, data string) [][]byte {
	t.Helper()
	var out [][]byte
	rest := []byte(data)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q, want CERTIFICATE", b.Type)
		}
		out = append(out, b.Bytes)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("output has %q after its PEM blocks", rest)
	}
	return out
}

var fingerprintLine = regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`)

func TestClusterCAShow(t *testing.T) {
	n := clienttest.Start(t, 1)
	cas := newCAs(t, 2)
	next := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	setCAs(n, cas, apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST, next.UnixNano())

	stdout, stderr, err := runAt(t, n, "cluster", "ca", "show")
	if err != nil {
		t.Fatalf("cluster ca show: %v (stderr %q)", err, stderr)
	}
	got := pemCerts(t, stdout)
	if len(got) != 2 || !bytes.Equal(got[0], cas[0]) || !bytes.Equal(got[1], cas[1]) {
		t.Errorf("cluster ca show printed %d certificates, want the cluster's 2, newest first:\n%s", len(got), stdout)
	}
	// The output is a bundle a client can load as its CA file.
	file := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(file, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := pki.LoadBundleFile(file); err != nil || len(b) != 2 {
		t.Errorf("LoadBundleFile of the output: %d CAs, %v; want 2", len(b), err)
	}

	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("stderr has %d lines, want one per CA and the rotation:\n%s", len(lines), stderr)
	}
	for i, der := range cas {
		cert, _ := parseCAs([][]byte{der})
		want := "CA " + pki.FingerprintOf(cert[0]).String() + ` "blixard cluster c CA", not after ` +
			cert[0].NotAfter.UTC().Format(time.RFC3339)
		if !strings.HasPrefix(lines[i], want) {
			t.Errorf("stderr line %d %q, want it to start %q", i+1, lines[i], want)
		}
	}
	if !strings.HasSuffix(lines[0], "(signs node certificates)") {
		t.Errorf("stderr line 1 %q does not say the newest CA signs", lines[0])
	}
	if want := "CA rotation: phase trust until 2026-03-04T05:06:07Z"; lines[2] != want {
		t.Errorf("stderr line 3 %q, want %q", lines[2], want)
	}
	if calls := n.Calls(); len(calls) != 1 || calls[0].Method != "GetClusterStatus" ||
		calls[0].Request.(*apiv1.GetClusterStatusRequest).GetStale() {
		t.Errorf("calls %v, want one linearizable GetClusterStatus", calls)
	}

	// Without a rotation: no rotation line.
	setCAs(n, cas[:1], apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, 0)
	stdout, stderr, err = runAt(t, n, "cluster", "ca", "show")
	if err != nil || len(pemCerts(t, stdout)) != 1 || strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, "rotation") {
		t.Errorf("cluster ca show of one CA: err %v, stdout %q, stderr %q", err, stdout, stderr)
	}
}

func TestClusterCAShowNoCAs(t *testing.T) {
	n := clienttest.Start(t, 1)
	for _, args := range [][]string{{"cluster", "ca", "show"}, {"cluster", "ca", "show", "-o", "json"}} {
		stdout, stderr, err := runAt(t, n, args...)
		want := "error: this cluster records no CA certificates (it runs --insecure, or was created before CA trust was replicated); use the node's <data-dir>/ca.crt\n"
		if err == nil || stderr != want || stdout != "" {
			t.Errorf("blixard %s: err %v, stdout %q, stderr %q; want %q", strings.Join(args, " "), err, stdout, stderr, want)
		}
		if code := ExitCode(err); code != ExitFailure {
			t.Errorf("blixard %s: exit code %d, want %d", strings.Join(args, " "), code, ExitFailure)
		}
	}
}

func TestClusterCAShowBadCertificate(t *testing.T) {
	n := clienttest.Start(t, 1)
	setCAs(n, [][]byte{[]byte("not DER")}, apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, 0)
	failAt(t, n, "CA certificate 1 of the cluster record does not parse", "cluster", "ca", "show")
}

func TestClusterCAShowJSON(t *testing.T) {
	n := clienttest.Start(t, 1)
	cas := newCAs(t, 2)
	setCAs(n, cas, apiv1.CARotationPhase_CA_ROTATION_PHASE_SERVE, time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC).UnixNano())
	stdout, stderr, err := runAt(t, n, "cluster", "ca", "show", "-o", "json")
	if err != nil {
		t.Fatalf("cluster ca show -o json: %v (stderr %q)", err, stderr)
	}
	var got struct {
		ID    string   `json:"id"`
		CAs   []string `json:"ca_certificates"`
		Phase string   `json:"ca_rotation_phase"`
		Next  string   `json:"ca_rotation_next_unix_nano"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("cluster ca show -o json printed %q: %v", stdout, err)
	}
	if got.ID != "fake-cluster" || len(got.CAs) != 2 || got.Phase != "CA_ROTATION_PHASE_SERVE" || got.Next == "0" {
		t.Errorf("cluster ca show -o json printed %s", stdout)
	}
	for i, s := range got.CAs {
		if der, err := base64.StdEncoding.DecodeString(s); err != nil || !bytes.Equal(der, cas[i]) {
			t.Errorf("ca_certificates[%d] is not the cluster's CA %d: %v", i, i+1, err)
		}
	}
	if !strings.Contains(stderr, "CA rotation: phase serve until 2026-03-04T05:06:07Z\n") {
		t.Errorf("stderr %q lacks the rotation", stderr)
	}
}

// TestClusterCAShowFeedsTheClient: what "ca show" prints during a rotation
// is a CA file a client can reach the cluster with.
func TestClusterCAShowFeedsTheClient(t *testing.T) {
	n, caFile := startSecure(t)
	old, err := pki.LoadBundleFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	setCAs(n, [][]byte{newCAs(t, 1)[0], old[0].Raw}, apiv1.CARotationPhase_CA_ROTATION_PHASE_TRUST, 1)
	stdout, _, err := runSecureAt(t, n, caFile, testToken, "cluster", "ca", "show")
	if err != nil {
		t.Fatalf("cluster ca show over TLS: %v", err)
	}
	bundle := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(bundle, []byte(stdout), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRunSecureAt(t, n, bundle, testToken, "cluster", "status")
	if got := lastToken(t, n); got != testToken {
		t.Errorf("node got token %q, want %q", got, testToken)
	}
}

func TestClusterCARotate(t *testing.T) {
	n := clienttest.Start(t, 1)
	old := newCAs(t, 1)
	setCAs(n, old, apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, 0)

	stdout, stderr, err := runAt(t, n, "cluster", "ca", "rotate", "--overlap", "90s")
	if err != nil {
		t.Fatalf("cluster ca rotate: %v (stderr %q)", err, stderr)
	}
	cas := clusterCAs(n)
	if len(cas) != 2 || !bytes.Equal(cas[1], old[0]) {
		t.Fatalf("cluster holds %d CAs after the rotation, want the new one and the old", len(cas))
	}
	if want := caFingerprint(cas[0]) + "\n"; stdout != want || !fingerprintLine.MatchString(stdout) {
		t.Errorf("stdout %q, want the new CA's fingerprint alone: %q", stdout, want)
	}
	// The fake's write at index 1 is at 03:04:06; phase trust lasts 90s.
	wantErr := "phase trust until 2026-01-02T03:05:36Z: every node trusts both CAs and gets a certificate from the new one; " +
		"update clients' CA files now (blixard cluster ca show > ca.crt)\n" +
		"then phase serve for another 1m30s, after which the old CA is dropped\n"
	if stderr != wantErr {
		t.Errorf("stderr\n%s\nwant\n%s", stderr, wantErr)
	}
	req := lastRequest(t, n, "RotateCa").(*apiv1.RotateCaRequest)
	want := &apiv1.RotateCaRequest{ClientRequestId: req.GetClientRequestId(), OverlapSeconds: 90}
	if req.GetClientRequestId() == "" || !proto.Equal(req, want) {
		t.Errorf("RotateCa request %v, want %v with a client request id", req, want)
	}

	// The status shows the new CA and the rotation.
	status := mustRunAt(t, n, "cluster", "status")
	for _, line := range []string{
		"CA:             " + caFingerprint(cas[0]) + "\n",
		"CA rotation:    phase trust until 2026-01-02T03:05:36Z\n",
	} {
		if !strings.Contains(status, line) {
			t.Errorf("cluster status lacks %q:\n%s", line, status)
		}
	}

	// A second rotation waits for this one.
	failAt(t, n, "a CA rotation is under way", "cluster", "ca", "rotate")
}

func TestClusterCARotateOverlap(t *testing.T) {
	for _, tc := range []struct {
		overlap string
		secs    int64
		then    string
	}{
		{"", 3600, "1h"},
		{"5s", 5, "5s"},
		{"5500ms", 6, "6s"},
		{"24h", 86400, "24h"},
		{"1h30m", 5400, "1h30m"},
		{"168h", 168 * 3600, "168h"},
	} {
		n := clienttest.Start(t, 1)
		setCAs(n, newCAs(t, 1), apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, 0)
		args := []string{"cluster", "ca", "rotate"}
		if tc.overlap != "" {
			args = append(args, "--overlap", tc.overlap)
		}
		_, stderr, err := runAt(t, n, args...)
		if err != nil {
			t.Errorf("blixard %s: %v (stderr %q)", strings.Join(args, " "), err, stderr)
			continue
		}
		if got := lastRequest(t, n, "RotateCa").(*apiv1.RotateCaRequest).GetOverlapSeconds(); got != tc.secs {
			t.Errorf("--overlap %q sent %d seconds, want %d", tc.overlap, got, tc.secs)
		}
		if want := "then phase serve for another " + tc.then + ", "; !strings.Contains(stderr, want) {
			t.Errorf("--overlap %q: stderr %q lacks %q", tc.overlap, stderr, want)
		}
	}
}

func TestClusterCARotateBadFlags(t *testing.T) {
	n := clienttest.Start(t, 1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--overlap", "4s"}, "--overlap must be at least 5s and at most 168h (7 days), got 4s (see 'blixard cluster ca rotate --help')"},
		{[]string{"--overlap", "4999ms"}, "--overlap must be at least 5s and at most 168h (7 days), got 4.999s"},
		{[]string{"--overlap", "0"}, "got 0s"},
		{[]string{"--overlap", "-1h"}, "got -1h0m0s"},
		{[]string{"--overlap", "169h"}, "got 169h0m0s"},
		{[]string{"--overlap", "soon"}, `invalid argument "soon" for "--overlap" flag`},
		{[]string{"extra"}, `blixard cluster ca rotate takes no arguments; got "extra"`},
	} {
		args := append([]string{"cluster", "ca", "rotate"}, tc.args...)
		failAt(t, n, tc.want, args...)
	}
	failAt(t, n, `blixard cluster ca show takes no arguments; got "extra"`, "cluster", "ca", "show", "extra")
	if len(n.Calls()) != 0 {
		t.Errorf("node got %d calls, want none", len(n.Calls()))
	}
}

func TestClusterCARotateJSON(t *testing.T) {
	n := clienttest.Start(t, 1)
	setCAs(n, newCAs(t, 1), apiv1.CARotationPhase_CA_ROTATION_PHASE_NONE, 0)
	stdout, stderr, err := runAt(t, n, "cluster", "ca", "rotate", "-o", "json")
	if err != nil {
		t.Fatalf("cluster ca rotate -o json: %v (stderr %q)", err, stderr)
	}
	var got struct {
		Cluster struct {
			CAs   []string `json:"ca_certificates"`
			Phase string   `json:"ca_rotation_phase"`
			Next  string   `json:"ca_rotation_next_unix_nano"`
		} `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("cluster ca rotate -o json printed %q: %v", stdout, err)
	}
	cas := clusterCAs(n)
	if len(got.Cluster.CAs) != 2 || got.Cluster.CAs[0] != base64.StdEncoding.EncodeToString(cas[0]) ||
		got.Cluster.Phase != "CA_ROTATION_PHASE_TRUST" || got.Cluster.Next == "0" {
		t.Errorf("cluster ca rotate -o json printed %s", stdout)
	}
	if !strings.HasPrefix(stderr, "phase trust until 2026-01-02T04:04:06Z: ") {
		t.Errorf("stderr %q, want the next steps", stderr)
	}
}

func TestClusterCARotateRefused(t *testing.T) {
	// A cluster without a CA (the fake's default) has none to rotate.
	n := clienttest.Start(t, 1)
	failAt(t, n, "this cluster has no CA to rotate", "cluster", "ca", "rotate")

	// A token whose role is not admin.
	n.SetHook(func(_ context.Context, method string, _ proto.Message, next func() (proto.Message, error)) (proto.Message, error) {
		if method == "RotateCa" {
			return nil, clienttest.PermissionDenied("permission denied: RotateCa needs the admin role")
		}
		return next()
	})
	stdout, errOut, err := runAt(t, n, "cluster", "ca", "rotate")
	if code := ExitCode(err); code != ExitPermissionDenied || stdout != "" || !strings.Contains(errOut, "needs the admin role") {
		t.Errorf("cluster ca rotate refused: exit code %d, stdout %q, stderr %q; want %d", code, stdout, errOut, ExitPermissionDenied)
	}
}
