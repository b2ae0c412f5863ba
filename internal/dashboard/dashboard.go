package dashboard

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Backend runs one request on the serving node, as its API does.
type Backend interface {
	Do(ctx context.Context, req *apiv1.Request) (*apiv1.Response, error)
}

// Consoles reads a VM's console tail: from this node's disk when the VM
// runs here, else from the node it runs on, with the signed-in viewer's
// token ("" when none).
type Consoles interface {
	ConsoleTail(ctx context.Context, vm, token string) (string, error)
}

// Config is what a dashboard serves from and how it lets viewers in.
type Config struct {
	Backend  Backend
	Consoles Consoles
	// CheckToken checks a viewer's ACL token (any role may view); nil on a
	// node without security, where there are no tokens.
	CheckToken func(token string) error
	// RequireToken: every data request needs a valid token (the listener
	// is not loopback). Otherwise a token is optional and only needed to
	// read consoles kept on other nodes, and requests must name a
	// loopback host (so a web page elsewhere cannot reach it by DNS
	// rebinding).
	RequireToken bool
	// Secure marks the sign-in cookie for HTTPS only.
	Secure bool
	// CookieName names the sign-in cookie (default "blixard_token").
	// Browsers send a cookie to every port of a host, so each dashboard
	// on one host wants its own name.
	CookieName string
	// Interval is how often a live page's stream looks for changes
	// (default 1 s).
	Interval time.Duration
	// Now is the node's clock (default time.Now).
	Now    func() time.Time
	Logger *slog.Logger
}

//go:embed web
var webFS embed.FS

// defaultCookieName holds a signed-in viewer's token (HttpOnly,
// SameSite=Strict) unless Config.CookieName says otherwise.
const defaultCookieName = "blixard_token"

// cookieMaxAge bounds how long a browser keeps the sign-in.
const cookieMaxAge = 12 * time.Hour

// keepAlive is how often an idle stream sends a comment, so proxies and
// the browser see it is alive.
const keepAlive = 15 * time.Second

// maxStreams bounds the live streams one dashboard serves at once; the
// overview they send is read once per Interval whatever their number.
const maxStreams = 64

// writeTimeout bounds one write to a client: a stream whose reader
// stopped reading is dropped, not kept.
const writeTimeout = 10 * time.Second

// readTimeout bounds one read of the whole overview from the node.
const readTimeout = 10 * time.Second

type dashboard struct {
	cfg     Config
	streams atomic.Int32

	// mu guards the overview last read, shared by every request and
	// stream: the node is asked at most once per Interval, and only for
	// its status when the status says nothing changed.
	mu      sync.Mutex
	readAt  time.Time
	key     string
	current *view
	readErr error
}

// Handler serves the dashboard: the pages, their assets and the JSON and
// event stream they read.
func Handler(cfg Config) http.Handler {
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CookieName == "" {
		cfg.CookieName = defaultCookieName
	}
	static, err := fs.Sub(webFS, "web/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	d := &dashboard{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", page(pageInfo{Name: "index", Page: "overview", Title: "Blixard", Live: "live updates"}))
	mux.HandleFunc("GET /vm/{name}", page(pageInfo{Name: "vm", Page: "vm", Title: "VM — Blixard", Live: "refreshed every 2 s"}))
	mux.HandleFunc("GET /node/{id}", page(pageInfo{Name: "node", Page: "node", Title: "Node — Blixard", Live: "refreshed every 2 s"}))
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/session", d.session)
	mux.HandleFunc("POST /api/login", d.login)
	mux.HandleFunc("POST /api/logout", d.logout)
	mux.HandleFunc("GET /api/overview", d.data(d.overview))
	mux.HandleFunc("GET /api/stream", d.data(d.stream))
	mux.HandleFunc("GET /api/events", d.data(d.events))
	mux.HandleFunc("GET /api/vms/{name}", d.data(d.vm))
	mux.HandleFunc("GET /api/nodes/{id}", d.data(d.node))
	mux.HandleFunc("GET /api/vms/{name}/console", d.data(d.console))
	return d.guard(mux)
}

// guard sets the headers every answer carries and, on a loopback
// listener, refuses requests for a host that is not loopback.
func (d *dashboard) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if !d.cfg.RequireToken && !loopbackHost(r.Host) {
			http.Error(w, "this dashboard listens on loopback and answers only requests for a loopback host (localhost, 127.0.0.1, [::1])", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names this machine's loopback.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// pageInfo is one HTML page: web/pages/<Name>.html in web/pages/layout.html.
type pageInfo struct {
	Name  string
	Page  string // the body's data-page, which app.js starts from
	Title string
	Live  string // what the live badge's tooltip says
}

// page serves one of the HTML pages, rendered once: they hold no data (it
// comes from /api), so they need no token.
func page(p pageInfo) http.HandlerFunc {
	t := template.Must(template.ParseFS(webFS, "web/pages/layout.html", "web/pages/"+p.Name+".html"))
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		panic(fmt.Sprintf("dashboard: page %s: %v", p.Name, err)) // fixed at build time; a test renders every page
	}
	html := buf.Bytes()
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(html)
	}
}

// token is the request's viewer token: the sign-in cookie, or an
// "Authorization: Bearer" header (for scripts). A node without tokens
// takes none: a stray cookie of another cluster is not passed on.
func (d *dashboard) token(r *http.Request) string {
	if d.cfg.CheckToken == nil {
		return ""
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return strings.TrimSpace(tok)
	}
	if c, err := r.Cookie(d.cfg.CookieName); err == nil {
		return c.Value
	}
	return ""
}

type tokenKey struct{}

// data wraps a data handler with the token check: a token given is
// always checked; none given is refused only when RequireToken.
func (d *dashboard) data(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok := d.token(r)
		switch {
		case tok != "":
			if err := d.cfg.CheckToken(tok); err != nil {
				writeError(w, http.StatusUnauthorized, "token refused: "+err.Error())
				return
			}
		case d.cfg.RequireToken:
			writeError(w, http.StatusUnauthorized, "sign in with a viewer token (blixard acl token create --role viewer)")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), tokenKey{}, tok)))
	}
}

type sessionInfo struct {
	// Required: data needs a token. SignedIn: the browser holds one that
	// this node accepts. Tokens: the node has tokens at all (is secure).
	Required bool   `json:"required"`
	SignedIn bool   `json:"signed_in"`
	Tokens   bool   `json:"tokens"`
	Error    string `json:"error,omitempty"`
}

func (d *dashboard) session(w http.ResponseWriter, r *http.Request) {
	s := sessionInfo{Required: d.cfg.RequireToken, Tokens: d.cfg.CheckToken != nil}
	if tok := d.token(r); tok != "" {
		if err := d.cfg.CheckToken(tok); err != nil {
			s.Error = err.Error()
		} else {
			s.SignedIn = true
		}
	}
	writeJSON(w, s)
}

// maxLoginBody bounds a sign-in request.
const maxLoginBody = 4 << 10

// sameOrigin refuses a state-changing request that another site's page
// could have sent: it must be JSON (which a form cannot send without a
// preflight), and the browser's Sec-Fetch-Site and Origin, when given,
// must say it came from this origin.
func sameOrigin(r *http.Request) error {
	if ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(ct), "application/json") {
		return errors.New("the request must be JSON (Content-Type: application/json)")
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return fmt.Errorf("refused a %s request", site)
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return fmt.Errorf("refused a request from origin %q", origin)
		}
	}
	return nil
}

func (d *dashboard) login(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	if d.cfg.CheckToken == nil {
		writeError(w, http.StatusBadRequest, "this node runs without security: there are no tokens")
		return
	}
	var in struct {
		Token string `json:"token"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody)).Decode(&in); err != nil {
		writeError(w, http.StatusBadRequest, "the body must be {\"token\": \"bxa.…\"}")
		return
	}
	tok := strings.TrimSpace(in.Token)
	if err := d.cfg.CheckToken(tok); err != nil {
		writeError(w, http.StatusUnauthorized, "token refused: "+err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: d.cfg.CookieName, Value: tok, Path: "/", MaxAge: int(cookieMaxAge / time.Second),
		HttpOnly: true, Secure: d.cfg.Secure, SameSite: http.SameSiteStrictMode})
	writeJSON(w, sessionInfo{Required: d.cfg.RequireToken, SignedIn: true, Tokens: true})
}

func (d *dashboard) logout(w http.ResponseWriter, r *http.Request) {
	if err := sameOrigin(r); err != nil {
		writeError(w, http.StatusForbidden, err.Error())
		return
	}
	http.SetCookie(w, &http.Cookie{Name: d.cfg.CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: d.cfg.Secure, SameSite: http.SameSiteStrictMode})
	writeJSON(w, sessionInfo{Required: d.cfg.RequireToken, Tokens: d.cfg.CheckToken != nil})
}

func (d *dashboard) nowMs() int64 { return d.cfg.Now().UnixMilli() }

// read returns the overview as of at most Interval ago, asking the node
// only if it is older, and then only for its status unless that changed.
// Requests and streams share it, so their number does not add load on the
// node's event loop.
func (d *dashboard) read(ctx context.Context) (*view, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.readAt.IsZero() && time.Since(d.readAt) < d.cfg.Interval {
		return d.current, d.readErr
	}
	d.readAt = time.Now()
	// Not the asking request's to cancel: others share the answer.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), readTimeout)
	defer cancel()
	cs, err := status(ctx, d.cfg.Backend)
	if err != nil {
		d.current, d.key, d.readErr = nil, "", err
		return nil, err
	}
	if key := statusKey(cs); key != d.key || d.current == nil {
		v, err := readView(ctx, d.cfg.Backend, cs)
		if err != nil {
			d.current, d.key, d.readErr = nil, "", err
			return nil, err
		}
		d.current, d.key = v, key
	}
	d.readErr = nil
	return d.current, nil
}

// stamped is o as sent: with the node's clock, for the page's ages.
func (d *dashboard) stamped(o *Overview) []byte {
	c := *o
	c.NowMs = d.nowMs()
	return mustJSON(&c)
}

func (d *dashboard) overview(w http.ResponseWriter, r *http.Request) {
	v, err := d.read(r.Context())
	if err != nil {
		d.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(d.stamped(v.overview))
}

func (d *dashboard) node(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || id == 0 {
		writeError(w, http.StatusBadRequest, "a node id is a positive number")
		return
	}
	v, err := d.read(r.Context())
	if err != nil {
		d.fail(w, err)
		return
	}
	nd, err := nodeDetail(r.Context(), d.cfg.Backend, v, id, d.nowMs())
	if err != nil {
		d.fail(w, err)
		return
	}
	writeJSON(w, nd)
}

// stream sends the overview as server-sent events: at once, then each
// time it changes (looked at every Interval), until the client goes, the
// node stops, or the viewer's token stops being good.
func (d *dashboard) stream(w http.ResponseWriter, r *http.Request) {
	if d.streams.Add(1) > maxStreams {
		d.streams.Add(-1)
		writeError(w, http.StatusServiceUnavailable, fmt.Sprintf("this node already serves %d live dashboards; close some", maxStreams))
		return
	}
	defer d.streams.Add(-1)
	tok, _ := r.Context().Value(tokenKey{}).(string)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	tick := time.NewTicker(d.cfg.Interval)
	defer tick.Stop()
	var (
		last    *view  // the view last sent (read's answers are shared, never changed)
		problem string // the problem last sent
		idle    time.Duration
	)
	send := func(msg []byte) bool {
		idle = 0
		if err := rc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		if _, err := w.Write(msg); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	for {
		if tok != "" {
			if err := d.cfg.CheckToken(tok); err != nil {
				send(fmt.Appendf(nil, "event: signedout\ndata: %s\n\n", mustJSON(map[string]string{"error": "token refused: " + err.Error()})))
				return
			}
		}
		v, err := d.read(ctx)
		var msg []byte
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			last = nil // whatever comes next is news
			if err.Error() != problem {
				problem = err.Error()
				msg = fmt.Appendf(nil, "event: problem\ndata: %s\n\n", mustJSON(map[string]string{"error": problem}))
			}
		case v != last:
			last, problem = v, ""
			msg = fmt.Appendf(nil, "event: overview\ndata: %s\n\n", d.stamped(v.overview))
		case idle >= keepAlive:
			msg = []byte(": alive\n\n")
		}
		if msg != nil && !send(msg) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			idle += d.cfg.Interval
		}
	}
}

func (d *dashboard) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit := defaultEventLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxEventLimit {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be a number from 1 to %d", maxEventLimit))
			return
		}
		limit = n
	}
	var node uint64
	if s := q.Get("node"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			writeError(w, http.StatusBadRequest, "node must be a node id")
			return
		}
		node = n
	}
	ev, err := events(r.Context(), d.cfg.Backend, q.Get("vm"), node, limit)
	if err != nil {
		d.fail(w, err)
		return
	}
	writeJSON(w, ev)
}

func (d *dashboard) vm(w http.ResponseWriter, r *http.Request) {
	v, err := vmDetail(r.Context(), d.cfg.Backend, r.PathValue("name"), d.nowMs())
	if err != nil {
		d.fail(w, err)
		return
	}
	writeJSON(w, v)
}

func (d *dashboard) console(w http.ResponseWriter, r *http.Request) {
	if d.cfg.Consoles == nil {
		writeJSON(w, Console{Error: "this node serves no consoles"})
		return
	}
	tok, _ := r.Context().Value(tokenKey{}).(string)
	if d.cfg.CheckToken != nil && tok == "" {
		// Consoles may hold what the guests print, secrets included: as
		// through the API, reading them takes a token, on loopback too.
		writeJSON(w, Console{Error: "sign in with a viewer token to read VM consoles"})
		return
	}
	text, err := d.cfg.Consoles.ConsoleTail(r.Context(), r.PathValue("name"), tok)
	if err != nil {
		// Said on the page, not as a failed request: a VM not yet placed,
		// or kept on a node this viewer cannot reach, is a normal answer.
		writeJSON(w, Console{Error: err.Error()})
		return
	}
	writeJSON(w, Console{Text: text})
}

// fail answers a data request that could not be read.
func (d *dashboard) fail(w http.ResponseWriter, err error) {
	if errors.Is(err, errNotFound) {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	d.cfg.Logger.Debug("dashboard read failed", "err", err)
	writeError(w, http.StatusServiceUnavailable, err.Error())
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the package's own plain structs are marshalled.
		panic(fmt.Sprintf("dashboard: marshal %T: %v", v, err))
	}
	return b
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(mustJSON(v))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(mustJSON(map[string]string{"error": msg}))
}
