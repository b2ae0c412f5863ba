package runtime

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/pki"
)

// startNode runs a one-node cluster in this process on a free port and
// returns a connection to it and a function that stops it. The VMs these
// tests create are never started: booting them is processtest's part.
func startNode(t *testing.T, dir string) (*grpc.ClientConn, func()) {
	t.Helper()
	_, conn, stop := startNodeWith(t, dir, nil)
	return conn, stop
}

// startNodeWith is startNode with the config edited by edit, and the node.
func startNodeWith(t *testing.T, dir string, edit func(*Config)) (*Node, *grpc.ClientConn, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := Config{
		ID: 1, Listen: "127.0.0.1:0", DataDir: dir,
		Capacity:     &apiv1.Resources{Vcpus: 4, MemoryMib: 4096},
		TickInterval: 20 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		Out:          io.Discard,
	}
	if edit != nil {
		edit(&cfg)
	}
	n, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	// The node is secure: trust the CA it made, and use its admin token.
	bundle, err := pki.LoadBundle(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(dir, AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(n.Addr(),
		grpc.WithTransportCredentials(credentials.NewTLS(pki.ClientOnlyTLS(bundle.Pool()))),
		grpc.WithPerRPCCredentials(bearerToken(strings.TrimSpace(string(tok)))))
	if err != nil {
		t.Fatal(err)
	}
	// The admin token works once the cluster's first entry is applied.
	eventually(t, "the admin token accepted", func() error {
		_, err := apiv1grpc.NewClusterServiceClient(conn).GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{Stale: true})
		return err
	})
	stop := func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	return n, conn, stop
}

// eventually retries f until it succeeds or 30 s pass.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		err := f()
		if err == nil {
			return
		}
		select {
		case <-deadline:
			t.Fatalf("%s: %v", what, err)
		case <-poll.C:
		}
	}
}

func TestNodeServesWritesWatchesAndRestartsFromItsDisk(t *testing.T) {
	dir := t.TempDir()
	conn, stop := startNode(t, dir)
	vms := apiv1grpc.NewVmServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	watch, err := vms.WatchVms(ctx, &apiv1.WatchVmsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Until the node has registered the images it offers, a create is
	// refused (and the refusal remembered under its request id).
	eventually(t, "the node registered", func() error {
		st, err := apiv1grpc.NewClusterServiceClient(conn).GetClusterStatus(ctx, &apiv1.GetClusterStatusRequest{})
		if err == nil && (len(st.GetNodes()) != 1 || len(st.GetNodes()[0].GetImages()) == 0) {
			err = fmt.Errorf("nodes %v", st.GetNodes())
		}
		return err
	})
	eventually(t, "create a VM", func() error {
		_, err := vms.CreateVm(ctx, &apiv1.CreateVmRequest{ClientRequestId: "c1", Name: "web",
			Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}})
		return err
	})
	ev, err := watch.Recv()
	if err != nil || ev.GetVm().GetName() != "web" || ev.GetVm().GetState() != apiv1.VmState_VM_STATE_STOPPED {
		t.Fatalf("watch event = %v, %v; want web stopped", ev, err)
	}
	stop()

	conn, stop = startNode(t, dir)
	defer stop()
	vms = apiv1grpc.NewVmServiceClient(conn)
	eventually(t, "read the VM after a restart", func() error {
		got, err := vms.GetVm(ctx, &apiv1.GetVmRequest{Name: "web"})
		if err == nil && got.GetVm().GetName() != "web" {
			t.Fatalf("after restart: %v", got)
		}
		return err
	})
	// The retried create is answered from the remembered response.
	again, err := vms.CreateVm(ctx, &apiv1.CreateVmRequest{ClientRequestId: "c1", Name: "web",
		Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}})
	if err != nil || again.GetVm().GetName() != "web" {
		t.Fatalf("retried create after restart = %v, %v", again, err)
	}
}

// bearerToken sends an ACL token with every call.
type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return true }
