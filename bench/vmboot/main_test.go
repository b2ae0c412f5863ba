package main

import (
	"errors"
	"flag"
	"io"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	o, err := parseFlags(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.runs != 20 || o.memory != 128 || o.blixard != "./bin/blixard" || o.keep || o.timeout != 2*time.Minute {
		t.Fatalf("defaults: %+v", o)
	}
	o, err = parseFlags([]string{"-runs", "3", "-memory", "256", "-blixard", "/x/blixard", "-keep", "-timeout", "30s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.runs != 3 || o.memory != 256 || o.blixard != "/x/blixard" || !o.keep || o.timeout != 30*time.Second {
		t.Fatalf("parsed: %+v", o)
	}
	for _, bad := range [][]string{
		{"-runs", "0"},
		{"-memory", "16"},
		{"-timeout", "0s"},
		{"-blixard", ""},
		{"extra"},
		{"-nosuchflag"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
	if _, err := parseFlags([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 20; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	s := summarize(d)
	if s.n != 20 || s.p50 != 10*time.Millisecond || s.p99 != 20*time.Millisecond || s.min != time.Millisecond ||
		s.max != 20*time.Millisecond || s.mean != 10500*time.Microsecond {
		t.Fatalf("summarize(1..20 ms) = %+v", s)
	}
	if s := summarize([]time.Duration{7}); s.p50 != 7 || s.p99 != 7 {
		t.Fatalf("one run: %+v", s)
	}
}

func TestFlagValues(t *testing.T) {
	m := flagValues([]string{"-S", "-M", "microvm", "-nodefaults", "-m", "128M", "-append", "console=ttyS0 quiet"})
	if m["-M"] != "microvm" || m["-m"] != "128M" || m["-append"] != "console=ttyS0 quiet" || m["-S"] != "" {
		t.Fatalf("flagValues: %v", m)
	}
}
