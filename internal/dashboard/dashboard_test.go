package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// fakeBackend answers the reads the dashboard makes from fixed state.
type fakeBackend struct {
	mu      sync.Mutex
	leader  uint64
	term    uint64
	applied uint64
	vms     []*apiv1.Vm
	events  []*apiv1.Event
	// fail makes every read fail; statusReads is poked at each status
	// read, and lists counts the list reads.
	fail        error
	statusReads chan struct{}
	lists       int
}

func (f *fakeBackend) setLeader(id, term uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.term = id, term
}

func (f *fakeBackend) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

func (f *fakeBackend) Do(_ context.Context, req *apiv1.Request) (*apiv1.Response, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	switch k := req.GetKind().(type) {
	case *apiv1.Request_GetClusterStatus:
		if f.statusReads != nil {
			select {
			case f.statusReads <- struct{}{}:
			default:
			}
		}
		if !k.GetClusterStatus.GetStale() {
			return nil, errors.New("the dashboard must read its local state")
		}
		var nodes []*apiv1.Node
		var members []*apiv1.ClusterMember
		for id := uint64(1); id <= 3; id++ {
			nodes = append(nodes, &apiv1.Node{Id: id, Address: "127.0.0.1:700" + string(rune('0'+id)),
				Role: apiv1.NodeRole_NODE_ROLE_VOTER, Status: apiv1.NodeStatus_NODE_STATUS_READY,
				Capacity: &apiv1.Resources{Vcpus: 4, MemoryMib: 4096}, Labels: map[string]string{"zone": "a"}})
			members = append(members, &apiv1.ClusterMember{Id: id, Voter: true, Allocated: &apiv1.Resources{Vcpus: uint32(id), MemoryMib: 256}})
		}
		return &apiv1.Response{Kind: &apiv1.Response_GetClusterStatus{GetClusterStatus: &apiv1.GetClusterStatusResponse{
			Cluster: &apiv1.Cluster{Id: "c1"}, Nodes: nodes, Members: members, NodeId: 2, LeaderId: f.leader, Term: f.term,
			AppliedIndex: f.applied,
		}}}, nil
	case *apiv1.Request_ListVms:
		f.lists++
		return &apiv1.Response{Kind: &apiv1.Response_ListVms{ListVms: &apiv1.ListVmsResponse{Vms: f.vms}}}, nil
	case *apiv1.Request_ListTasks:
		return &apiv1.Response{Kind: &apiv1.Response_ListTasks{ListTasks: &apiv1.ListTasksResponse{Tasks: []*apiv1.Task{{
			Id: 7, Spec: &apiv1.TaskSpec{Command: "echo", Args: []string{"hi"}}, Status: apiv1.TaskStatus_TASK_STATUS_SUCCEEDED,
			Result: &apiv1.TaskResult{ExitCode: 0}, NodeId: 3, Attempt: 1,
		}}}}}, nil
	case *apiv1.Request_ListEvents:
		var out []*apiv1.Event
		for _, e := range f.events {
			if k.ListEvents.GetVmName() == "" || e.GetVmName() == k.ListEvents.GetVmName() {
				out = append(out, e)
			}
		}
		return &apiv1.Response{Kind: &apiv1.Response_ListEvents{ListEvents: &apiv1.ListEventsResponse{Events: out}}}, nil
	case *apiv1.Request_GetVm:
		for _, v := range f.vms {
			if v.GetName() == k.GetVm.GetName() {
				return &apiv1.Response{Kind: &apiv1.Response_GetVm{GetVm: &apiv1.GetVmResponse{Vm: v}}}, nil
			}
		}
		return &apiv1.Response{Error: &apiv1.Error{Code: apiv1.ErrorCode_ERROR_CODE_NOT_FOUND, Message: "no such VM"}}, nil
	}
	return nil, errors.New("unexpected request")
}

type fakeConsoles struct{ lastToken string }

func (c *fakeConsoles) ConsoleTail(_ context.Context, vm, token string) (string, error) {
	c.lastToken = token
	if token == "" {
		return "", errors.New("sign in to read it")
	}
	return "console of " + vm + "\n", nil
}

func newFake() *fakeBackend {
	return &fakeBackend{leader: 1, term: 3,
		vms: []*apiv1.Vm{{Name: "web", State: apiv1.VmState_VM_STATE_RUNNING, DesiredState: apiv1.VmDesiredState_VM_DESIRED_STATE_RUNNING,
			NodeId: 3, Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 256}, CreatedUnixNano: 5e9}},
		events: []*apiv1.Event{
			{Index: 4, Kind: "leader", NodeId: 1, Message: "node 1 leads term 3"},
			{Index: 9, Kind: "vm", VmName: "web", NodeId: 3, Message: "running"},
		},
	}
}

const goodToken = "bxa.good.secret"

func checkToken(tok string) error {
	if tok != goodToken {
		return errors.New("unknown token")
	}
	return nil
}

func get(t *testing.T, h http.Handler, path string, mod func(*http.Request)) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8081"+path, nil)
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestOverview(t *testing.T) {
	f := newFake()
	h := Handler(Config{Backend: f, Now: func() time.Time { return time.UnixMilli(9000) }})
	w := get(t, h, "/api/overview", nil)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var o Overview
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	if o.LeaderID != 1 || o.Term != 3 || o.NodeID != 2 || o.ClusterID != "c1" || o.NowMs != 9000 {
		t.Errorf("overview header = %+v", o)
	}
	if len(o.Nodes) != 3 || !o.Nodes[0].Leader || o.Nodes[1].Leader || o.Nodes[2].VCPUsUsed != 3 || o.Nodes[0].MemoryMiB != 4096 {
		t.Errorf("nodes = %+v", o.Nodes)
	}
	if len(o.VMs) != 1 || o.VMs[0].Name != "web" || o.VMs[0].State != "running" || o.VMs[0].NodeID != 3 || o.VMs[0].CreatedMs != 5000 {
		t.Errorf("vms = %+v", o.VMs)
	}
	if len(o.Tasks) != 1 || o.Tasks[0].Command != "echo hi" || o.Tasks[0].ExitCode == nil || o.Tasks[0].Status != "succeeded" {
		t.Errorf("tasks = %+v", o.Tasks)
	}
	if len(o.Events) != 2 || o.Events[1].VM != "web" {
		t.Errorf("events = %+v", o.Events)
	}
}

func TestPagesAndHeaders(t *testing.T) {
	h := Handler(Config{Backend: newFake()})
	for _, path := range []string{"/", "/vm/web", "/node/3", "/static/app.js", "/static/app.css"} {
		w := get(t, h, path, nil)
		if w.Code != http.StatusOK {
			t.Errorf("%s: status %d", path, w.Code)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("%s: CSP %q", path, csp)
		}
	}
	if w := get(t, h, "/static/nope.js", nil); w.Code != http.StatusNotFound {
		t.Errorf("missing asset: status %d", w.Code)
	}
	if w := get(t, h, "/static/../pages/layout.html", nil); w.Code == http.StatusOK {
		t.Errorf("the page templates are served as assets")
	}
	// Each page is the layout around its own part, for app.js to start.
	for path, want := range map[string][]string{
		"/":       {`data-page="overview"`, `id="nodes"`, `id="login-form"`, `<title>Blixard</title>`},
		"/vm/web": {`data-page="vm"`, `id="console"`, `id="vm-name"`, `id="login-form"`},
		"/node/3": {`data-page="node"`, `id="node-status"`, `id="node-id"`, `id="login-form"`},
	} {
		body := get(t, h, path, nil).Body.String()
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s lacks %s", path, w)
			}
		}
	}
	if w := get(t, h, "/api/vms/nope", nil); w.Code != http.StatusNotFound {
		t.Errorf("unknown VM: status %d", w.Code)
	}
	w := get(t, h, "/api/vms/web", nil)
	var d VMDetail
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || d.VM.Name != "web" || len(d.Events) != 1 {
		t.Errorf("vm detail = %+v, %v (%s)", d, err, w.Body)
	}
	for _, q := range []string{"limit=0", "limit=x", "limit=1001", "node=abc", "node=0"} {
		if w := get(t, h, "/api/events?"+q, nil); w.Code != http.StatusBadRequest {
			t.Errorf("events?%s: status %d, want 400", q, w.Code)
		}
	}
}

// A node's page: its record, the VMs and tasks placed on it, its events.
func TestNodeDetail(t *testing.T) {
	h := Handler(Config{Backend: newFake(), Now: func() time.Time { return time.UnixMilli(9000) }})
	w := get(t, h, "/api/nodes/3", nil)
	var d NodeDetail
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || w.Code != http.StatusOK {
		t.Fatalf("node 3: status %d, %v (%s)", w.Code, err, w.Body)
	}
	if d.Node.ID != 3 || d.Node.VCPUsUsed != 3 || d.Node.Labels["zone"] != "a" || d.NowMs != 9000 {
		t.Errorf("node 3's record = %+v", d.Node)
	}
	if d.VMsTotal != 1 || len(d.VMs) != 1 || d.VMs[0].Name != "web" || d.TasksTotal != 1 || d.Tasks[0].ID != 7 {
		t.Errorf("node 3's workloads: %d VMs %+v, %d tasks %+v", d.VMsTotal, d.VMs, d.TasksTotal, d.Tasks)
	}
	w = get(t, h, "/api/nodes/1", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil || d.VMsTotal != 0 || d.TasksTotal != 0 || !d.Node.Leader {
		t.Errorf("node 1 = %+v, %v", d, err)
	}
	for path, want := range map[string]int{"/api/nodes/9": http.StatusNotFound, "/api/nodes/x": http.StatusBadRequest, "/api/nodes/0": http.StatusBadRequest} {
		if w := get(t, h, path, nil); w.Code != want {
			t.Errorf("%s: status %d, want %d", path, w.Code, want)
		}
	}
}

// A loopback dashboard answers only requests for a loopback host, so a
// page elsewhere cannot reach it through DNS rebinding.
func TestLoopbackHost(t *testing.T) {
	h := Handler(Config{Backend: newFake()})
	for host, want := range map[string]int{
		"127.0.0.1:8081": http.StatusOK, "localhost:8081": http.StatusOK, "[::1]:8081": http.StatusOK,
		"evil.example:8081": http.StatusMisdirectedRequest, "10.0.0.5:8081": http.StatusMisdirectedRequest,
	} {
		w := get(t, h, "/api/overview", func(r *http.Request) { r.Host = host })
		if w.Code != want {
			t.Errorf("host %s: status %d, want %d", host, w.Code, want)
		}
	}
	// With tokens required the host is not checked (the listener is not
	// loopback; TLS and the token guard it).
	h = Handler(Config{Backend: newFake(), CheckToken: checkToken, RequireToken: true})
	w := get(t, h, "/api/overview", func(r *http.Request) { r.Host = "blixard.example"; r.Header.Set("Authorization", "Bearer "+goodToken) })
	if w.Code != http.StatusOK {
		t.Errorf("token required, other host: status %d", w.Code)
	}
}

func TestTokens(t *testing.T) {
	cons := &fakeConsoles{}
	h := Handler(Config{Backend: newFake(), Consoles: cons, CheckToken: checkToken, RequireToken: true, Secure: true})
	withCookie := func(v string) func(*http.Request) {
		return func(r *http.Request) { r.AddCookie(&http.Cookie{Name: defaultCookieName, Value: v}) }
	}
	cases := []struct {
		name string
		path string
		mod  func(*http.Request)
		want int
	}{
		{"no token", "/api/overview", nil, http.StatusUnauthorized},
		{"no token, stream", "/api/stream", nil, http.StatusUnauthorized},
		{"no token, events", "/api/events", nil, http.StatusUnauthorized},
		{"bad cookie", "/api/overview", withCookie("bxa.bad.x"), http.StatusUnauthorized},
		{"bad bearer", "/api/overview", func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") }, http.StatusUnauthorized},
		{"good cookie", "/api/overview", withCookie(goodToken), http.StatusOK},
		{"good bearer", "/api/vms/web", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+goodToken) }, http.StatusOK},
		{"page needs none", "/", nil, http.StatusOK},
		{"session needs none", "/api/session", nil, http.StatusOK},
	}
	for _, c := range cases {
		if w := get(t, h, c.path, c.mod); w.Code != c.want {
			t.Errorf("%s: %s status %d, want %d", c.name, c.path, w.Code, c.want)
		}
	}

	// Sign in: a bad token sets nothing; a good one sets an HttpOnly,
	// Secure, SameSite=Strict cookie.
	post := func(path, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8081"+path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := post("/api/login", `{"token":"bxa.bad.x"}`); w.Code != http.StatusUnauthorized || len(w.Result().Cookies()) != 0 {
		t.Errorf("bad login: status %d, cookies %v", w.Code, w.Result().Cookies())
	}
	if w := post("/api/login", `not json`); w.Code != http.StatusBadRequest {
		t.Errorf("malformed login: status %d", w.Code)
	}
	w := post("/api/login", `{"token":"`+goodToken+`"}`)
	cs := w.Result().Cookies()
	if w.Code != http.StatusOK || len(cs) != 1 || cs[0].Value != goodToken || !cs[0].HttpOnly || !cs[0].Secure || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: status %d, cookies %+v", w.Code, cs)
	}
	if w := post("/api/logout", ``); len(w.Result().Cookies()) != 1 || w.Result().Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout did not clear the cookie: %+v", w.Result().Cookies())
	}

	// The console reader gets the viewer's token, to ask another node.
	w = get(t, h, "/api/vms/web/console", withCookie(goodToken))
	var c Console
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil || c.Text != "console of web\n" || cons.lastToken != goodToken {
		t.Errorf("console = %+v, %v, token %q", c, err, cons.lastToken)
	}
}

// Without RequireToken a token is optional, but one given is still
// checked, and a console elsewhere says why it cannot be read.
func TestOptionalToken(t *testing.T) {
	cons := &fakeConsoles{}
	h := Handler(Config{Backend: newFake(), Consoles: cons, CheckToken: checkToken})
	if w := get(t, h, "/api/overview", nil); w.Code != http.StatusOK {
		t.Errorf("no token: status %d", w.Code)
	}
	if w := get(t, h, "/api/overview", func(r *http.Request) { r.Header.Set("Authorization", "Bearer bxa.bad.x") }); w.Code != http.StatusUnauthorized {
		t.Errorf("bad token: status %d", w.Code)
	}
	w := get(t, h, "/api/vms/web/console", nil)
	var c Console
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil || c.Error == "" || c.Text != "" {
		t.Errorf("console without a token = %+v, %v", c, err)
	}
}

// sseReader reads server-sent events.
type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

// next returns the next event's name and data.
func (r sseReader) next() (string, string) {
	r.t.Helper()
	var event, data string
	for {
		line, err := r.br.ReadString('\n')
		if err != nil {
			r.t.Fatalf("stream ended: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		case line == "" && event != "":
			return event, data
		}
	}
}

func (r sseReader) overview() Overview {
	r.t.Helper()
	event, data := r.next()
	if event != "overview" {
		r.t.Fatalf("event %q (%s), want an overview", event, data)
	}
	var o Overview
	if err := json.Unmarshal([]byte(data), &o); err != nil {
		r.t.Fatal(err)
	}
	return o
}

// openStream opens /api/stream on srv; the stream ends with the test.
func openStream(t *testing.T, srv *httptest.Server, mod func(*http.Request)) sseReader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/api/stream", nil)
	if mod != nil {
		mod(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _, _ = io.Copy(io.Discard, resp.Body); resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: status %d, content type %q", resp.StatusCode, ct)
	}
	return sseReader{t: t, br: bufio.NewReader(resp.Body)}
}

// awaitReads waits until the backend has been asked for its status n
// more times.
func awaitReads(t *testing.T, f *fakeBackend, n int) {
	t.Helper()
	for range n {
		select {
		case <-f.statusReads:
		case <-time.After(time.Minute):
			t.Fatal("the stream stopped reading the node")
		}
	}
}

// The live stream sends the overview at once, again when it changes, and
// not when it does not; it reads the lists only when the status moved;
// it says when the node cannot be read, and recovers.
func TestStream(t *testing.T) {
	f := newFake()
	f.statusReads = make(chan struct{}, 1)
	srv := httptest.NewServer(Handler(Config{Backend: f, Interval: 5 * time.Millisecond}))
	t.Cleanup(srv.Close)
	s := openStream(t, srv, nil)
	if o := s.overview(); o.LeaderID != 1 || o.Term != 3 || o.VMsTotal != 1 || o.VMsRunning != 1 || o.TasksTotal != 1 {
		t.Fatalf("first overview: %+v", o)
	}
	// Let the stream look a few more times at an unchanged cluster, then
	// change it: the next event must be the change.
	awaitReads(t, f, 3)
	f.mu.Lock()
	lists := f.lists
	f.mu.Unlock()
	if lists != 1 {
		t.Errorf("the VMs were listed %d times for an unchanged status, want once", lists)
	}
	f.setLeader(3, 4)
	if o := s.overview(); o.LeaderID != 3 || o.Term != 4 || !o.Nodes[2].Leader {
		t.Fatalf("after the change: leader %d term %d", o.LeaderID, o.Term)
	}
	f.setFail(errors.New("node is shutting down"))
	if event, data := s.next(); event != "problem" || !strings.Contains(data, "shutting down") {
		t.Fatalf("while the node fails: %s %s", event, data)
	}
	f.setFail(nil)
	if o := s.overview(); o.LeaderID != 3 {
		t.Fatalf("after recovery: %+v", o)
	}
}

// A stream ends when its viewer's token stops being good.
func TestStreamEndsWhenTokenRevoked(t *testing.T) {
	var mu sync.Mutex
	revoked := false
	check := func(tok string) error {
		mu.Lock()
		defer mu.Unlock()
		if tok != goodToken || revoked {
			return errors.New("token revoked")
		}
		return nil
	}
	srv := httptest.NewServer(Handler(Config{Backend: newFake(), CheckToken: check, RequireToken: true, Interval: 5 * time.Millisecond}))
	t.Cleanup(srv.Close)
	s := openStream(t, srv, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+goodToken) })
	s.overview()
	mu.Lock()
	revoked = true
	mu.Unlock()
	if event, data := s.next(); event != "signedout" || !strings.Contains(data, "revoked") {
		t.Fatalf("after the revocation: %s %s", event, data)
	}
	if _, err := s.br.ReadString('\n'); err == nil {
		t.Fatal("the stream goes on after the token was revoked")
	}
}

// Sign-in and sign-out refuse what another site's page could send.
func TestSignInSameOrigin(t *testing.T) {
	h := Handler(Config{Backend: newFake(), CheckToken: checkToken, RequireToken: true})
	body := `{"token":"` + goodToken + `"}`
	for _, c := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"json, same origin", map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:8081", "Sec-Fetch-Site": "same-origin"}, http.StatusOK},
		{"form", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusForbidden},
		{"text/plain", map[string]string{"Content-Type": "text/plain"}, http.StatusForbidden},
		{"cross-site", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site other port", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"other origin", map[string]string{"Content-Type": "application/json", "Origin": "http://127.0.0.1:9999"}, http.StatusForbidden},
	} {
		for _, path := range []string{"/api/login", "/api/logout"} {
			r := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:8081"+path, strings.NewReader(body))
			for k, v := range c.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != c.want {
				t.Errorf("%s: %s status %d, want %d", c.name, path, w.Code, c.want)
			}
		}
	}
}

// A node without tokens ignores a stray cookie (another cluster's), and
// a secure node's consoles need a token even on loopback.
func TestTokenlessNodeAndConsoles(t *testing.T) {
	cons := &fakeConsoles{}
	h := Handler(Config{Backend: newFake(), Consoles: cons})
	w := get(t, h, "/api/overview", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: defaultCookieName, Value: "bxa.other.cluster"}) })
	if w.Code != http.StatusOK {
		t.Errorf("stray cookie on a tokenless node: status %d", w.Code)
	}
	get(t, h, "/api/vms/web/console", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: defaultCookieName, Value: "bxa.other.cluster"}) })
	if cons.lastToken != "" {
		t.Errorf("a tokenless node passed on the token %q", cons.lastToken)
	}
	h = Handler(Config{Backend: newFake(), Consoles: &fakeConsoles{}, CheckToken: checkToken, CookieName: "blixard_8081"})
	var c Console
	w = get(t, h, "/api/vms/web/console", nil)
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil || !strings.Contains(c.Error, "sign in") || c.Text != "" {
		t.Errorf("console without a token on a secure node = %+v, %v", c, err)
	}
	w = get(t, h, "/api/vms/web/console", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "blixard_8081", Value: goodToken}) })
	if err := json.Unmarshal(w.Body.Bytes(), &c); err != nil || c.Text != "console of web\n" {
		t.Errorf("console with the node's own cookie = %+v, %v", c, err)
	}
}
