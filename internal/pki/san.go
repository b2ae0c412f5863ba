package pki

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// MaxAddrs bounds how many addresses one node certificate names.
const MaxAddrs = 16

// subjectAltNames turns a node's addresses ("host:port", "[v6]:port", or a
// bare host) into the DNS names and IP addresses of its certificate, in
// order, without duplicates. The port is dropped: a certificate names
// hosts.
func subjectAltNames(addrs []string) (dnsNames []string, ips []net.IP, err error) {
	if len(addrs) > MaxAddrs {
		return nil, nil, fmt.Errorf("%d addresses, more than %d", len(addrs), MaxAddrs)
	}
	seen := map[string]bool{}
	for _, addr := range addrs {
		host := addr
		if h, _, err := net.SplitHostPort(addr); err == nil {
			host = h
		} else if strings.HasPrefix(addr, "[") && strings.HasSuffix(addr, "]") {
			host = addr[1 : len(addr)-1]
		}
		if host == "" {
			return nil, nil, fmt.Errorf("address %q has no host", addr)
		}
		if ip, err := netip.ParseAddr(host); err == nil {
			if ip.Zone() != "" {
				return nil, nil, fmt.Errorf("address %q has an IPv6 zone, which a certificate cannot name", addr)
			}
			ip = ip.Unmap()
			if key := "ip:" + ip.String(); !seen[key] {
				seen[key] = true
				ips = append(ips, net.IP(ip.AsSlice()))
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(host, "."))
		if !isDNSName(name) {
			return nil, nil, fmt.Errorf("address %q: %q is neither an IP address nor a DNS name", addr, host)
		}
		if key := "dns:" + name; !seen[key] {
			seen[key] = true
			dnsNames = append(dnsNames, name)
		}
	}
	return dnsNames, ips, nil
}

// isDNSName reports whether s is a lower-case host name: dot-separated
// labels of 1 to 63 letters, digits and hyphens, not starting or ending
// with a hyphen, 253 bytes at most. No wildcards.
func isDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
