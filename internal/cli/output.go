package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// jsonOptions give the JSON of -o json: proto field names (snake_case),
// every field even when empty, enums by proto name, 64-bit integers as
// strings.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}

// printJSON writes m as indented JSON and a newline. protojson varies its
// whitespace from build to build on purpose; re-indenting makes the output
// stable.
func printJSON(w io.Writer, m proto.Message) error {
	raw, err := jsonOptions.Marshal(m)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return err
	}
	buf.WriteByte('\n')
	_, err = buf.WriteTo(w)
	return err
}

// emit prints m as JSON, or as the table that table writes.
func (s *session) emit(m proto.Message, table func(w io.Writer)) error {
	if s.json {
		return printJSON(s.out, m)
	}
	tw := newTable(s.out)
	table(tw)
	return tw.Flush()
}

// newTable returns a writer that aligns tab-separated columns.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// row writes one table row: cells separated by tabs.
func row(w io.Writer, cells ...any) {
	for i, c := range cells {
		if i > 0 {
			fmt.Fprint(w, "\t")
		}
		fmt.Fprint(w, c)
	}
	fmt.Fprintln(w)
}

// enumText shows an enum value short and lower-case, as flags spell it:
// VM_STATE_RUNNING is "running", RESTART_POLICY_ON_FAILURE "on-failure", an
// unspecified value "-".
func enumText(e protoreflect.Enum) string {
	values := e.Descriptor().Values()
	v := values.ByNumber(e.Number())
	if v == nil {
		return strconv.Itoa(int(e.Number()))
	}
	if e.Number() == 0 {
		return "-"
	}
	name := string(v.Name())
	if zero := values.ByNumber(0); zero != nil {
		name = strings.TrimPrefix(name, strings.TrimSuffix(string(zero.Name()), "UNSPECIFIED"))
	}
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// timeText shows a time in Unix nanoseconds in UTC, "-" for none.
func timeText(unixNano int64) string {
	if unixNano == 0 {
		return "-"
	}
	return time.Unix(0, unixNano).UTC().Format(time.RFC3339)
}

func mibText(mib uint64) string { return strconv.FormatUint(mib, 10) + " MiB" }

// nodeText shows a node id, "-" for none.
func nodeText(id uint64) string {
	if id == 0 {
		return "-"
	}
	return strconv.FormatUint(id, 10)
}

// orDash shows s, "-" if empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// mapText shows a string map as k=v pairs in key order, "-" if empty.
func mapText(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	pairs := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		pairs = append(pairs, k+"="+m[k])
	}
	return strings.Join(pairs, ", ")
}

// listText shows a list of names comma-separated, "-" if empty.
func listText(names []string) string {
	if len(names) == 0 {
		return "-"
	}
	return strings.Join(names, ", ")
}

// withReason shows a state and, if there is one, the reason for it.
func withReason(state, reason string) string {
	if reason == "" {
		return state
	}
	return state + " (" + reason + ")"
}

// commandText shows a command line, quoting the words that need it.
func commandText(command string, args []string) string {
	words := make([]string, 0, 1+len(args))
	for _, w := range append([]string{command}, args...) {
		if w == "" || strings.ContainsFunc(w, func(r rune) bool {
			return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == '$' || r == '`' || r > '~'
		}) {
			w = strconv.Quote(w)
		}
		words = append(words, w)
	}
	return strings.Join(words, " ")
}

// truncate shortens s to at most n runes, marking the cut with "...".
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}
