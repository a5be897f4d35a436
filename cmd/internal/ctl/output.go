package ctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// print writes a response: as protojson with -o json, else as the table that
// fill draws.
func (c *cli) print(m proto.Message, fill func(t *table)) error {
	if c.output == "json" {
		return writeJSON(c.stdout, m)
	}
	t := newTable(c.stdout)
	fill(t)
	return t.flush()
}

// writeJSON prints m in protobuf's JSON mapping, two-space indented. protojson
// deliberately varies its whitespace between builds so nobody depends on it;
// re-indenting with encoding/json gives output that diffs cleanly.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s as JSON: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("indent JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// table is a tabwriter with the conventions every table follows: upper-case
// headers, "-" for an empty cell so columns stay countable for awk, and no
// control characters from the server.
type table struct {
	w   *tabwriter.Writer
	err error
}

func newTable(w io.Writer) *table {
	return &table{w: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

func (t *table) row(cells ...string) {
	if t.err != nil {
		return
	}
	for i, cell := range cells {
		cells[i] = cleanCell(cell)
	}
	_, t.err = io.WriteString(t.w, strings.Join(cells, "\t")+"\n")
}

func (t *table) flush() error {
	if t.err != nil {
		return t.err
	}
	return t.w.Flush()
}

// cleanCell makes a value safe for one table cell. Names and emails come from
// tenants; a tab or newline would shift columns, and an escape sequence would
// be interpreted by the operator's terminal.
func cleanCell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

// timestamp formats an API time for a table: RFC 3339 in UTC, empty when unset.
func timestamp(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

// enumName turns TENANT_STATUS_ACTIVE into "active", the spelling the flags
// accept; the unspecified value prints as empty.
func enumName(v fmt.Stringer, prefix string) string {
	s := strings.TrimPrefix(v.String(), prefix)
	if s == "UNSPECIFIED" {
		return ""
	}
	return strings.ToLower(s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func itoa[T ~int32 | ~int64](v T) string {
	return strconv.FormatInt(int64(v), 10)
}

// printDeleted confirms a delete or revoke whose response carries nothing to
// tabulate; -o json still prints the (empty) response so every command
// prints exactly one JSON document.
func (c *cli) printDeleted(resp proto.Message, kind, id string) error {
	if c.output == "json" {
		return writeJSON(c.stdout, resp)
	}
	_, err := fmt.Fprintf(c.stdout, "%s %s deleted\n", kind, cleanCell(id))
	return err
}
