package config

import (
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Secret is a setting that may hold a password or a token, such as a
// connection URL. Every way of printing it (String, fmt's %v and %s, slog,
// a flag's default in -h output) shows it redacted; Value gives the real
// thing to the code that connects.
type Secret string

// Value is the setting itself, for the code that uses it.
func (s Secret) Value() string { return string(s) }

// String is the setting with its secrets replaced by "xxxxx".
func (s Secret) String() string { return Redact(string(s)) }

// Set lets a Secret be a flag.
func (s *Secret) Set(v string) error {
	*s = Secret(v)
	remember(v)
	return nil
}

// LogValue keeps the secret out of logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the secret out of JSON (slog's JSON handler marshals a
// Config that way) and other text encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// GoString keeps the secret out of %#v.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// keyValuePassword matches the password of a key=value connection string
// (password=..., or password='...' with escapes).
var keyValuePassword = regexp.MustCompile(`(?i)\b(password|token|pass)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)

// Redact hides the passwords and tokens in s: the user info of every URL in
// a comma-separated list (postgres://user:xxxxx@host, nats://xxxxx@host for a
// token) and the password of a key=value connection string. Anything it
// cannot parse as a URL keeps only what precedes an "@".
func Redact(s string) string {
	if strings.Contains(s, "=") && !strings.Contains(s, "://") {
		return keyValuePassword.ReplaceAllString(s, "${1}=xxxxx")
	}
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactURL(p)
	}
	return strings.Join(parts, ",")
}

func redactURL(s string) string {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		if at := strings.LastIndex(s, "@"); at >= 0 {
			return "xxxxx@" + s[at+1:]
		}
		return s
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else if strings.HasPrefix(u.Scheme, "nats") || strings.HasPrefix(u.Scheme, "tls") {
			// nats://TOKEN@host: the user part is the token.
			u.User = url.User("xxxxx")
		}
	}
	q := u.Query()
	changed := false
	for k := range q {
		switch strings.ToLower(k) {
		case "password", "token", "sslpassword":
			q.Set(k, "xxxxx")
			changed = true
		}
	}
	if changed {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// The secrets this process was given (DATABASE_URL, NATS_URL, as flags or
// environment), so that text from elsewhere can be scrubbed of them: a
// library's error may quote a connection string as it got it (net/url's
// parse errors do, and the NATS client returns them).
var known struct {
	sync.RWMutex
	values   map[string]bool
	replacer *strings.Replacer
}

// remember makes Scrub and ScrubString hide the secrets of v.
func remember(v string) {
	if v == "" || Redact(v) == v {
		return
	}
	known.Lock()
	defer known.Unlock()
	if known.values[v] {
		return
	}
	if known.values == nil {
		known.values = map[string]bool{}
	}
	known.values[v] = true
	var pairs []string
	for s := range known.values {
		pairs = append(pairs, secretPairs(s)...)
	}
	// Longer first: a whole URL before the password inside it.
	type pair struct{ old, new string }
	ps := make([]pair, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		ps = append(ps, pair{pairs[i], pairs[i+1]})
	}
	slices.SortFunc(ps, func(a, b pair) int { return len(b.old) - len(a.old) })
	flat := make([]string, 0, len(pairs))
	for _, p := range ps {
		flat = append(flat, p.old, p.new)
	}
	known.replacer = strings.NewReplacer(flat...)
}

// secretPairs are the old, new replacements that hide the secrets of a
// connection string: each URL of the list by its redacted form, and each
// password or token alone (for a message that quotes it without the rest).
func secretPairs(v string) []string {
	var pairs []string
	add := func(old, new string) {
		if len(old) >= 3 && old != new {
			pairs = append(pairs, old, new)
		}
	}
	if strings.Contains(v, "=") && !strings.Contains(v, "://") {
		add(v, Redact(v))
		for _, m := range keyValuePassword.FindAllStringSubmatch(v, -1) {
			add(m[2], "xxxxx")
			add(strings.Trim(m[2], "'"), "xxxxx")
		}
		return pairs
	}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		add(part, Redact(part))
		// The user info as written, parsed or not (a URL that does not
		// parse is the one an error quotes).
		rest := part
		if i := strings.Index(rest, "://"); i >= 0 {
			rest = rest[i+3:]
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		userinfo := rest[:at]
		secret := userinfo
		if _, pw, ok := strings.Cut(userinfo, ":"); ok {
			secret = pw
		} else if !strings.HasPrefix(part, "nats") && !strings.HasPrefix(part, "tls") {
			continue // postgres://user@host: no secret
		}
		add(secret, "xxxxx")
		if un, err := url.PathUnescape(secret); err == nil {
			add(un, "xxxxx")
		}
		if u, err := url.Parse(part); err == nil {
			for k, vs := range u.Query() {
				switch strings.ToLower(k) {
				case "password", "token", "sslpassword":
					for _, s := range vs {
						add(s, "xxxxx")
					}
				}
			}
		}
	}
	return pairs
}

// ScrubString is s with every secret this process was given hidden.
func ScrubString(s string) string {
	known.RLock()
	r := known.replacer
	known.RUnlock()
	if r == nil {
		return s
	}
	return r.Replace(s)
}

// Scrub is err with every secret this process was given hidden from its
// message; errors.Is and errors.As still see err.
func Scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := ScrubString(err.Error())
	if msg == err.Error() {
		return err
	}
	return &scrubbed{err: err, msg: msg}
}

type scrubbed struct {
	err error
	msg string
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.err }

// scrubWriter hides the secrets in what a logger writes.
type scrubWriter struct{ w io.Writer }

func (s scrubWriter) Write(p []byte) (int, error) {
	out := ScrubString(string(p))
	if _, err := io.WriteString(s.w, out); err != nil {
		return 0, err
	}
	return len(p), nil
}
