package wire

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
)

// Marker starts every frame.
const Marker = "\x01BLX1 "

// MaxLine bounds one console line; a longer line is cut into text pieces of
// at most this many bytes (it cannot be a frame: frames are shorter).
const MaxLine = 64 << 10

// MaxBody bounds a frame's JSON body.
const MaxBody = 32 << 10

// maxEncodedBody is the length of the padded base64 encoding of MaxBody
// bytes (base64.StdEncoding.EncodedLen): a frame whose body field is longer
// is console text, refused before it is decoded.
const maxEncodedBody = (MaxBody + 2) / 3 * 4

// Kind names what a frame says.
type Kind string

// Frames from the guest agent.
const (
	// KindReady: the agent is up (body Ready).
	KindReady Kind = "ready"
	// KindHeartbeat: the agent is alive (body Heartbeat).
	KindHeartbeat Kind = "hb"
	// KindOutput: a piece of a task's output (body Output).
	KindOutput Kind = "out"
	// KindExit: the task ended (body Exit).
	KindExit Kind = "exit"
)

// Frames from the host.
const (
	// KindRun: run a task (body Run).
	KindRun Kind = "run"
	// KindPoweroff: power the VM off now (body Poweroff).
	KindPoweroff Kind = "poweroff"
)

// Ready is the agent's first frame.
type Ready struct {
	// Version of the agent's protocol; 1.
	Version int `json:"version"`
	// Kernel is the guest's kernel release.
	Kernel string `json:"kernel,omitempty"`
	// UptimeMillis since the guest kernel booted.
	UptimeMillis int64 `json:"uptime_ms"`
}

// Heartbeat follows Ready at a fixed interval.
type Heartbeat struct {
	Seq          uint64 `json:"seq"`
	UptimeMillis int64  `json:"uptime_ms"`
}

// Run asks the agent to run a command.
type Run struct {
	Command string            `json:"command"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// TimeoutMillis: kill the command after this long; 0 means never.
	TimeoutMillis int64 `json:"timeout_ms,omitempty"`
	// PoweroffAfter: power the VM off once the command has ended.
	PoweroffAfter bool `json:"poweroff_after,omitempty"`
}

// Output is a piece of a running command's output.
type Output struct {
	// Stream is "stdout" or "stderr".
	Stream string `json:"stream"`
	Data   []byte `json:"data"`
}

// Exit says how the command ended.
type Exit struct {
	Code int `json:"code"`
	// TimedOut: the agent killed it at its timeout.
	TimedOut bool `json:"timed_out,omitempty"`
	// Error: the command could not run, or was killed, and why.
	Error string `json:"error,omitempty"`
	// DurationMillis the command ran.
	DurationMillis int64 `json:"duration_ms"`
}

// Poweroff asks the agent to power the VM off.
type Poweroff struct {
	Reason string `json:"reason,omitempty"`
}

// Frame is one decoded frame.
type Frame struct {
	Kind Kind
	// Body is the frame's JSON body.
	Body []byte
}

// Decode unmarshals f's body into v.
func (f Frame) Decode(v any) error {
	if err := json.Unmarshal(f.Body, v); err != nil {
		return fmt.Errorf("wire: %s frame body: %w", f.Kind, err)
	}
	return nil
}

var table = crc32.MakeTable(crc32.Castagnoli)

// Encode returns the line carrying a frame of kind with body v.
func Encode(kind Kind, v any) ([]byte, error) {
	if !validKind(string(kind)) {
		return nil, fmt.Errorf("wire: invalid frame kind %q", kind)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("wire: encode %s frame: %w", kind, err)
	}
	if len(body) > MaxBody {
		return nil, fmt.Errorf("wire: %s frame body is %d bytes, at most %d", kind, len(body), MaxBody)
	}
	enc := base64.StdEncoding.EncodeToString(body)
	line := make([]byte, 0, len(Marker)+len(kind)+len(enc)+16)
	line = append(line, Marker...)
	line = append(line, kind...)
	line = append(line, ' ')
	line = append(line, enc...)
	line = append(line, ' ')
	line = strconv.AppendUint(line, uint64(crc32.Checksum(body, table)), 16)
	line = append(line, '\n')
	return line, nil
}

// Write encodes a frame and writes it to w in one call.
func Write(w io.Writer, kind Kind, v any) error {
	line, err := Encode(kind, v)
	if err != nil {
		return err
	}
	if _, err := w.Write(line); err != nil {
		return fmt.Errorf("wire: write %s frame: %w", kind, err)
	}
	return nil
}

func validKind(k string) bool {
	if k == "" || len(k) > 16 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// ParseLine splits one console line (without its newline) into the text
// before a frame and the frame. ok is false when the line carries no valid
// frame; text is then the whole line.
func ParseLine(line []byte) (text []byte, f Frame, ok bool) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	i := bytes.Index(line, []byte(Marker))
	if i < 0 {
		return line, Frame{}, false
	}
	// At most 4 fields: a line of spaces must not cost a slice header each.
	fields := bytes.SplitN(line[i+len(Marker):], []byte(" "), 4)
	if len(fields) != 3 || !validKind(string(fields[0])) {
		return line, Frame{}, false
	}
	// The encoded length is checked before decoding, so that no more than
	// MaxBody is ever allocated for a body.
	enc := fields[1]
	if len(enc) > maxEncodedBody {
		return line, Frame{}, false
	}
	body := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(body, enc)
	if err != nil || n > MaxBody {
		return line, Frame{}, false
	}
	body = body[:n]
	sum, err := strconv.ParseUint(string(fields[2]), 16, 32)
	if err != nil || uint32(sum) != crc32.Checksum(body, table) || !json.Valid(body) {
		return line, Frame{}, false
	}
	return line[:i], Frame{Kind: Kind(fields[0]), Body: body}, true
}

// Item is one thing read from the console: text, a frame, or both (text
// printed before the frame on the same line).
type Item struct {
	// Text is console text, without its newline; nil when none.
	Text  []byte
	Frame *Frame
}

// Reader reads items from a console stream.
type Reader struct {
	br *bufio.Reader
}

// NewReader reads from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 4096)}
}

// Next returns the next item. At the end of the stream it returns the
// last, unterminated, line as text (if any) and then io.EOF.
func (r *Reader) Next() (Item, error) {
	var line []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		line = append(line, chunk...)
		switch {
		case err == nil:
			line = line[:len(line)-1]
		case errors.Is(err, bufio.ErrBufferFull):
			if len(line) < MaxLine {
				continue
			}
		case len(line) > 0 && errors.Is(err, io.EOF):
			// The last line, unterminated: text (a frame needs its newline).
			return Item{Text: bytes.TrimSuffix(line, []byte("\r"))}, nil
		default:
			return Item{}, err
		}
		text, f, ok := ParseLine(line)
		if !ok {
			return Item{Text: text}, nil
		}
		it := Item{Frame: &f}
		if len(text) > 0 {
			it.Text = text
		}
		return it, nil
	}
}
