// Package dashboard is the web dashboard every node can serve on
// --http-listen: a cluster overview (nodes, leader, term, VMs, tasks,
// recent events) kept live with server-sent events, and a page per VM with
// its events and console tail.
//
// It owns the HTTP handlers, the JSON the pages read, the viewer-token
// sign-in, and the pages themselves: plain HTML, CSS and JavaScript,
// embedded with go:embed, with no build step. It reads the cluster through
// the node's own request path (Backend, stale local reads, so a follower
// with no leader still shows what it knows); the runtime supplies the
// backend, the token check and the console reader, and decides whether the
// listener is plain HTTP on loopback or TLS with a token required.
package dashboard
