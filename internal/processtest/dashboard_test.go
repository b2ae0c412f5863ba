package processtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// browserTimeout bounds one step in the browser.
const browserTimeout = 30 * time.Second

// chromium finds Debian's chromium. `make test` installs it and sets
// BLIXARD_NEED_CHROMIUM, so there its absence fails the test; a bare `go
// test` on a machine without it skips, saying so.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("BLIXARD_NEED_CHROMIUM") != "" {
		t.Fatal("chromium is not installed, and BLIXARD_NEED_CHROMIUM says it must be (make test-deps installs Debian's chromium package)")
	}
	t.Skip("chromium is not installed: run `make test-deps` (it installs Debian's chromium package) to run the dashboard test")
	return ""
}

// browser is one headless Chromium tab.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	thrown []string // the page's uncaught JavaScript exceptions
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // the tests run as root, where Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(1440, 1000),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first Run starts the browser; it lives as long as ctx.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg += " " + d.Exception.Description
			}
			b.mu.Lock()
			b.thrown = append(b.thrown, fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, msg))
			b.mu.Unlock()
		}
	}); err != nil {
		t.Fatalf("listen to the page: %v", err)
	}
	// At the end, the page must have thrown nothing.
	t.Cleanup(func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, e := range b.thrown {
			t.Errorf("the page threw: %s", e)
		}
	})
	return b
}

// do runs steps with a timeout.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("browser: %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func (b *browser) eval(js string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[string](js))
}

// waitText waits until the JavaScript expression js (a string) satisfies ok.
func (b *browser) waitText(timeout time.Duration, what, js string, ok func(string) bool) string {
	b.t.Helper()
	var got string
	waitFor(b.t, timeout, what, func() (bool, string) {
		var err error
		got, err = b.eval(js)
		if err != nil {
			return false, err.Error()
		}
		return ok(got), fmt.Sprintf("page shows %q", got)
	})
	return got
}

// screenshot saves the whole page as name under the test's artifact
// directory (kept with `go test -artifacts`, as `make test` runs it).
func (b *browser) screenshot(name string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(b.t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("save screenshot: %v", err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}

// TestDashboard opens a node's dashboard in headless Chromium: it shows
// the three nodes, the leader and a running VM, signs in with a viewer
// token to read the VM's console on its page, and, when the leader is
// killed, shows the new one without a reload.
func TestDashboard(t *testing.T) {
	c := newCluster(t)
	web := map[uint64]string{}
	for id := uint64(1); id <= 3; id++ {
		web[id] = freeAddr(t)
		n := c.add(id, "--http-listen", web[id])
		if id == 1 {
			n.start("")
		} else {
			n.start(c.node(1).addr)
		}
	}
	c.waitVoters(3)
	addrs := strings.Join(c.addrs(), ",")
	c.mustCLI(addrs, "vm", "create", "dash", "--vcpus", "1", "--memory", "128", "--restart", "always")
	vm := awaitVm(t, c, "dash", "running", isState(apiv1.VmState_VM_STATE_RUNNING))
	viewer := c.createToken(&apiv1.CreateTokenRequest{Kind: apiv1.TokenKind_TOKEN_KIND_ACL,
		AccessRole: apiv1.AccessRole_ACCESS_ROLE_VIEWER, TtlSeconds: 3600, Description: "dashboard test"})

	// Watch through a follower that does not run the VM: the page outlives
	// the leader, and the VM's console is read from another node.
	_, leader := c.mustLeader()
	var watch *node
	for _, n := range c.byID() {
		if n.id != leader.id && n.id != vm.GetNodeId() {
			watch = n
			break
		}
	}
	base := "http://" + web[watch.id]
	b := newBrowser(t)
	b.do("open the overview", chromedp.Navigate(base+"/"))
	b.waitText(formTimeout, "three node rows", `String(document.querySelectorAll("#nodes tbody tr[data-node]").length)`,
		func(s string) bool { return s == "3" })
	b.waitText(formTimeout, "the leader highlighted", `Array.from(document.querySelectorAll("#nodes tr.leader")).map(r => r.dataset.node).join(",")`,
		func(s string) bool { return s == strconv.FormatUint(leader.id, 10) })
	b.waitText(formTimeout, "the leader card", `document.getElementById("leader").textContent`,
		func(s string) bool { return s == fmt.Sprintf("node %d", leader.id) })
	b.waitText(formTimeout, "VM dash running", `(document.querySelector('#vms tr[data-vm="dash"]') || {dataset: {}}).dataset.state || ""`,
		func(s string) bool { return s == "running" })
	term := b.waitText(formTimeout, "the term", `document.getElementById("term").textContent`,
		func(s string) bool { n, err := strconv.Atoi(s); return err == nil && n > 0 })
	b.waitText(formTimeout, "a recent event naming dash", `document.getElementById("events").textContent`,
		func(s string) bool { return strings.Contains(s, "vm dash") })

	// The VM's page: its state and events at once; its console only once
	// signed in (the node that keeps it wants the viewer's token).
	b.do("open VM dash's page", chromedp.Navigate(base+"/vm/dash"))
	b.waitText(formTimeout, "dash's state on its page", `document.getElementById("vm-state").dataset.state || ""`,
		func(s string) bool { return s == "running" })
	b.waitText(formTimeout, "dash's events on its page", `document.getElementById("events").textContent`,
		func(s string) bool { return strings.Contains(s, "running") })
	b.waitText(formTimeout, "the console asking for a sign-in", `document.getElementById("console-note").textContent`,
		func(s string) bool { return strings.Contains(s, "sign in") })
	b.do("sign in",
		chromedp.Click(chromedp.CSS("#session button")),
		chromedp.SendKeys(chromedp.CSS("#token"), viewer),
		chromedp.Click(chromedp.CSS("#login-form button")),
	)
	b.waitText(formTimeout, "signed in", `document.getElementById("session").textContent`,
		func(s string) bool { return s == "Sign out" })
	b.waitText(vmTimeout, fmt.Sprintf("dash's console tail, read from node %d", vm.GetNodeId()), `document.getElementById("console").textContent`,
		func(s string) bool { return strings.Contains(s, "[agent ready") })
	b.screenshot("dashboard-vm.png")

	// The page of the node that runs it lists it.
	b.do("open the VM's node's page", chromedp.Click(chromedp.CSS(`#vm-node a`)))
	b.waitText(formTimeout, fmt.Sprintf("node %d's page listing dash", vm.GetNodeId()),
		`location.pathname + " " + ((document.querySelector('#vms tr[data-vm="dash"]') || {dataset: {}}).dataset.state || "")`,
		func(s string) bool { return s == fmt.Sprintf("/node/%d running", vm.GetNodeId()) })
	b.waitText(formTimeout, "the node's status", `document.getElementById("node-status").dataset.status || ""`,
		func(s string) bool { return s == "ready" })
	b.screenshot("dashboard-node.png")

	b.do("back to the overview", chromedp.Navigate(base+"/"))
	b.waitText(formTimeout, "three node rows again", `String(document.querySelectorAll("#nodes tbody tr[data-node]").length)`,
		func(s string) bool { return s == "3" })
	b.waitText(formTimeout, "still signed in", `document.getElementById("session").textContent`,
		func(s string) bool { return s == "Sign out" })
	b.screenshot("dashboard.png")

	// Kill the leader: the open page shows the new one, in a later term.
	leader.kill9()
	b.waitText(formTimeout+catchTimeout, "a new leader on the page", `document.getElementById("leader").dataset.leader || "0"`,
		func(s string) bool {
			id, _ := strconv.ParseUint(s, 10, 64)
			return id != 0 && id != leader.id
		})
	now, _ := c.mustLeader()
	want := strconv.FormatUint(now.GetLeaderId(), 10)
	b.waitText(formTimeout, "the page to agree with the cluster's leader", `document.getElementById("leader").dataset.leader || "0"`,
		func(s string) bool { return s == want })
	b.waitText(formTimeout, "the new leader highlighted", `Array.from(document.querySelectorAll("#nodes tr.leader")).map(r => r.dataset.node).join(",")`,
		func(s string) bool { return s == want })
	b.waitText(formTimeout, "a later term", `document.getElementById("term").textContent`,
		func(s string) bool { n, _ := strconv.Atoi(s); o, _ := strconv.Atoi(term); return n > o })
	b.waitText(catchTimeout, "the killed node shown not ready", fmt.Sprintf(`(document.querySelector('#nodes tr[data-node="%d"] .badge') || {}).textContent || ""`, leader.id),
		func(s string) bool { return s == "disconnected" || s == "down" })
	b.screenshot("dashboard-after-failover.png")
}
