package runtime

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/dashboard"
	"github.com/blixard/blixard/internal/pki"
	"github.com/blixard/blixard/internal/server"
)

// dashboardConsoleBytes is how much of a VM's console its page shows.
const dashboardConsoleBytes = 16 << 10

// dashboardTLS reports whether the dashboard is served over HTTPS with
// tokens required: always off loopback, and on loopback when asked.
func (c Config) dashboardTLS() bool { return c.HTTPTLS || !loopback(c.HTTPListen) }

// serveDashboard serves the web dashboard on lis until ctx ends.
func (n *Node) serveDashboard(ctx context.Context, lis net.Listener) {
	secure := n.cfg.dashboardTLS()
	cfg := dashboard.Config{Backend: n, Consoles: n, RequireToken: secure, Secure: secure, Logger: n.log}
	// Browsers send cookies to every port of a host: each node's dashboard
	// keeps its sign-in under its own name (__Host-: HTTPS, this host only).
	if _, port, err := net.SplitHostPort(lis.Addr().String()); err == nil {
		cfg.CookieName = "blixard_token_" + port
		if secure {
			cfg.CookieName = "__Host-" + cfg.CookieName
		}
	}
	if n.sec != nil {
		cfg.CheckToken = func(tok string) error {
			role, err := n.sec.ACLRole(tok)
			if err == nil && !role.Grants(authz.Read) {
				err = errors.New("the token's role may not read the cluster")
			}
			return err
		}
	}
	srv := &http.Server{
		Handler:           dashboard.Handler(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		// Requests, the live streams too, end with the node.
		BaseContext: func(net.Listener) context.Context { return ctx },
		// Failed handshakes of browsers that do not trust the CA yet are
		// not the node's news.
		ErrorLog: slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}()
	var err error
	if secure {
		srv.TLSConfig = n.sec.httpsTLS()
		err = srv.ServeTLS(lis, "", "")
	} else {
		err = srv.Serve(lis)
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		n.log.Warn("dashboard server stopped", "err", err)
	}
}

// httpsTLS is the dashboard's TLS: the node's current certificate, which
// browsers check against the cluster CA; viewers authenticate by token.
func (s *security) httpsTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			node, _, err := s.current()
			if err != nil {
				return nil, err
			}
			c := node.TLSCertificate()
			return &c, nil
		},
	}
}

// HTTPAddr is the address the dashboard is served on; "" without
// Config.HTTPListen.
func (n *Node) HTTPAddr() string {
	if n.httpLis == nil {
		return ""
	}
	return n.httpLis.Addr().String()
}

// ConsoleTail implements dashboard.Consoles: the tail of VM name's console,
// read from this node's disk when the VM runs (or last ran) here, else
// asked of the node it is placed on with the viewer's token.
func (n *Node) ConsoleTail(ctx context.Context, name, token string) (string, error) {
	resp, err := n.Do(ctx, &apiv1.Request{Kind: &apiv1.Request_GetVm{GetVm: &apiv1.GetVmRequest{Name: name, Stale: true}}})
	if err != nil {
		return "", err
	}
	if e := resp.GetError(); e != nil {
		return "", errors.New(e.GetMessage())
	}
	vm := resp.GetGetVm().GetVm()
	owner := vm.GetNodeId()
	if owner == 0 || owner == n.cfg.ID {
		return n.localConsoleTail(name, vm)
	}
	if n.sec != nil && token == "" {
		return "", fmt.Errorf("the console of VM %q is kept on node %d: sign in with a viewer token to read it through this node, or open node %d's dashboard", name, owner, owner)
	}
	return n.remoteConsoleTail(ctx, name, owner, token)
}

// localConsoleTail reads VM name's console from this node's disk.
func (n *Node) localConsoleTail(name string, vm *apiv1.Vm) (string, error) {
	if n.wl == nil {
		return "", errors.New("this node runs no VMs (--no-workloads)")
	}
	path, err := n.ConsoleLog(name)
	if err != nil {
		return "", err
	}
	b, err := server.ConsoleTail(path, dashboardConsoleBytes)
	switch {
	case errors.Is(err, fs.ErrNotExist) && vm.GetNodeId() == 0:
		return "", fmt.Errorf("VM %q has not run on any node yet (it is %s)", name, enumLabel(vm.GetState().String(), "VM_STATE_"))
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("VM %q has written no console output on this node yet", name)
	case err != nil:
		return "", fmt.Errorf("read the console log: %w", err)
	}
	return string(b), nil
}

// maxRemoteConsole bounds what is read of another node's answer.
const maxRemoteConsole = 4 * dashboardConsoleBytes

// remoteConsoleTail asks node owner for VM name's console tail, as the
// viewer (by token): that node checks the token itself.
func (n *Node) remoteConsoleTail(ctx context.Context, name string, owner uint64, token string) (string, error) {
	resp, err := n.Do(ctx, &apiv1.Request{Kind: &apiv1.Request_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusRequest{Stale: true}}})
	if err != nil {
		return "", err
	}
	var addr string
	for _, nd := range resp.GetGetClusterStatus().GetNodes() {
		if nd.GetId() == owner {
			addr = nd.GetAddress()
		}
	}
	if addr == "" {
		return "", fmt.Errorf("node %d, which keeps VM %q's console, has no known address", owner, name)
	}
	creds := insecure.NewCredentials()
	if n.sec != nil {
		_, bundle, err := n.sec.current()
		if err != nil {
			return "", err
		}
		// The viewer's token goes only to the node that keeps the console,
		// and only while it is a member.
		tlsCfg := pki.ClientOnlyTLS(bundle.Pool())
		verify := tlsCfg.VerifyConnection
		tlsCfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if err := verify(cs); err != nil {
				return err
			}
			// verify checked the chain and usage of this very leaf.
			id, err := pki.NodeIDFromCert(cs.PeerCertificates[0])
			switch {
			case err != nil:
				return err
			case id != owner:
				return fmt.Errorf("the server at %s is node %d, not node %d", addr, id, owner)
			}
			return n.sec.PeerAllowed(id)
		}
		creds = credentials.NewTLS(tlsCfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return "", fmt.Errorf("dial node %d at %s: %w", owner, addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if token != "" && n.sec != nil {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	stream, err := apiv1grpc.NewVmServiceClient(conn).StreamVmLogs(ctx, &apiv1.StreamVmLogsRequest{Name: name, TailBytes: dashboardConsoleBytes})
	if err != nil {
		return "", fmt.Errorf("node %d: %s", owner, status.Convert(err).Message())
	}
	var out []byte
	for len(out) < maxRemoteConsole {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("node %d: %s", owner, status.Convert(err).Message())
		}
		out = append(out, chunk.GetData()...)
	}
	return string(out), nil
}
