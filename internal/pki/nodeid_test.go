package pki

import (
	"strings"
	"testing"
)

func TestNodeIDFromCert(t *testing.T) {
	ca := newTestCA(t, "c1")
	tests := []struct {
		name    string
		uris    []string
		want    uint64
		wantErr string // fragment of the error; "" means success
	}{
		{name: "one node URI", uris: []string{"blixard://node/42"}, want: 42},
		{name: "largest id", uris: []string{"blixard://node/18446744073709551615"}, want: 18446744073709551615},
		{name: "other schemes beside it are ignored", uris: []string{"spiffe://example.org/x", "blixard://node/7", "https://example.org"}, want: 7},
		{name: "no URI", uris: nil, wantErr: "no blixard://node/<id>"},
		{name: "only other schemes", uris: []string{"spiffe://node/3", "https://node/3"}, wantErr: "no blixard://node/<id>"},
		{name: "two node URIs", uris: []string{"blixard://node/1", "blixard://node/2"}, wantErr: "2 blixard URI SANs"},
		{name: "the same URI twice", uris: []string{"blixard://node/1", "blixard://node/1"}, wantErr: "2 blixard URI SANs"},
		{name: "upper-case scheme counts as blixard", uris: []string{"blixard://node/1", "BLIXARD://node/2"}, wantErr: "2 blixard URI SANs"},
		{name: "id 0", uris: []string{"blixard://node/0"}, wantErr: "node id 0"},
		{name: "leading zeros", uris: []string{"blixard://node/007"}, wantErr: "leading zero"},
		{name: "overflow", uris: []string{"blixard://node/18446744073709551616"}, wantErr: "64 bits"},
		{name: "far overflow", uris: []string{"blixard://node/99999999999999999999999"}, wantErr: "64 bits"},
		{name: "empty id", uris: []string{"blixard://node/"}, wantErr: "empty node id"},
		{name: "no path", uris: []string{"blixard://node"}, wantErr: "not of the form"},
		{name: "sign", uris: []string{"blixard://node/+5"}, wantErr: "not a decimal"},
		{name: "negative", uris: []string{"blixard://node/-5"}, wantErr: "not a decimal"},
		{name: "hex", uris: []string{"blixard://node/0x10"}, wantErr: "not a decimal"},
		{name: "extra path", uris: []string{"blixard://node/5/6"}, wantErr: "not a decimal"},
		{name: "other host", uris: []string{"blixard://client/5"}, wantErr: "not of the form"},
		{name: "upper-case host", uris: []string{"blixard://NODE/5"}, wantErr: "not of the form"},
		{name: "port", uris: []string{"blixard://node:80/5"}, wantErr: "not of the form"},
		{name: "user", uris: []string{"blixard://u@node/5"}, wantErr: "not of the form"},
		{name: "query", uris: []string{"blixard://node/5?x=1"}, wantErr: "not of the form"},
		{name: "fragment", uris: []string{"blixard://node/5#x"}, wantErr: "not of the form"},
		{name: "escaped digit", uris: []string{"blixard://node/%35"}, wantErr: "not of the form"},
		{name: "opaque", uris: []string{"blixard:node/5"}, wantErr: "not of the form"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := forgeLeaf(t, ca, tc.uris...)
			got, err := NodeIDFromCert(cert)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("NodeIDFromCert: %v", err)
				}
				if got != tc.want {
					t.Fatalf("NodeIDFromCert = %d, want %d", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("NodeIDFromCert = %d, want an error mentioning %q", got, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestNodeIDFromCertNil(t *testing.T) {
	if _, err := NodeIDFromCert(nil); err == nil {
		t.Fatal("NodeIDFromCert(nil) succeeded")
	}
}

func TestNodeURIRoundTrip(t *testing.T) {
	ca := newTestCA(t, "c1")
	for _, id := range []uint64{1, 9, 10, 1 << 32, 1<<64 - 1} {
		cert := forgeLeaf(t, ca, NodeURI(id).String())
		got, err := NodeIDFromCert(cert)
		if err != nil || got != id {
			t.Errorf("NodeURI(%d) = %s reads back as %d, %v", id, NodeURI(id), got, err)
		}
	}
}
