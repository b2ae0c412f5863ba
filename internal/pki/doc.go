// Package pki owns the cluster's certificates: the certificate authority
// made at bootstrap, the node certificates it issues, the TLS configs that
// verify them, and the files they live in. It does crypto and file I/O
// only, with crypto/rand for keys and serials; it is not part of the
// deterministic core, and callers pass `now` in, so that tests never
// depend on the wall clock.
//
// # Certificates
//
// The CA (NewCA) is an ECDSA P-256 key and a self-signed certificate with
// subject CN "blixard cluster <cluster id> CA", a 128-bit random serial,
// key usage certSign and cRLSign, and a path length of zero: it signs node
// certificates and nothing that could sign in turn. It is valid from one
// minute before `now` (clock skew) for DefaultCAValidity unless told. Its
// Fingerprint, "sha256:<hex>" of the certificate's DER, is what a join
// token pins; compare fingerprints with Fingerprint.Equal (constant time).
//
// A node certificate (CA.IssueNode, CA.NewNode, or CA.SignCSR for a joiner
// that keeps its key) carries the node's identity in exactly one SAN URI,
//
//	blixard://node/<id>
//
// with the id in decimal, 1 to 2^64-1, no leading zeros. NodeIDFromCert
// reads it back strictly and refuses anything else: no blixard URI, two
// of them, id 0, "007", overflow, a port, a query. The certificate also
// names the node's addresses as DNS or IP SANs (for tools that check host
// names), allows server and client authentication, and is valid for
// DefaultNodeValidity (30 days), never beyond its CA. NeedsRenewal says
// when it is in the last third of its life.
//
// # TLS
//
// Every config is TLS 1.3 only.
//
//   - ServerTLS / ClientTLS: peer mTLS. Both sides present a node
//     certificate, verify the other's against the trusted pool and pass the
//     node id found in it to the caller's allowed function, whose error
//     refuses the connection: that is where removed and revoked node ids
//     are turned away. Peers are identified by node id, not host name.
//   - SharedServerTLS: one port for peers and API clients; a client
//     certificate is optional but checked as above when given. PeerNodeID
//     tells a handler which node, if any, is calling.
//   - ClientOnlyTLS: an API client; no certificate of its own (it has a
//     token), verifies the server as a node of the cluster.
//   - JoinTLS: a joining node that knows only the CA fingerprint from its
//     token. A node presents its CA certificate after its own
//     (NodeCert.TLSCertificate), and the joiner accepts the server only if
//     that CA has the pinned fingerprint and signed the server's
//     certificate.
//
// # Rotation
//
// A Bundle is the list of CA certificates trusted at once, and PoolOf /
// Bundle.Pool make the x509.CertPool the configs take. To rotate, make a
// new CA, trust both (old and new in every node's bundle) for an overlap
// period while node certificates are reissued by the new CA, then drop the
// old one. No cross-signing.
//
// # Files
//
// In a node's data directory (DIR below); every file is replaced
// atomically (temporary file, fsync, rename, directory fsync):
//
//	DIR/ca.crt    0644  trusted CA certificates (Bundle), PEM; the CA whose
//	                    key is in ca.key comes first
//	DIR/ca.key    0600  CA private key, PKCS #8 PEM (voters only)
//	DIR/node.crt  0644  node certificate, then the CA certificate that signed it
//	DIR/node.key  0600  node private key, PKCS #8 PEM
//
// Private keys are written through a file created 0600, so they are never
// readable by others even for a moment, and a key file whose mode gives
// its group or others any access is refused on load (ErrKeyPermissions).
// A cert and key that do not belong together (a crash between the two
// writes) are refused on load too. Keys never appear in errors or in the
// String of CA and NodeCert.
//
// # Not yet
//
// Nothing uses this package yet: wiring it into the node (bootstrap,
// transport and API servers, join tokens, renewal, rotation commands) is
// a later step. It keeps no revocation list: a revoked or removed node is
// refused by node id through the allowed functions, and its certificate
// expires within DefaultNodeValidity. Configs are static: swapping a
// renewed certificate or a new pool on a live listener is the caller's
// (tls.Config.GetConfigForClient, GetCertificate).
package pki
