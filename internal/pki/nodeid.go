package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

const (
	uriScheme = "blixard"
	uriHost   = "node"
)

// NodeURI is the SAN URI that names node id in its certificate:
// blixard://node/<id>, the id in decimal without leading zeros.
func NodeURI(id uint64) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: uriHost, Path: "/" + strconv.FormatUint(id, 10)}
}

// NodeIDFromCert returns the node id a certificate names. The certificate
// must carry exactly one URI SAN of scheme blixard, and it must be exactly
// blixard://node/<id> with id a decimal number from 1 to 2^64-1 without
// leading zeros, sign, port, user, query or fragment. URIs of other schemes
// are ignored. It does not verify the certificate: see VerifyNode.
func NodeIDFromCert(cert *x509.Certificate) (uint64, error) {
	if cert == nil {
		return 0, errors.New("no certificate")
	}
	id, err := nodeIDFromURIs(cert.URIs)
	if err != nil {
		return 0, fmt.Errorf("certificate %q: %w", cert.Subject.CommonName, err)
	}
	return id, nil
}

func nodeIDFromURIs(uris []*url.URL) (uint64, error) {
	var found *url.URL
	n := 0
	for _, u := range uris {
		if strings.EqualFold(u.Scheme, uriScheme) {
			found = u
			n++
		}
	}
	switch {
	case n == 0:
		return 0, errors.New("no blixard://node/<id> URI SAN")
	case n > 1:
		return 0, fmt.Errorf("%d blixard URI SANs, want exactly one", n)
	}
	return parseNodeURI(found)
}

func parseNodeURI(u *url.URL) (uint64, error) {
	if u.Scheme != uriScheme || u.Opaque != "" || u.User != nil || u.Host != uriHost ||
		u.RawPath != "" || u.ForceQuery || u.RawQuery != "" || u.Fragment != "" || u.RawFragment != "" {
		return 0, fmt.Errorf("URI SAN %q is not of the form blixard://node/<id>", u)
	}
	digits, ok := strings.CutPrefix(u.Path, "/")
	if !ok {
		return 0, fmt.Errorf("URI SAN %q is not of the form blixard://node/<id>", u)
	}
	id, err := parseNodeID(digits)
	if err != nil {
		return 0, fmt.Errorf("URI SAN %q: %w", u, err)
	}
	// Belt and braces: the URI must be exactly the one NodeURI writes.
	if u.String() != NodeURI(id).String() {
		return 0, fmt.Errorf("URI SAN %q is not in canonical form %q", u, NodeURI(id))
	}
	return id, nil
}

// parseNodeID parses a node id strictly: decimal digits only, no leading
// zero, not 0, within uint64.
func parseNodeID(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty node id")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("node id %q is not a decimal number", s)
		}
	}
	if s[0] == '0' {
		if s == "0" {
			return 0, errors.New("node id 0 is not a node id")
		}
		return 0, fmt.Errorf("node id %q has a leading zero", s)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("node id %q does not fit in 64 bits", s)
	}
	return id, nil
}
