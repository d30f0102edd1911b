package query

import "strings"

// normalizeETag returns the stored tag as a valid entity tag: as it is when
// it already is one (W/"…" or "…"), quoted as a weak tag otherwise.
func normalizeETag(stored string) (string, bool) {
	stored = strings.TrimSpace(stored)
	if stored == "" {
		return "", false
	}
	if _, rest, ok := parseETag(stored); ok && rest == "" {
		return stored, true
	}
	return `W/"` + strings.NewReplacer(`"`, "", `\`, "").Replace(stored) + `"`, true
}

// noneMatch reports whether an If-None-Match value matches tag under the
// weak comparison (RFC 9110 §13.1.2): "*", or any listed tag whose opaque
// part equals tag's, W/ or not. A malformed list matches nothing, so the
// client gets the full response.
func noneMatch(header, tag string) bool {
	want, _, ok := parseETag(tag)
	if !ok {
		return false
	}
	s := strings.TrimSpace(header)
	if s == "*" {
		return true
	}
	for s != "" {
		s = strings.TrimLeft(s, " \t,")
		if s == "" {
			break
		}
		var opaque string
		if opaque, s, ok = parseETag(s); !ok {
			return false
		}
		if opaque == want {
			return true
		}
	}
	return false
}

// parseETag reads one entity tag at the start of s and returns its opaque
// part (with quotes) and what follows.
func parseETag(s string) (opaque, rest string, ok bool) {
	s = strings.TrimPrefix(s, "W/")
	if len(s) < 2 || s[0] != '"' {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return "", "", false
	}
	for _, c := range []byte(s[1 : end+1]) {
		// etagc: %x21 / %x23-7E / obs-text
		if c < 0x21 || c == 0x7f {
			return "", "", false
		}
	}
	return s[:end+2], strings.TrimLeft(s[end+2:], " \t"), true
}
