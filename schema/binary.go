package schema

import (
	"bytes"
	"mime"
	"strings"
	"unicode/utf8"
)

// Binary content mode (contract 1.2, "Transport"): each attribute travels in
// a header ce-<name>, and the body is the data alone. The headers are a
// plain map, as nats.Header is, so that this package needs no NATS client.

// ContentType is the media type of data, in both modes: the
// datacontenttype attribute in structured mode; the content-type header or
// ce-datacontenttype in binary mode, where parameters may follow it.
const ContentType = "application/json"

// ceHeaderPrefix starts the header of every attribute in binary mode. Names
// are matched in any case; the attribute is the rest of the name, lower-cased.
const ceHeaderPrefix = "ce-"

// BinaryMode reports whether a message with these headers is in binary
// content mode: whether it has a ce-specversion header, in any case, even
// without a value. Any other message is in structured mode.
func BinaryMode(header map[string][]string) bool {
	for k := range header {
		if strings.EqualFold(k, ceHeaderPrefix+"specversion") {
			return true
		}
	}
	return false
}

// DecodeMessage validates a message published on subject, in either content
// mode, against the contract and its limits, and returns the event, as
// Decode does. header holds the message's headers (a nats.Header converts
// as it is). In binary mode the body is the data; otherwise it is the whole
// event and DecodeMessage is Decode. The two modes of one event give equal
// Events, Digest included, and the same rules, limits and reasons apply to
// both. Binary mode ignores every header but the ce- attributes and
// content-type, and so every extension attribute.
func DecodeMessage(subject string, header map[string][]string, body []byte) (*Event, error) {
	return contractLimits.DecodeMessage(subject, header, body)
}

// DecodeMessage is the package-level DecodeMessage under the limits l.
func (l Limits) DecodeMessage(subject string, header map[string][]string, body []byte) (*Event, error) {
	if !BinaryMode(header) {
		return l.Decode(subject, body)
	}
	h := headerAttrs{attrs: make(map[string][]string, len(header))}
	for k, v := range header {
		switch {
		case len(k) > len(ceHeaderPrefix) && strings.EqualFold(k[:len(ceHeaderPrefix)], ceHeaderPrefix):
			name := strings.ToLower(k[len(ceHeaderPrefix):])
			if prev, ok := h.attrs[name]; ok {
				h.attrs[name] = append(prev, v...) // headers whose names differ in case only
			} else {
				// The caller's values, not a copy: they are only read, and
				// the capacity cut to the length makes an append above copy.
				h.attrs[name] = v[:len(v):len(v)]
			}
		case strings.EqualFold(k, "content-type"):
			h.contentType = append(h.contentType, v...)
		}
	}

	if err := l.checkSize(body); err != nil {
		return nil, err
	}
	var dataBuf [12]member
	var data rawData
	s := scanner{text: body}
	if len(bytes.Trim(body, jsonSpace)) > 0 {
		doc, ok := s.document(dataBuf[:0], nil)
		if !ok {
			// As encoding/json says it of the body without the white
			// space around it, with offsets into that.
			return nil, notJSON(body, bytes.Trim(body, jsonSpace))
		}
		data = rawData{text: doc.value, members: doc.members, depth: doc.depth}
	}
	if l.Storable {
		for _, name := range envelopeAttrs {
			for _, v := range h.attrs[name] {
				if strings.IndexByte(v, 0) >= 0 {
					return nil, nulErr()
				}
			}
		}
		if s.nul {
			return nil, nulErr()
		}
	}
	ev, err := l.decode(subject, attrSource{header: &h}, data)
	if err != nil {
		return nil, err
	}
	return ev, nil
}

// jsonSpace is the white space JSON allows around a value.
const jsonSpace = " \t\r\n"

// envelopeAttrs are the attributes of the contract's envelope other than data.
var envelopeAttrs = [...]string{"specversion", "id", "source", "type", "time", "orgid", "jobid", "callid", "datacontenttype"}

// headerAttrs are the attributes of a binary-mode message: the values of its
// ce- headers by attribute name, and its content-type headers.
type headerAttrs struct {
	attrs       map[string][]string
	contentType []string
}

func (h headerAttrs) get(name string) (string, bool, *Error) {
	vs := h.attrs[name]
	switch {
	case len(vs) == 0:
		return "", false, nil
	case len(vs) > 1:
		return "", false, envelopeErr(name, "header %s%s has %d values, want one", ceHeaderPrefix, name, len(vs))
	case !utf8.ValidString(vs[0]):
		return "", false, envelopeErr(name, "header %s%s is not valid UTF-8", ceHeaderPrefix, name)
	}
	return vs[0], true, nil
}

// checkContentType checks ce-datacontenttype and content-type: each, when
// present, is application/json, in any case, with parameters; a charset
// among them must be UTF-8, the only encoding of JSON the contract knows.
func (h headerAttrs) checkContentType() *Error {
	headers := []struct {
		name   string
		values []string
	}{{ceHeaderPrefix + "datacontenttype", h.attrs["datacontenttype"]}, {"content-type", h.contentType}}
	for _, hd := range headers {
		if len(hd.values) > 1 {
			return envelopeErr("datacontenttype", "header %s has %d values, want one", hd.name, len(hd.values))
		}
		for _, v := range hd.values {
			mt, params, err := mime.ParseMediaType(v)
			if err != nil || mt != ContentType {
				return envelopeErr("datacontenttype", "header %s must be %q, got %q", hd.name, ContentType, truncate(v))
			}
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
				return envelopeErr("datacontenttype", "header %s: charset must be utf-8, got %q", hd.name, truncate(cs))
			}
		}
	}
	return nil
}
