package translate

import (
	"bytes"
	"errors"
)

// DefaultMaxSSEEvent is the size limit of one server-sent event when
// SSEParser.MaxEventSize is zero. A provider that never ends an event must not
// make the gateway buffer without bound; real events are a few kilobytes (a
// tool call's arguments arrive in many small deltas).
const DefaultMaxSSEEvent = 8 << 20

// ErrSSEEventTooLarge is returned by SSEParser.Next when one event grows past
// the parser's limit without its terminating blank line.
var ErrSSEEventTooLarge = errors.New("server-sent event exceeds the size limit")

// SSEEvent is one block of a text/event-stream, as delimited by a blank line.
// Its slices point into the parser's buffer and stay valid until the next call
// to SSEParser.Write or SSEParser.Next.
type SSEEvent struct {
	// Name is the value of the last "event:" field; empty means "message".
	Name []byte
	// Data is the event's data: its "data:" lines joined with "\n".
	Data []byte
	// HasData reports whether the block had at least one "data:" line. Blocks
	// without one (comments, keep-alives, stray blank lines) are not events
	// to a browser's EventSource, but passthrough still forwards their Raw
	// bytes.
	HasData bool
	// Raw is the block exactly as received, including its terminating blank
	// line (absent only for a final block cut off by the end of the stream).
	Raw []byte
	// Truncated is set on a final block that the stream ended before its
	// blank line: it may be cut in the middle of its data.
	Truncated bool
}

// SSEParser splits a text/event-stream into events incrementally, as
// https://html.spec.whatwg.org/multipage/server-sent-events.html describes:
// lines end in CRLF, LF or CR, events end at a blank line, fields are
// "name: value" with one optional space, lines starting with ':' are
// comments, and several data lines are joined with "\n". Chunks may split the
// stream anywhere, including inside a CRLF pair.
//
// Memory is bounded by the largest single event (plus the chunk being fed):
// consumed events are dropped from the buffer on the next Write.
//
// The zero value is ready to use.
type SSEParser struct {
	// MaxEventSize limits one event's raw size in bytes; 0 means
	// DefaultMaxSSEEvent.
	MaxEventSize int

	buf   []byte
	start int // offset of the first byte of the event being assembled
	pos   int // offset of the first byte not yet consumed as a line
	begun bool

	name      span // last "event:" value
	data      span // first "data:" value
	dataLines int
	joined    []byte // data lines joined, when there is more than one
}

type span struct{ start, end int }

// shift moves a span of the event being assembled by n bytes towards the
// buffer's start. Unset spans (and spans of events already handed out) lie
// before n and become empty.
func (s span) shift(n int) span {
	if s.start < n {
		return span{}
	}
	return span{s.start - n, s.end - n}
}

// Write appends a chunk of the stream. It keeps no reference to b.
func (p *SSEParser) Write(b []byte) {
	if p.start > 0 {
		// Drop the events already handed out. What is left is at most one
		// partial event, so the copy is bounded by the event size limit.
		n := copy(p.buf, p.buf[p.start:])
		shift := p.start
		p.buf = p.buf[:n]
		p.pos -= shift
		p.name = p.name.shift(shift)
		p.data = p.data.shift(shift)
		p.start = 0
	}
	p.buf = append(p.buf, b...)
}

// Next returns the next complete event. ok is false when more input is
// needed. With atEOF true, a final block that lacks its blank line (or a
// final line that lacks its line end) is returned as an event rather than
// held back: a stream cut short still yields what it carried.
func (p *SSEParser) Next(atEOF bool) (ev SSEEvent, ok bool, err error) {
	limit := p.MaxEventSize
	if limit <= 0 {
		limit = DefaultMaxSSEEvent
	}
	for {
		rest := p.buf[p.pos:]
		lf := bytes.IndexByte(rest, '\n')
		scan := rest
		if lf >= 0 {
			scan = rest[:lf]
		}
		cr := bytes.IndexByte(scan, '\r')
		var lineEnd, next int
		switch {
		case cr >= 0:
			lineEnd = p.pos + cr
			switch {
			case cr+1 < len(rest):
				next = lineEnd + 1
				if rest[cr+1] == '\n' {
					next++
				}
			case atEOF:
				next = lineEnd + 1
			default:
				// A CR at the end of the input may be the first half of a
				// CRLF: wait, so that Raw spans do not depend on how the
				// stream was split.
				return p.waitOrFail(limit)
			}
		case lf >= 0:
			lineEnd = p.pos + lf
			next = lineEnd + 1
		default:
			if !atEOF {
				return p.waitOrFail(limit)
			}
			if p.pos < len(p.buf) {
				p.field(p.pos, len(p.buf))
				p.pos = len(p.buf)
			}
			if p.start == p.pos {
				return SSEEvent{}, false, nil
			}
			ev := p.dispatch()
			ev.Truncated = true
			return ev, true, nil
		}
		lineStart := p.pos
		p.pos = next
		if lineEnd == lineStart {
			return p.dispatch(), true, nil
		}
		p.field(lineStart, lineEnd)
		if p.pos-p.start > limit {
			return SSEEvent{}, false, ErrSSEEventTooLarge
		}
	}
}

func (p *SSEParser) waitOrFail(limit int) (SSEEvent, bool, error) {
	if len(p.buf)-p.start > limit {
		return SSEEvent{}, false, ErrSSEEventTooLarge
	}
	return SSEEvent{}, false, nil
}

// field interprets the line p.buf[s:e].
func (p *SSEParser) field(s, e int) {
	if !p.begun {
		p.begun = true
		if bytes.HasPrefix(p.buf[s:e], utf8BOM) {
			s += len(utf8BOM)
		}
	}
	line := p.buf[s:e]
	if len(line) == 0 || line[0] == ':' {
		return
	}
	colon := bytes.IndexByte(line, ':')
	name := line
	vs := e
	if colon >= 0 {
		name = line[:colon]
		vs = s + colon + 1
		if vs < e && p.buf[vs] == ' ' {
			vs++
		}
	}
	switch string(name) {
	case "event":
		p.name = span{vs, e}
	case "data":
		p.dataLines++
		switch p.dataLines {
		case 1:
			p.data = span{vs, e}
		case 2:
			p.joined = append(p.joined[:0], p.buf[p.data.start:p.data.end]...)
			fallthrough
		default:
			p.joined = append(p.joined, '\n')
			p.joined = append(p.joined, p.buf[vs:e]...)
		}
	}
	// "id" and "retry" matter to reconnecting browsers, not to a proxy that
	// forwards Raw bytes; unknown fields are ignored, as the spec says.
}

func (p *SSEParser) dispatch() SSEEvent {
	ev := SSEEvent{
		Name:    p.buf[p.name.start:p.name.end],
		HasData: p.dataLines > 0,
		Raw:     p.buf[p.start:p.pos],
	}
	switch {
	case p.dataLines == 1:
		ev.Data = p.buf[p.data.start:p.data.end]
	case p.dataLines > 1:
		ev.Data = p.joined
	}
	p.start = p.pos
	p.name, p.data, p.dataLines = span{}, span{}, 0
	return ev
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// appendSSE appends one event with an optional name and the given data,
// splitting data at line ends so that the event cannot be cut short by a
// newline inside it.
func appendSSE(dst []byte, name string, data []byte) []byte {
	if name != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, name...)
		dst = append(dst, '\n')
	}
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			break
		}
		dst = append(dst, "data: "...)
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	dst = append(dst, "data: "...)
	dst = append(dst, data...)
	return append(dst, '\n', '\n')
}
