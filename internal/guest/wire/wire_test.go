package wire

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		kind Kind
		v    any
	}{
		{KindReady, Ready{Version: 1, Kernel: "6.1.0", UptimeMillis: 812}},
		{KindHeartbeat, Heartbeat{Seq: 7, UptimeMillis: 9000}},
		{KindRun, Run{Command: "sh", Args: []string{"-c", "echo hi; exit 3"}, Env: map[string]string{"A": "b c"}, TimeoutMillis: 1500, PoweroffAfter: true}},
		{KindOutput, Output{Stream: "stdout", Data: []byte("hello\n\x00\x01binary\n")}},
		{KindExit, Exit{Code: 3, DurationMillis: 12}},
		{KindPoweroff, Poweroff{Reason: "stop"}},
	}
	var stream bytes.Buffer
	for _, tt := range tests {
		if err := Write(&stream, tt.kind, tt.v); err != nil {
			t.Fatal(err)
		}
		stream.WriteString("[    1.2] some kernel line\r\n")
	}
	r := NewReader(&stream)
	for _, tt := range tests {
		it, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if it.Frame == nil || it.Frame.Kind != tt.kind || it.Text != nil {
			t.Fatalf("got %+v, want a bare %s frame", it, tt.kind)
		}
		it, err = r.Next()
		if err != nil || it.Frame != nil || string(it.Text) != "[    1.2] some kernel line" {
			t.Fatalf("got %+v %v, want the kernel line as text", it, err)
		}
	}
	if _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("got %v, want EOF", err)
	}
}

func TestDecodeBodies(t *testing.T) {
	line, err := Encode(KindExit, Exit{Code: 137, TimedOut: true, Error: "timeout"})
	if err != nil {
		t.Fatal(err)
	}
	_, f, ok := ParseLine(bytes.TrimSuffix(line, []byte("\n")))
	if !ok {
		t.Fatal("frame not parsed")
	}
	var e Exit
	if err := f.Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.Code != 137 || !e.TimedOut || e.Error != "timeout" {
		t.Fatalf("decoded %+v", e)
	}
}

func TestTextAroundFrames(t *testing.T) {
	line, _ := Encode(KindHeartbeat, Heartbeat{Seq: 1})
	tests := []struct {
		name      string
		in        string
		wantText  string
		wantFrame bool
	}{
		{"plain", "hello world", "hello world", false},
		{"frame after text", "kernel: x" + string(line[:len(line)-1]), "kernel: x", true},
		{"bad checksum", strings.Replace(string(line[:len(line)-1]), " ", " ", 1)[:len(line)-2] + "0", "", false},
		{"truncated", string(line[:len(line)/2]), "", false},
		{"wrong kind", Marker + "UPPER e30= 0", "", false},
		{"not base64", Marker + "hb !!! 0", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, _, ok := ParseLine([]byte(tt.in))
			if ok != tt.wantFrame {
				t.Fatalf("ok=%v, want %v", ok, tt.wantFrame)
			}
			want := tt.wantText
			if !tt.wantFrame && want == "" {
				want = tt.in
			}
			if string(text) != want {
				t.Fatalf("text %q, want %q", text, want)
			}
		})
	}
}

func TestLongLinesAreCut(t *testing.T) {
	long := strings.Repeat("x", MaxLine*2+10)
	r := NewReader(strings.NewReader(long + "\nend"))
	var total int
	for {
		it, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(it.Text) > MaxLine+4096 {
			t.Fatalf("a text item of %d bytes", len(it.Text))
		}
		total += len(it.Text)
	}
	if total != len(long)+len("end") {
		t.Fatalf("read %d bytes of text, want %d", total, len(long)+3)
	}
}

func TestEncodeRefuses(t *testing.T) {
	if _, err := Encode("Bad Kind", struct{}{}); err == nil {
		t.Fatal("a kind with spaces was encoded")
	}
	if _, err := Encode(KindOutput, Output{Data: make([]byte, MaxBody)}); err == nil {
		t.Fatal("an oversized body was encoded")
	}
}
