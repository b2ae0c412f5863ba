package wire

import (
	"bytes"
	"encoding/base64"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"strconv"
	"testing"
)

// Fuzz targets for the console framing, both directions: the host reads
// the guest agent's frames (ready, hb, out, exit) and the agent reads the
// host's (run, poweroff) through the same Reader and ParseLine. The
// committed corpus is in testdata/fuzz; see docs/SECURITY.md.

// fuzzSeeds are realistic console lines: frames of every kind, as Encode
// writes them, with and without text before them.
func fuzzSeeds(tb testing.TB) [][]byte {
	tb.Helper()
	frames := []struct {
		kind Kind
		v    any
	}{
		{KindReady, Ready{Version: 1, Kernel: "6.1.0-13-amd64", UptimeMillis: 812}},
		{KindHeartbeat, Heartbeat{Seq: 7, UptimeMillis: 9000}},
		{KindRun, Run{Command: "sh", Args: []string{"-c", "echo hi; exit 3"}, Env: map[string]string{"A": "b c"}, TimeoutMillis: 1500, PoweroffAfter: true}},
		{KindOutput, Output{Stream: "stdout", Data: []byte("hello\n\x00\x01binary\n")}},
		{KindExit, Exit{Code: 137, TimedOut: true, Error: "killed at its timeout", DurationMillis: 1500}},
		{KindPoweroff, Poweroff{Reason: "stop"}},
	}
	var seeds [][]byte
	for _, fr := range frames {
		line, err := Encode(fr.kind, fr.v)
		if err != nil {
			tb.Fatal(err)
		}
		seeds = append(seeds, line, append([]byte("[    1.234] kernel says "), line...))
	}
	return append(seeds,
		[]byte("plain console text\n"),
		[]byte("with a carriage return\r\n"),
		[]byte(Marker+"hb e30= 0\n"),
		[]byte(Marker+"out !!!! 0\n"),
	)
}

// FuzzParseLine feeds ParseLine one line. It must not panic; a line it
// accepts holds a frame within the limits (a known kind, a body of at most
// MaxBody bytes of valid JSON whose checksum matches), the text before the
// frame is a prefix of the line, and the body decodes into each body type
// without panicking. A refused line is returned whole as text.
func FuzzParseLine(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(bytes.TrimSuffix(s, []byte("\n")))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		text, fr, ok := ParseLine(line)
		if !ok {
			if want := bytes.TrimSuffix(line, []byte("\r")); !bytes.Equal(text, want) {
				t.Fatalf("refused line: text %q, want the whole line %q", text, want)
			}
			return
		}
		checkFrame(t, fr)
		if !bytes.HasPrefix(line, text) || !bytes.HasPrefix(line[len(text):], []byte(Marker)) {
			t.Fatalf("text %q is not the part of %q before the marker", text, line)
		}
		// The frame written back in Encode's layout parses to itself.
		again := canonical(fr)
		if _, fr2, ok := ParseLine(again); !ok || fr2.Kind != fr.Kind || !bytes.Equal(fr2.Body, fr.Body) {
			t.Fatalf("frame %q %q written back as %q does not parse to itself", fr.Kind, fr.Body, again)
		}
		decodeBodies(t, fr)
	})
}

// FuzzReader feeds a whole console stream to a Reader: head, then fill
// repeated n times (n taken modulo 2*MaxLine+2, so that lines longer than
// MaxLine come cheaply), then tail. It must not panic, must end in io.EOF,
// never return a text item longer than MaxLine, and read the same items
// whether the stream arrives at once or in pieces of 1-7 bytes. Each frame is
// decoded into the body types of both directions.
func FuzzReader(f *testing.F) {
	seeds := fuzzSeeds(f)
	for i, s := range seeds {
		f.Add(s, byte(0), uint32(0), seeds[(i+1)%len(seeds)])
	}
	f.Add(bytes.Join(seeds, nil), byte(0), uint32(0), []byte(nil))
	f.Add([]byte(nil), byte('x'), uint32(MaxLine+10), []byte("\nend"))
	f.Add([]byte("text"), byte('y'), uint32(MaxLine-4), seeds[0])
	f.Fuzz(func(t *testing.T, head []byte, fill byte, n uint32, tail []byte) {
		stream := append(bytes.Clone(head), bytes.Repeat([]byte{fill}, int(n%(2*MaxLine+2)))...)
		stream = append(stream, tail...)
		whole := readAll(t, NewReader(bytes.NewReader(stream)))
		pieces := readAll(t, NewReader(&chunkReader{r: bytes.NewReader(stream), max: 1 + len(head)%7}))
		if !reflect.DeepEqual(whole, pieces) {
			t.Fatalf("items differ when the stream arrives in pieces:\n%+v\n%+v", whole, pieces)
		}
		textBytes := 0
		for _, it := range whole {
			if len(it.Text) > MaxLine {
				t.Fatalf("a text item of %d bytes, MaxLine is %d", len(it.Text), MaxLine)
			}
			textBytes += len(it.Text)
			if it.Frame != nil {
				checkFrame(t, *it.Frame)
				decodeBodies(t, *it.Frame)
			}
		}
		if textBytes > len(stream) || len(whole) > len(stream) {
			t.Fatalf("%d items and %d bytes of text from a stream of %d bytes", len(whole), textBytes, len(stream))
		}
	})
}

// chunkReader returns at most max bytes per Read, as a serial console
// does.
type chunkReader struct {
	r   io.Reader
	max int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), c.max)])
}

func readAll(t *testing.T, r *Reader) []Item {
	t.Helper()
	var items []Item
	for {
		it, err := r.Next()
		if errors.Is(err, io.EOF) {
			return items
		}
		if err != nil {
			t.Fatalf("Next: %v, want only io.EOF from an in-memory stream", err)
		}
		if it.Text == nil && it.Frame == nil {
			t.Fatal("Next returned an empty item")
		}
		items = append(items, it)
	}
}

// checkFrame checks what holds of every frame ParseLine accepts.
func checkFrame(t *testing.T, fr Frame) {
	t.Helper()
	if !validKind(string(fr.Kind)) {
		t.Fatalf("accepted frame kind %q", fr.Kind)
	}
	if len(fr.Body) > MaxBody {
		t.Fatalf("accepted a body of %d bytes, MaxBody is %d", len(fr.Body), MaxBody)
	}
}

// decodeBodies decodes a frame's body into every body type; errors are
// fine, panics are not.
func decodeBodies(t *testing.T, fr Frame) {
	t.Helper()
	for _, v := range []any{&Ready{}, &Heartbeat{}, &Output{}, &Exit{}, &Run{}, &Poweroff{}} {
		_ = fr.Decode(v)
	}
}

// canonical writes fr in Encode's layout, without re-marshalling its body.
func canonical(fr Frame) []byte {
	line := []byte(Marker + string(fr.Kind) + " " + base64.StdEncoding.EncodeToString(fr.Body) + " ")
	return strconv.AppendUint(line, uint64(crc32.Checksum(fr.Body, table)), 16)
}

// TestParseLineRefusesOversizedBodyBeforeDecoding: a body field longer
// than the encoding of MaxBody bytes is refused without being decoded (no
// allocation of its size).
func TestParseLineRefusesOversizedBodyBeforeDecoding(t *testing.T) {
	big := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'1'}, MaxBody+1))
	line := []byte(Marker + "out " + big + " 0")
	allocs := testing.AllocsPerRun(10, func() {
		if _, _, ok := ParseLine(line); ok {
			t.Fatal("an oversized frame was accepted")
		}
	})
	if allocs > 2 {
		t.Fatalf("%v allocations to refuse an oversized frame", allocs)
	}
	// The largest body still parses.
	largest := bytes.Repeat([]byte{'1'}, MaxBody)
	if _, fr, ok := ParseLine(canonical(Frame{Kind: KindOutput, Body: largest})); !ok || len(fr.Body) != MaxBody {
		t.Fatalf("a body of exactly MaxBody bytes was refused")
	}
}
