package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/client"
	"github.com/blixard/blixard/internal/authz"
	"github.com/blixard/blixard/internal/pki"
)

// How "blixard dev" brings up a secure cluster: node 1 bootstraps and
// writes the CA and the first admin token into its data directory; dev
// copies both up into --data-dir, where clients find them, and with the
// admin token makes a join token for the other nodes.

// Files of a dev cluster.
const (
	devAdminTokenFile = "admin.token"  // in node 1's data directory and --data-dir
	devCAFileName     = pki.CACertFile // the same
)

// devPoll is how often dev looks for node 1's files and retries making a
// join token (a variable for tests).
var devPoll = 200 * time.Millisecond

// devAccess is how clients reach a dev cluster.
type devAccess struct {
	addrs []string
	// insecure: plaintext, no token. Else caFile (an absolute path) and
	// token say how, and tls is the client's TLS config from caFile.
	insecure bool
	caFile   string
	token    string
	tls      *tls.Config
}

// flags are the blixard global flags that reach the cluster.
func (a devAccess) flags() []string {
	f := []string{"--addr", strings.Join(a.addrs, ",")}
	if a.insecure {
		return append(f, "--insecure")
	}
	return append(f, "--ca", a.caFile, "--token", a.token)
}

// exports are the shell lines that point other commands at the cluster.
func (a devAccess) exports() []string {
	lines := []string{"export " + addrEnv + "=" + strings.Join(a.addrs, ",")}
	if a.insecure {
		return append(lines, "export "+insecureEnv+"=1")
	}
	return append(lines, "export "+caEnv+"="+shellQuote(a.caFile), "export "+tokenEnv+"="+a.token)
}

// client returns a client of the cluster.
func (a devAccess) client(ctx context.Context) (*client.Client, error) {
	return client.New(ctx, client.Options{Addrs: a.addrs, TLS: a.tls, Token: a.token})
}

// shellQuote quotes s for a POSIX shell if it needs it.
func shellQuote(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,=@%", r))
	}) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// waitForBootstrap waits, within devFormTimeout and showing progress,
// until node 1 has written a CA certificate and an admin token that read
// back whole; then it copies both into dataDir (ca.crt mode 0644,
// admin.token 0600) and returns the cluster's access through them. It
// fails if node 1 exits first.
func waitForBootstrap(ctx context.Context, pc progressConfig, node1 *devNode, dataDir string, addrs []string) (devAccess, error) {
	ctx, cancel := context.WithTimeout(ctx, devFormTimeout)
	defer cancel()
	dir1 := filepath.Join(dataDir, "n1")
	p := pc.start("waiting for node 1 to write its CA and admin token")
	defer p.Clear() // what comes next says it is done
	for {
		access, caPEM, err := readDevBootstrap(dir1, addrs)
		if err == nil {
			return access, saveDevAccess(dataDir, &access, caPEM)
		}
		p.Update(err.Error(), "")
		select {
		case err := <-node1.done:
			node1.done <- err
			return devAccess{}, fmt.Errorf("node 1 exited before it wrote its CA and admin token (%v); see %s", err, node1.log.Name())
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return devAccess{}, fmt.Errorf("node 1 did not write its CA and admin token within %s (%v); see %s",
					devFormTimeout, err, node1.log.Name())
			}
			return devAccess{}, ctx.Err()
		case <-time.After(devPoll):
		}
	}
}

// readDevBootstrap reads node 1's CA certificate and admin token from its
// data directory dir1.
func readDevBootstrap(dir1 string, addrs []string) (devAccess, []byte, error) {
	caPath := filepath.Join(dir1, devCAFileName)
	tokenPath := filepath.Join(dir1, devAdminTokenFile)
	caPEM, err := os.ReadFile(caPath)
	if errors.Is(err, os.ErrNotExist) {
		return devAccess{}, nil, fmt.Errorf("no %s yet", caPath)
	}
	if err != nil {
		return devAccess{}, nil, err
	}
	bundle, err := pki.LoadBundleFile(caPath)
	if err != nil {
		return devAccess{}, nil, err
	}
	raw, err := os.ReadFile(tokenPath)
	if errors.Is(err, os.ErrNotExist) {
		return devAccess{}, nil, fmt.Errorf("no %s yet", tokenPath)
	}
	if err != nil {
		return devAccess{}, nil, err
	}
	// A token only partly written yet does not parse.
	token := strings.TrimSpace(string(raw))
	if secret, err := authz.ParseToken(token); err != nil || secret.Kind != apiv1.TokenKind_TOKEN_KIND_ACL {
		return devAccess{}, nil, fmt.Errorf("%s holds no whole ACL token yet", tokenPath)
	}
	return devAccess{addrs: addrs, token: token, tls: pki.ClientOnlyTLS(bundle.Pool())}, caPEM, nil
}

// saveDevAccess copies the CA certificate and the admin token into
// dataDir, where clients find them, and sets access.caFile.
func saveDevAccess(dataDir string, access *devAccess, caPEM []byte) error {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	access.caFile = filepath.Join(abs, devCAFileName)
	if err := writeFileAs(access.caFile, caPEM, 0o644); err != nil {
		return err
	}
	return writeFileAs(filepath.Join(abs, devAdminTokenFile), []byte(access.token+"\n"), 0o600)
}

// writeFileAs replaces path with data, mode perm, through a temporary
// file (created 0600) renamed into place: a reader sees the old file or
// the new one, and a secret is never readable by others.
func writeFileAs(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// devHasCert reports whether the node whose data directory is dir holds
// its certificate: it has joined, and needs no join token.
func devHasCert(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, pki.NodeCertFile))
	return err == nil && st.Mode().IsRegular()
}

// devNeedJoin reports whether any of the nodes whose data directories are
// dirs has yet to join.
func devNeedJoin(dirs []string) bool {
	return slices.ContainsFunc(dirs, func(d string) bool { return !devHasCert(d) })
}

// devNodeEnv is the environment of a dev node: dev's own, with
// BLIXARD_JOIN_TOKEN set to joinToken if that is set and removed if not
// (a token in dev's own environment is not meant for its nodes).
func devNodeEnv(joinToken string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, joinTokenEnv+"=") })
	if joinToken != "" {
		env = append(env, joinTokenEnv+"="+joinToken)
	}
	return env
}

// createDevJoinToken makes the voter join token the other nodes join
// with. It retries, within devFormTimeout and showing progress, while the
// cluster cannot take it yet: the admin token works only once the cluster
// has applied its first entries, and there may be no leader yet. It fails
// if node 1 exits first.
func createDevJoinToken(ctx context.Context, pc progressConfig, c *client.Client, node1 *devNode) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, devFormTimeout)
	defer cancel()
	p := pc.start("waiting for the cluster to take the admin token")
	defer p.Clear()
	// Each call gets a request id of its own, so each makes its own token
	// and secret: one whose answer was lost just expires unused.
	req := &apiv1.CreateTokenRequest{
		Kind:        apiv1.TokenKind_TOKEN_KIND_JOIN,
		NodeRole:    apiv1.NodeRole_NODE_ROLE_VOTER,
		Description: "blixard dev",
	}
	var reason string // why the last attempt failed
	for {
		actx, acancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.CreateToken(actx, req)
		acancel()
		if err == nil && resp.GetSecret() != "" {
			p.Clear()
			fmt.Fprintf(pc.w, "created join token %s for the other nodes (expires %s)\n",
				resp.GetToken().GetId(), timeText(resp.GetToken().GetExpiresUnixNano()))
			return resp.GetSecret(), nil
		}
		switch {
		case err == nil:
			return "", errors.New("make a join token: the cluster sent no secret")
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			if reason == "" {
				reason = devErrorText(err)
			}
			return "", fmt.Errorf("could not make a join token within %s: %s", devFormTimeout, reason)
		case ctx.Err() != nil:
			return "", ctx.Err()
		case !devJoinTokenRetryable(err):
			return "", fmt.Errorf("make a join token: %w", err)
		}
		reason = devErrorText(err)
		p.Update(reason, "")
		select {
		case err := <-node1.done:
			node1.done <- err
			return "", fmt.Errorf("node 1 exited while dev made a join token (%v); see %s", err, node1.log.Name())
		case <-ctx.Done():
		case <-time.After(devPoll):
		}
	}
}

// devJoinTokenRetryable reports whether a failure to make the join token
// may pass as the new cluster settles.
func devJoinTokenRetryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true // one attempt's own timeout
	}
	switch status.Code(err) {
	case codes.Unauthenticated, codes.Unavailable, codes.FailedPrecondition:
		return true
	}
	return false
}

// devErrorText words err for dev's progress lines: the node's message, or
// its code.
func devErrorText(err error) string {
	e := client.ErrorOf(err)
	if msg := e.GetMessage(); msg != "" {
		return oneLine(msg)
	}
	return strings.ToLower(strings.TrimPrefix(e.GetCode().String(), "ERROR_CODE_"))
}
