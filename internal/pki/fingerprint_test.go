package pki

import (
	"strings"
	"testing"
)

func TestParseFingerprint(t *testing.T) {
	ca := newTestCA(t, "c1")
	want := FingerprintOf(ca.Certificate())
	hexDigits := strings.TrimPrefix(ca.Fingerprint(), "sha256:")

	got, err := ParseFingerprint(ca.Fingerprint())
	if err != nil || !got.Equal(want) || got.String() != ca.Fingerprint() {
		t.Fatalf("ParseFingerprint(%s) = %s, %v", ca.Fingerprint(), got, err)
	}
	upper, err := ParseFingerprint("sha256:" + strings.ToUpper(hexDigits))
	if err != nil || !upper.Equal(want) {
		t.Fatalf("upper-case hex: %s, %v", upper, err)
	}

	bad := []string{
		"",
		hexDigits,                        // no prefix
		"SHA256:" + hexDigits,            // prefix is lower case
		"sha1:" + hexDigits,              // other hash
		"sha256:" + hexDigits[:62],       // short
		"sha256:" + hexDigits + "00",     // long
		"sha256:" + hexDigits[:63] + "g", // not hex
		"sha256: " + hexDigits[1:],       // space
	}
	for _, s := range bad {
		if f, err := ParseFingerprint(s); err == nil {
			t.Errorf("ParseFingerprint(%q) = %s, want an error", s, f)
		}
	}
}

func TestFingerprintEqual(t *testing.T) {
	a := FingerprintOf(newTestCA(t, "c1").Certificate())
	b := FingerprintOf(newTestCA(t, "c1").Certificate())
	if !a.Equal(a) || a.Equal(b) || a.Equal(Fingerprint{}) {
		t.Fatal("Equal is wrong")
	}
	c := a
	c[len(c)-1] ^= 1
	if a.Equal(c) {
		t.Fatal("Equal ignores the last byte")
	}
}
