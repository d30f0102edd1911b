package query

import (
	"context"
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

	"github.com/callreport/callreport/migrations/pgtest"
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

// TestFailLimiter: more than 20 failures within a minute and the client
// waits until the oldest of them is a minute old; other clients are not
// concerned; the memory stays bounded.
func TestFailLimiter(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	l := newFailLimiter(20, time.Minute, clock.now)
	for i := range 20 {
		if _, blocked := l.blocked("a"); blocked {
			t.Fatalf("blocked after %d failures", i)
		}
		l.failed("a")
		clock.t = clock.t.Add(time.Second)
	}
	// 20 failures at 1000..1019 s, now 1020 s: refused until 1060 s.
	wait, blocked := l.blocked("a")
	if !blocked || wait != 40*time.Second {
		t.Fatalf("after 20 failures: blocked %v for %s, want 40s", blocked, wait)
	}
	if _, blocked := l.blocked("b"); blocked {
		t.Fatal("another client is blocked")
	}
	clock.t = clock.t.Add(39 * time.Second)
	if wait, blocked := l.blocked("a"); !blocked || wait != time.Second {
		t.Fatalf("a second before: blocked %v for %s", blocked, wait)
	}
	clock.t = clock.t.Add(time.Second)
	if _, blocked := l.blocked("a"); blocked {
		t.Fatal("still blocked once the oldest failure is a minute old")
	}
	l.failed("a") // the 20th within the minute again
	if wait, blocked := l.blocked("a"); !blocked || wait != time.Second {
		t.Fatalf("one more failure: blocked %v for %s, want 1s (the next oldest)", blocked, wait)
	}
	clock.t = clock.t.Add(2 * time.Minute)
	if _, blocked := l.blocked("a"); blocked || len(l.clients) != 0 {
		t.Fatalf("after two quiet minutes: blocked %v, %d clients remembered", blocked, len(l.clients))
	}

	for i := range maxTrackedClients + 1000 {
		l.failed(fmt.Sprint("c", i))
		clock.t = clock.t.Add(time.Microsecond)
	}
	if n := len(l.clients); n > maxTrackedClients {
		t.Fatalf("%d clients remembered, more than %d", n, maxTrackedClients)
	}
}

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"::ffff:192.0.2.7":     "192.0.2.7",
		"not an address":       "not an address",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPanicIsA500(t *testing.T) {
	s := New(t.Context(), pgtest.Pool(t), Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.e.GET("/panic", func(echo.Context) error { panic("boom: SELECT secret FROM t") })
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/panic", nil))
	want := `{"statusCode":500,"message":"Internal Server Error","error":"Internal Server Error"}`
	if rec.Code != 500 || rec.Body.String() != want {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Error("a 500 without X-Content-Type-Options: nosniff")
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

// TestDocCache: an entry is current while nothing that could change it has
// been heard of since its mark was read: a notification naming it (not one
// naming another report of another stripe), one naming all, the
// connection lost, a new position generation; and none is current while
// notifications are not heard. An entry read under an earlier epoch is not
// kept.
func TestDocCache(t *testing.T) {
	d := newDocCache()
	d.heard(true)
	call := docKey{kind: 'c', org: "o", id: "call-1"}
	// A call in another stripe than call-1, and the job of the same id.
	other := docKey{kind: 'c', org: "o"}
	for i := 0; other.id == "" || d.stripe('c', other.id) == d.stripe('c', call.id); i++ {
		other.id = fmt.Sprintf("call-%d", i+2)
	}
	job := docKey{kind: 'j', org: "o", id: "call-1"}
	const gen = 7
	current := func(k docKey, gen uint64) bool {
		_, _, ok := d.get(k, d.mark(k, gen))
		return ok
	}
	put := func(k docKey) {
		d.put(k, cachedDoc{etag: "e", doc: []byte("{}"), mark: d.mark(k, gen)})
	}
	put(call)
	put(other)
	if !current(call, gen) || !current(other, gen) {
		t.Fatal("not current once put")
	}
	if current(call, gen+1) {
		t.Error("current under another position generation")
	}
	if current(job, gen) {
		t.Error("a job is current that was never put")
	}

	d.notified(`{"calls":{"call-1":9}}`)
	if current(call, gen) {
		t.Error("current after a notification naming it")
	}
	if !current(other, gen) {
		t.Error("a call of another stripe is not current after a notification naming call-1")
	}
	put(call)
	d.notified(`{"jobs":{"call-1":9}}`)
	if !current(call, gen) && d.stripe('c', call.id) != d.stripe('j', call.id) {
		t.Error("a call is not current after a notification naming a job of the same id")
	}

	for _, event := range []struct {
		what string
		do   func()
	}{
		{"a notification naming all", func() { d.notified(`{"all":true}`) }},
		{"a notification not understood", func() { d.notified(`{"calls":[`) }},
		{"the connection lost", func() { d.heard(false) }},
		{"a new connection", func() { d.heard(true) }},
	} {
		put(call)
		stale := d.mark(call, gen)
		event.do()
		if current(call, gen) || current(other, gen) {
			t.Errorf("current after %s", event.what)
		}
		d.put(call, cachedDoc{etag: "e", doc: []byte("{}"), mark: stale})
		if _, ok, _ := d.get(call, d.mark(call, gen)); ok {
			t.Errorf("kept an entry read before %s", event.what)
		}
	}
	d.heard(false)
	put(call)
	if current(call, gen) {
		t.Error("current while notifications are not heard")
	}
}

// TestFreshnessGens: a notification read moves the generation of answers
// computed from many reports, not the one reports kept in memory are read
// under (the notification makes those it names stale itself); a position
// moving, a hot standby's read and a lost connection move both.
func TestFreshnessGens(t *testing.T) {
	f := newFreshness(nil, slog.New(slog.DiscardHandler), newDocCache())
	gens := func() gens {
		_, _, g, _, _ := f.get()
		return g
	}
	now := time.Now()
	f.set(5, 0, now, true, false)
	for _, step := range []struct {
		what              string
		do                func()
		reports, position bool
	}{
		{"a read with nothing new", func() { f.set(5, 0, now, false, false) }, false, false},
		{"a notification read", func() { f.set(5, 0, now, true, false) }, true, false},
		{"the position moving", func() { f.set(6, 0, now, false, false) }, true, true},
		{"a hot standby's read", func() { f.set(6, 0, now, false, true) }, true, true},
		{"the connection lost", f.lost, true, true},
	} {
		before := gens()
		step.do()
		after := gens()
		if moved := after.reports != before.reports; moved != step.reports {
			t.Errorf("%s: reports generation moved %v, want %v", step.what, moved, step.reports)
		}
		if moved := after.position != before.position; moved != step.position {
			t.Errorf("%s: position generation moved %v, want %v", step.what, moved, step.position)
		}
	}
}
