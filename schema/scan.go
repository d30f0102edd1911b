package schema

import (
	"encoding/json"
	"unicode/utf16"
	"unicode/utf8"
)

// The decoder reads JSON with the scanner below rather than with
// encoding/json. Unmarshalling the envelope, and then data, into
// map[string]json.RawMessage checked the text once, walked it again to
// fill each map, copied every value and allocated the maps: most of the
// projector's time during a catch-up. The scanner does it all in one pass,
// and allocates only to unquote a name with escapes: it checks that the
// text is JSON, and keeps the members of the objects the decoder reads
// (the event, its data) as slices of the text.
//
// It accepts exactly the text encoding/json accepts, if UTF-8: RFC 8259
// JSON nested at most maxNesting levels deep. (It refuses text that is not
// UTF-8 too, which the decoder rejects before it asks whether it is JSON.)
// FuzzDecodeEquivalent holds it to that. It does not say what is wrong
// with text that is not JSON: syntaxErr asks encoding/json, so that the
// error messages are the ones they always were.

// maxNesting is encoding/json's bound on nesting (its maxNestingDepth):
// text with objects and arrays nested deeper is not JSON to it.
const maxNesting = 10000

// member is one member of a JSON object.
type member struct {
	key   []byte // the name, unquoted: a slice of the text unless it has escapes
	value []byte // the value's JSON text, a slice of the text without the white space around it
	depth int    // the deepest nesting of objects and arrays in value, 0 for a string, number, boolean or null
}

// memberList are the members of an object, in order.
type memberList []member

// lookup returns the last member named name: of two members with one name,
// the second counts, as it would in a map.
func (ms memberList) lookup(name string) (member, bool) {
	for i := len(ms) - 1; i >= 0; i-- {
		if string(ms[i].key) == name {
			return ms[i], true
		}
	}
	return member{}, false
}

// scanner reads one JSON text. Its methods read a value from pos on and
// leave pos after it; they report false when the text is not JSON, and
// pos is then meaningless.
type scanner struct {
	text []byte
	pos  int
	nul  bool // some string of the text has the escape \u0000
}

// document is what scanner.document found.
type document struct {
	value   []byte     // the text of the value, without the white space around it
	depth   int        // the deepest nesting of objects and arrays in it
	members memberList // the members of the value, an object, if asked for
	data    memberList // the members of its member data, an object, if asked for
}

// document reads the whole text: one value, white space around it allowed.
// When the value is an object:
//   - if members is not nil, doc.members is members with the object's
//     members appended;
//   - if data is not nil, doc.data is data with the members appended of
//     the object's last member named "data", when its value is an object.
//
// The lists travel as arguments and results rather than through pointers,
// so that arrays on the caller's stack stay there (escape analysis takes
// what is stored through a pointer to be on the heap).
func (s *scanner) document(members, data memberList) (doc document, ok bool) {
	s.space()
	start := s.pos
	if s.peek() == '{' {
		doc.members, doc.data, doc.depth, ok = s.object(0, members, data)
	} else {
		doc.depth, ok = s.value(0)
	}
	if !ok {
		return document{}, false
	}
	doc.value = s.text[start:s.pos]
	s.space()
	return doc, s.pos == len(s.text)
}

// peek returns the byte at pos, or 0 at the end of the text: NUL is no
// more JSON outside a string than the end is.
func (s *scanner) peek() byte {
	if s.pos < len(s.text) {
		return s.text[s.pos]
	}
	return 0
}

// space skips white space.
func (s *scanner) space() {
	for s.pos < len(s.text) {
		switch s.text[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value reads any value, nested in depth objects and arrays, and returns
// its depth.
func (s *scanner) value(depth int) (int, bool) {
	switch s.peek() {
	case '{':
		_, _, d, ok := s.object(depth, nil, nil)
		return d, ok
	case '[':
		return s.array(depth)
	case '"':
		_, ok := s.string()
		return 0, ok
	case 't':
		return 0, s.literal("true")
	case 'f':
		return 0, s.literal("false")
	case 'n':
		return 0, s.literal("null")
	}
	return 0, s.number()
}

// object reads the object at pos, nested in depth objects and arrays, and
// returns its depth. members and data are as for document, and come back
// with what it appended.
func (s *scanner) object(depth int, members, data memberList) (_, _ memberList, _ int, ok bool) {
	if depth++; depth > maxNesting {
		return nil, nil, 0, false
	}
	s.pos++ // {
	s.space()
	if s.peek() == '}' {
		s.pos++
		return members, data, 1, true
	}
	deepest := 0
	for {
		if s.peek() != '"' {
			return nil, nil, 0, false
		}
		start := s.pos
		escaped, ok := s.string()
		if !ok {
			return nil, nil, 0, false
		}
		key := s.text[start+1 : s.pos-1]
		if escaped && (members != nil || data != nil) { // the name is wanted
			key = unescape(key)
		}
		s.space()
		if s.peek() != ':' {
			return nil, nil, 0, false
		}
		s.pos++
		s.space()
		start = s.pos
		var d int
		if data != nil && s.peek() == '{' && string(key) == "data" {
			// A later member named data replaces an earlier one, as in a map.
			data, _, d, ok = s.object(depth, data[:0], nil)
		} else {
			d, ok = s.value(depth)
		}
		if !ok {
			return nil, nil, 0, false
		}
		deepest = max(deepest, d)
		if members != nil {
			members = append(members, member{key: key, value: s.text[start:s.pos], depth: d})
		}
		s.space()
		switch s.peek() {
		case ',':
			s.pos++
			s.space()
		case '}':
			s.pos++
			return members, data, deepest + 1, true
		default:
			return nil, nil, 0, false
		}
	}
}

// array reads the array at pos, nested in depth objects and arrays, and
// returns its depth.
func (s *scanner) array(depth int) (int, bool) {
	if depth++; depth > maxNesting {
		return 0, false
	}
	s.pos++ // [
	s.space()
	if s.peek() == ']' {
		s.pos++
		return 1, true
	}
	deepest := 0
	for {
		d, ok := s.value(depth)
		if !ok {
			return 0, false
		}
		deepest = max(deepest, d)
		s.space()
		switch s.peek() {
		case ',':
			s.pos++
			s.space()
		case ']':
			s.pos++
			return deepest + 1, true
		default:
			return 0, false
		}
	}
}

// plain marks the ASCII characters a string holds as they are: all but the
// quote, the backslash and the control characters, which JSON requires
// escaped.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// string reads the string at pos and reports whether it has escapes. It
// notes the escape \u0000 in nul.
func (s *scanner) string() (escaped, ok bool) {
	t := s.text
	for i := s.pos + 1; i < len(t); {
		if plain[t[i]] {
			i++
			continue
		}
		switch t[i] {
		case '"':
			s.pos = i + 1
			return escaped, true
		case '\\':
			escaped = true
			if i+1 >= len(t) {
				return false, false
			}
			switch t[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if hex4(t[i+2:]) < 0 {
					return false, false
				}
				if string(t[i+2:i+6]) == "0000" {
					s.nul = true
				}
				i += 6
			default:
				return false, false
			}
		default:
			if t[i] < utf8.RuneSelf { // a control character
				return false, false
			}
			// Past ASCII: the scanner checks UTF-8 here, the only place
			// in JSON where such bytes may be, rather than in a pass of
			// its own over the whole text.
			r, size := utf8.DecodeRune(t[i:])
			if r == utf8.RuneError && size == 1 {
				return false, false
			}
			i += size
		}
	}
	return false, false
}

// hex4 returns the value of the four hexadecimal digits b starts with, or
// -1.
func hex4(b []byte) rune {
	if len(b) < 4 {
		return -1
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

// literal reads the literal word (true, false or null).
func (s *scanner) literal(word string) bool {
	if len(s.text)-s.pos < len(word) || string(s.text[s.pos:s.pos+len(word)]) != word {
		return false
	}
	s.pos += len(word)
	return true
}

// number reads a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
// What may follow it is for the caller to check.
func (s *scanner) number() bool {
	t, i := s.text, s.pos
	digits := func() bool { // one or more
		n := i
		for i < len(t) && '0' <= t[i] && t[i] <= '9' {
			i++
		}
		return i > n
	}
	if i < len(t) && t[i] == '-' {
		i++
	}
	switch {
	case i < len(t) && t[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(t) && t[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		i++
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	s.pos = i
	return true
}

// unescape decodes the characters of a JSON string, s the text between its
// quotes, as encoding/json does: an escape of a UTF-16 surrogate that is
// not half of a pair becomes U+FFFD, as does a byte that is not UTF-8.
func unescape(s []byte) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			switch e := s[i+1]; e {
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r := hex4(s[i+2:])
				i += 6
				if utf16.IsSurrogate(r) {
					var r2 rune = -1
					if i+1 < len(s) && s[i] == '\\' && s[i+1] == 'u' {
						r2 = hex4(s[i+2:])
					}
					if pair := utf16.DecodeRune(r, r2); pair != utf8.RuneError {
						b = utf8.AppendRune(b, pair)
						i += 6
						continue
					}
					r = utf8.RuneError
				}
				b = utf8.AppendRune(b, r)
				continue
			default: // " \ /
				b = append(b, e)
			}
			i += 2
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(s[i:])
			b = utf8.AppendRune(b, r)
			i += size
		}
	}
	return b
}

// syntaxErr rejects text the scanner found not to be JSON, with the
// message encoding/json gives for it.
func syntaxErr(text []byte) *Error {
	var v json.RawMessage
	if err := json.Unmarshal(text, &v); err != nil {
		return &Error{Reason: ReasonInvalidJSON, Msg: jsonErrMsg(err)}
	}
	// The scanner and encoding/json disagree: a bug of the scanner, which
	// FuzzDecodeEquivalent is there to find. Reject rather than guess.
	return &Error{Reason: ReasonInvalidJSON, Msg: "not valid JSON"}
}
