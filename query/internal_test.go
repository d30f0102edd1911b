package query

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"
)

func TestNoneMatch(t *testing.T) {
	const tag = `W/"abc123"`
	tests := []struct {
		header string
		want   bool
	}{
		{`W/"abc123"`, true},
		{`"abc123"`, true},
		{`*`, true},
		{` * `, true},
		{`"x", W/"abc123"`, true},
		{`"x",W/"abc123" , "y"`, true},
		{`W/"abc1234"`, false},
		{`W/"abc12"`, false},
		{`abc123`, false},
		{`W/abc123`, false},
		{`"abc123`, false},
		{`"x", *`, false},
		{``, false},
		{`,,`, false},
	}
	for _, tt := range tests {
		if got := noneMatch(tt.header, tag); got != tt.want {
			t.Errorf("noneMatch(%q, %q) = %v, want %v", tt.header, tag, got, tt.want)
		}
	}
}

func TestNormalizeETag(t *testing.T) {
	tests := []struct {
		stored, want string
		ok           bool
	}{
		{`W/"0123abcd"`, `W/"0123abcd"`, true},
		{`"0123abcd"`, `"0123abcd"`, true},
		{`0123abcd`, `W/"0123abcd"`, true},
		{` W/"a" `, `W/"a"`, true},
		{`W/"a" junk`, `W/"W/a junk"`, true},
		{``, ``, false},
	}
	for _, tt := range tests {
		got, ok := normalizeETag(tt.stored)
		if got != tt.want || ok != tt.ok {
			t.Errorf("normalizeETag(%q) = %q, %v; want %q, %v", tt.stored, got, ok, tt.want, tt.ok)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"gzip", true},
		{"deflate, gzip;q=0.5", true},
		{"GZIP", true},
		{"x-gzip", true},
		{"*", true},
		{"gzip;q=0", false},
		{"gzip; q=0.0, identity", false},
		{"identity", false},
		{"br", false},
		{"", false},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.header != "" {
			h.Set("Accept-Encoding", tt.header)
		}
		if got := acceptsGzip(h); got != tt.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestBearerKey(t *testing.T) {
	key := newKey()
	tests := []struct {
		header []string
		ok     bool
	}{
		{[]string{"Bearer " + key}, true},
		{[]string{"bearer " + key}, true},
		{[]string{"Bearer   " + key}, true},
		{[]string{" Bearer " + key + " "}, true},
		{nil, false},
		{[]string{"Bearer"}, false},
		{[]string{"Bearer "}, false},
		{[]string{"Basic " + key}, false},
		{[]string{key}, false},
		{[]string{"Bearer " + strings.ToUpper(key)}, false},
		{[]string{"Bearer " + key[:len(key)-1]}, false},
		{[]string{"Bearer " + key + "a"}, false},
		{[]string{"Bearer " + key[:len(key)-1] + "!"}, false},
		{[]string{"Bearer " + key, "Bearer " + key}, false},
	}
	for _, tt := range tests {
		h := http.Header{"Authorization": tt.header}
		got, ok := bearerKey(h)
		if ok != tt.ok || (ok && got != key) {
			t.Errorf("bearerKey(%q) = %q, %v; want ok=%v", tt.header, got, ok, tt.ok)
		}
	}
	for range 100 {
		if k := newKey(); !wellFormedKey(k) || len(k) != 56 {
			t.Fatalf("newKey made %q, which wellFormedKey refuses", k)
		}
	}
}

func TestValidRequestID(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"abc-123", true},
		{"0b7e5b9a-2c1f-4f0e-9d7a-8f0f3c1a2b3c", true},
		{strings.Repeat("a", maxRequestIDLen), true},
		{strings.Repeat("a", maxRequestIDLen+1), false},
		{"a b", false},
		{"a\nb", false},
		{"é", false},
	}
	for _, tt := range tests {
		if got := validRequestID(tt.id); got != tt.want {
			t.Errorf("validRequestID(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func TestKeyCache(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	c := newKeyCache(5*time.Second, 100, clock.now)
	h := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte(fmt.Sprint(i))) }

	c.put(h(1), "org-1")
	c.put(h(2), "") // a refused key
	steps := []struct {
		advance time.Duration
		key     int
		org     string
		known   bool
	}{
		{0, 1, "org-1", true},
		{0, 2, "", true},
		{0, 3, "", false},
		{4999 * time.Millisecond, 1, "org-1", true},
		{time.Millisecond, 1, "", false},
		{0, 2, "", false},
	}
	for i, s := range steps {
		clock.t = clock.t.Add(s.advance)
		org, known := c.get(h(s.key))
		if org != s.org || known != s.known {
			t.Errorf("step %d: get(%d) = %q, %v; want %q, %v", i, s.key, org, known, s.org, s.known)
		}
	}

	// Full of live entries (a flood of made-up keys): the size stays bounded
	// and the newest entry is kept.
	for i := range 1000 {
		c.put(h(100+i), "")
		if n := c.len(); n > 100 {
			t.Fatalf("cache holds %d entries, more than its 100", n)
		}
		if _, known := c.get(h(100 + i)); !known {
			t.Fatalf("entry %d evicted as it was added", i)
		}
	}
	// Expired entries go before live ones.
	clock.t = clock.t.Add(time.Hour)
	c.put(h(5000), "org-5000")
	if n := c.len(); n != 1 {
		t.Errorf("after expiry the cache holds %d entries, want 1", n)
	}
}

func TestPanicIsA500(t *testing.T) {
	s := New(nil, Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.e.GET("/panic", func(echo.Context) error { panic("boom: SELECT secret FROM t") })
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/panic", nil))
	want := `{"statusCode":500,"message":"Internal Server Error","error":"Internal Server Error"}`
	if rec.Code != 500 || rec.Body.String() != want {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
}

func TestUnavailable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, true},
		{&pgconn.PgError{Code: "57P01"}, true},
		{&pgconn.PgError{Code: "08006"}, true},
		{&pgconn.PgError{Code: "53300"}, true},
		{&pgconn.PgError{Code: "42P01"}, false},
		{&pgconn.PgError{Code: "22P02"}, false},
		{errors.New("closed pool"), true},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		if got := unavailable(tt.err); got != tt.want {
			t.Errorf("unavailable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
