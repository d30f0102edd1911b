package schema

import (
	"bytes"
	"encoding/json"
	"slices"
)

// quickCanonical is canonical(raw, bounded) for the JSON text most
// producers write: without escapes. canonical decodes the text into maps
// and encodes it again, which costs as much as the rest of decoding the
// event. Of text without escapes, U+2028 or U+2029, canonical writes every
// string (names included) and every number as it is: all it changes is
// the white space, which it drops, and the order of the names of each
// object, which it sorts, keeping the last of a repeated name, as a map
// does. quickCanonical does only that, reading the text once. ok is false
// when the text has escapes, U+2028 or U+2029, or, with bounded, a number
// past the bounds: then canonical is to be called, for the re-encoding of
// strings or for its error. raw is JSON.
func quickCanonical(raw []byte, bounded bool) (c json.RawMessage, ok bool) {
	if !unescaped(raw) {
		return nil, false
	}
	w := canonicalWriter{s: scanner{text: raw}, out: make([]byte, 0, len(raw)), bounded: bounded}
	w.s.space()
	if !w.value() {
		return nil, false
	}
	return w.out, true
}

// unescaped reports whether the JSON text b has no escape, nor the
// characters canonical escapes that JSON does not require escaped, U+2028
// and U+2029: whether canonical writes its strings as they are.
func unescaped(b []byte) bool {
	return bytes.IndexByte(b, '\\') < 0 && !bytes.Contains(b, []byte("\u2028")) && !bytes.Contains(b, []byte("\u2029"))
}

// canonicalWriter writes the canonical form of JSON text without escapes.
type canonicalWriter struct {
	s       scanner // reads the text, JSON already: it cannot fail
	out     []byte
	scratch []byte // where an object's members wait to be put in order
	bounded bool
}

// canonicalMember is a member of an object, written in out[start:end].
type canonicalMember struct {
	name       []byte
	start, end int
}

// value writes the value at the scanner's position, and the white space
// after it is skipped. It reports false for a number past the bounds.
func (w *canonicalWriter) value() bool {
	s := &w.s
	start := s.pos
	switch s.peek() {
	case '{':
		if !w.object() {
			return false
		}
	case '[':
		if !w.array() {
			return false
		}
	case '"':
		s.string()
		w.out = append(w.out, s.text[start:s.pos]...)
	case 't':
		s.literal("true")
		w.out = append(w.out, "true"...)
	case 'f':
		s.literal("false")
		w.out = append(w.out, "false"...)
	case 'n':
		s.literal("null")
		w.out = append(w.out, "null"...)
	default:
		s.number()
		n := s.text[start:s.pos]
		if w.bounded && checkNumber(string(n), maxDataNumLen, maxDataExp) != "" {
			return false
		}
		w.out = append(w.out, n...)
	}
	s.space()
	return true
}

func (w *canonicalWriter) array() bool {
	s := &w.s
	s.pos++ // [
	s.space()
	w.out = append(w.out, '[')
	for n := 0; s.peek() != ']'; n++ {
		if n > 0 {
			w.out = append(w.out, ',')
		}
		if !w.value() {
			return false
		}
		if s.peek() == ',' {
			s.pos++
			s.space()
		}
	}
	s.pos++ // ]
	w.out = append(w.out, ']')
	return true
}

// object writes the members in the order they come, then, unless their
// names came in increasing order already, puts them in order again.
func (w *canonicalWriter) object() bool {
	s := &w.s
	s.pos++ // {
	s.space()
	open := len(w.out)
	w.out = append(w.out, '{')
	var buf [16]canonicalMember
	members := buf[:0]
	inOrder := true
	for s.peek() != '}' {
		if len(members) > 0 {
			w.out = append(w.out, ',')
		}
		start := len(w.out)
		nameStart := s.pos
		s.string()
		name := s.text[nameStart+1 : s.pos-1]
		w.out = append(w.out, s.text[nameStart:s.pos]...)
		s.space()
		s.pos++ // :
		s.space()
		w.out = append(w.out, ':')
		if !w.value() {
			return false
		}
		if n := len(members); n > 0 && bytes.Compare(members[n-1].name, name) >= 0 {
			inOrder = false
		}
		members = append(members, canonicalMember{name: name, start: start, end: len(w.out)})
		if s.peek() == ',' {
			s.pos++
			s.space()
		}
	}
	s.pos++ // }
	if !inOrder {
		// A stable sort keeps repeated names in the order they came: the
		// last of each run is the one a map keeps.
		slices.SortStableFunc(members, func(a, b canonicalMember) int { return bytes.Compare(a.name, b.name) })
		w.scratch = append(w.scratch[:0], w.out[open:]...)
		w.out = w.out[:open+1]
		for i, m := range members {
			if i+1 < len(members) && bytes.Equal(m.name, members[i+1].name) {
				continue
			}
			if len(w.out) > open+1 {
				w.out = append(w.out, ',')
			}
			w.out = append(w.out, w.scratch[m.start-open:m.end-open]...)
		}
	}
	w.out = append(w.out, '}')
	return true
}
