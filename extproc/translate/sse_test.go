package translate

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// parsedEvent is an SSEEvent copied out of the parser's buffer.
type parsedEvent struct {
	Name, Data string
	HasData    bool
	Raw        string
	Truncated  bool
}

func (e parsedEvent) String() string {
	return fmt.Sprintf("{name=%q data=%q hasData=%v raw=%q truncated=%v}", e.Name, e.Data, e.HasData, e.Raw, e.Truncated)
}

// parseChunks feeds chunks to a fresh parser and collects every event.
func parseChunks(t testing.TB, chunks [][]byte) ([]parsedEvent, error) {
	t.Helper()
	var p SSEParser
	var out []parsedEvent
	for i, c := range chunks {
		p.Write(c)
		last := i == len(chunks)-1
		for {
			ev, ok, err := p.Next(last)
			if err != nil {
				return out, err
			}
			if !ok {
				break
			}
			out = append(out, parsedEvent{string(ev.Name), string(ev.Data), ev.HasData, string(ev.Raw), ev.Truncated})
		}
	}
	return out, nil
}

func TestSSEParser(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []parsedEvent
	}{
		{"one event, LF", "data: hello\n\n",
			[]parsedEvent{{"", "hello", true, "data: hello\n\n", false}}},
		{"named event", "event: message_start\ndata: {\"a\":1}\n\n",
			[]parsedEvent{{"message_start", `{"a":1}`, true, "event: message_start\ndata: {\"a\":1}\n\n", false}}},
		{"CRLF line ends", "event: x\r\ndata: 1\r\n\r\n",
			[]parsedEvent{{"x", "1", true, "event: x\r\ndata: 1\r\n\r\n", false}}},
		{"CR line ends", "event: x\rdata: 1\r\r",
			[]parsedEvent{{"x", "1", true, "event: x\rdata: 1\r\r", false}}},
		{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n",
			[]parsedEvent{{"", "a\nb\nc", true, "data: a\r\ndata: b\rdata: c\n\r\n", false}}},
		{"multi-line data joined with LF", "data: first\ndata: second\ndata:third\n\n",
			[]parsedEvent{{"", "first\nsecond\nthird", true, "data: first\ndata: second\ndata:third\n\n", false}}},
		{"no space after colon; only one space is removed", "data:x\n\ndata:  y\n\n",
			[]parsedEvent{{"", "x", true, "data:x\n\n", false}, {"", " y", true, "data:  y\n\n", false}}},
		{"colon inside the value", "data: {\"k\":\"a:b\"}\n\n",
			[]parsedEvent{{"", `{"k":"a:b"}`, true, "data: {\"k\":\"a:b\"}\n\n", false}}},
		{"comment lines are kept in Raw only", ": keep-alive\ndata: 1\n: more\n\n",
			[]parsedEvent{{"", "1", true, ": keep-alive\ndata: 1\n: more\n\n", false}}},
		{"comment-only block has no data", ": stream complete\n\n",
			[]parsedEvent{{"", "", false, ": stream complete\n\n", false}}},
		{"stray blank lines are empty blocks", "\n\ndata: 1\n\n",
			[]parsedEvent{{"", "", false, "\n", false}, {"", "", false, "\n", false}, {"", "1", true, "data: 1\n\n", false}}},
		{"empty data line counts as data", "data\n\ndata:\n\n",
			[]parsedEvent{{"", "", true, "data\n\n", false}, {"", "", true, "data:\n\n", false}}},
		{"id, retry and unknown fields are ignored", "id: 7\nretry: 10\nfoo: bar\ndata: 1\n\n",
			[]parsedEvent{{"", "1", true, "id: 7\nretry: 10\nfoo: bar\ndata: 1\n\n", false}}},
		{"last event name wins", "event: a\nevent: b\ndata: 1\n\n",
			[]parsedEvent{{"b", "1", true, "event: a\nevent: b\ndata: 1\n\n", false}}},
		{"leading BOM is dropped from the first field", "\xEF\xBB\xBFdata: 1\n\n",
			[]parsedEvent{{"", "1", true, "\xEF\xBB\xBFdata: 1\n\n", false}}},
		{"final event without blank line is flushed at EOF", "data: 1\n\ndata: 2\n",
			[]parsedEvent{{"", "1", true, "data: 1\n\n", false}, {"", "2", true, "data: 2\n", true}}},
		{"final line without line end is flushed at EOF", "data: [DONE]",
			[]parsedEvent{{"", "[DONE]", true, "data: [DONE]", true}}},
		{"final CR at EOF ends the line", "data: 1\r",
			[]parsedEvent{{"", "1", true, "data: 1\r", true}}},
		{"Anthropic framing with trailing spaces in data", "event: ping\ndata: {\"type\": \"ping\"}   \n\n",
			[]parsedEvent{{"ping", `{"type": "ping"}   `, true, "event: ping\ndata: {\"type\": \"ping\"}   \n\n", false}}},
		{"empty stream", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseChunks(t, [][]byte{[]byte(tt.in)})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("events:\n got %v\nwant %v", got, tt.want)
			}
			// Split anywhere, the same events come out.
			for _, chunks := range everySplit([]byte(tt.in)) {
				got, err := parseChunks(t, chunks)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("split %q:\n got %v\nwant %v", chunks, got, tt.want)
				}
			}
		})
	}
}

// everySplit returns the input cut in two at every byte boundary, cut into
// single bytes, and cut at random points many times.
func everySplit(in []byte) [][][]byte {
	var out [][][]byte
	for i := 0; i <= len(in); i++ {
		out = append(out, [][]byte{in[:i], in[i:]})
	}
	var ones [][]byte
	for i := range in {
		ones = append(ones, in[i:i+1])
	}
	out = append(out, append(ones, nil))
	r := rand.New(rand.NewPCG(1, uint64(len(in))))
	for range 20 {
		out = append(out, randomSplit(r, in))
	}
	return out
}

func randomSplit(r *rand.Rand, in []byte) [][]byte {
	var chunks [][]byte
	for len(in) > 0 {
		n := 1 + r.IntN(min(len(in), 40))
		if r.IntN(10) == 0 {
			chunks = append(chunks, nil) // empty chunks happen too
		}
		chunks = append(chunks, in[:n])
		in = in[n:]
	}
	return append(chunks, nil)
}

func TestSSEParserEventTooLarge(t *testing.T) {
	p := SSEParser{MaxEventSize: 64}
	p.Write([]byte("data: " + strings.Repeat("x", 100)))
	if _, _, err := p.Next(false); !errors.Is(err, ErrSSEEventTooLarge) {
		t.Fatalf("unterminated 100-byte event with a 64-byte limit: err = %v, want ErrSSEEventTooLarge", err)
	}
	p = SSEParser{MaxEventSize: 64}
	p.Write([]byte(strings.Repeat("data: 0123456789\n", 10)))
	if _, _, err := p.Next(false); !errors.Is(err, ErrSSEEventTooLarge) {
		t.Fatalf("many data lines past the limit: err = %v, want ErrSSEEventTooLarge", err)
	}
	// Many events each under the limit are fine, whatever their total.
	p = SSEParser{MaxEventSize: 64}
	for range 1000 {
		p.Write([]byte("data: 0123456789\n\n"))
		for {
			_, ok, err := p.Next(false)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
		}
	}
}

func TestSSEParserMemoryBoundedByLargestEvent(t *testing.T) {
	var p SSEParser
	event := []byte("data: " + strings.Repeat("y", 1000) + "\n\n")
	n := 0
	for i := range 5000 {
		// Feed each event in three pieces so that partial events are held.
		p.Write(event[:i%len(event)])
		p.Write(event[i%len(event):])
		for {
			_, ok, err := p.Next(false)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			n++
		}
	}
	if n != 5000 {
		t.Fatalf("got %d events, want 5000", n)
	}
	if c := cap(p.buf); c > 4*len(event) {
		t.Fatalf("buffer capacity %d after 5 MB of stream; want it bounded by a few events (%d bytes each)", c, len(event))
	}
}

func TestAppendSSE(t *testing.T) {
	tests := []struct {
		name, event, data, want string
	}{
		{"data only", "", `{"a":1}`, "data: {\"a\":1}\n\n"},
		{"named", "message_start", `{}`, "event: message_start\ndata: {}\n\n"},
		{"newlines become data lines", "", "a\nb\r\nc\rd", "data: a\ndata: b\ndata: c\ndata: d\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(appendSSE(nil, tt.event, []byte(tt.data)))
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			evs, err := parseChunks(t, [][]byte{[]byte(got)})
			if err != nil || len(evs) != 1 {
				t.Fatalf("round trip: %v %v", evs, err)
			}
			wantData := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(tt.data)
			if evs[0].Name != tt.event || evs[0].Data != wantData {
				t.Fatalf("round trip: got %v", evs[0])
			}
		})
	}
}

func FuzzSSEParser(f *testing.F) {
	f.Add([]byte("event: a\ndata: 1\n\n"), uint64(1))
	f.Add([]byte("data: a\r\ndata: b\r\r\n: c\n\n\n"), uint64(2))
	f.Add([]byte("\xEF\xBB\xBFdata:x\rdata\r\n"), uint64(3))
	f.Fuzz(func(t *testing.T, in []byte, seed uint64) {
		whole, err := parseChunks(t, [][]byte{in})
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		for _, e := range whole {
			raw.WriteString(e.Raw)
		}
		if raw.String() != string(in) {
			t.Fatalf("Raw of all events = %q, want the input %q", raw.String(), in)
		}
		split, err := parseChunks(t, randomSplit(rand.New(rand.NewPCG(seed, 7)), in))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(whole, split) {
			t.Fatalf("split changed the events:\nwhole %v\nsplit %v", whole, split)
		}
	})
}
