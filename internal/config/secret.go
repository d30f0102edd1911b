package config

import (
	"log/slog"
	"net/url"
	"regexp"
	"strings"
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
	return nil
}

// LogValue keeps the secret out of logs.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

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

// SecretEnv is the environment that hands the secrets of c to a child
// process, as "NAME=value" pairs to append to its exec.Cmd.Env: a command
// line is readable by every user of the machine (ps, /proc/PID/cmdline),
// the environment of a process only by its owner.
func (c Config) SecretEnv() []string {
	return []string{"DATABASE_URL=" + c.Database.URL.Value(), "NATS_URL=" + c.NATS.URL.Value()}
}
