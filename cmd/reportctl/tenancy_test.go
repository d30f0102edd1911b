package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// wire sends one request as raw bytes on a new connection to the service's
// real listener, so that the target reaches the server exactly as written
// (no client normalizes it), and returns the response with its body.
func (s *service) wire(method, target string, headers ...string) (*http.Response, []byte) {
	s.T.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(s.Base, "http://"), "/call-report")
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		s.T.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	var req bytes.Buffer
	fmt.Fprintf(&req, "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n", method, target, addr)
	for _, h := range headers {
		req.WriteString(h + "\r\n")
	}
	req.WriteString("\r\n")
	// Write while reading: a server that refuses an oversized request
	// answers before it has read it all.
	go func() { _, _ = conn.Write(req.Bytes()) }()
	res, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: method})
	if err != nil {
		s.T.Fatalf("%s %.80s: read response: %v", method, target, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		s.T.Fatalf("%s %.80s: read body: %v", method, target, err)
	}
	return res, body
}

func bearerHeader(key string) string { return "Authorization: Bearer " + key }

// leaks are what a body must never hold: words of SQL and database errors,
// Go errors, panics and stack traces. None of them occurs in the ids sent.
var leaks = []string{"SQLSTATE", "pgx", "pgconn", "postgres", "ERROR:", "select ", "SELECT ", " FROM ", "WHERE ",
	"relation", "syntax error", "goroutine", "panic", "runtime.", ".go:", "invalid byte sequence", "encoding \"UTF8\""}

// checkErrorBody requires the JSON error body of status: {"statusCode",
// "message", "error"} and nothing that leaks the server's internals.
func checkErrorBody(t *testing.T, what string, res *http.Response, body []byte, status int) {
	t.Helper()
	if res.StatusCode != status {
		t.Errorf("%s: status %d, want %d; body %.200s", what, res.StatusCode, status, body)
		return
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q", what, ct)
	}
	var e struct {
		StatusCode int    `json:"statusCode"`
		Message    string `json:"message"`
		Error      string `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.StatusCode != status || e.Message == "" || e.Error != http.StatusText(status) {
		t.Errorf("%s: body %.200s is not the JSON error of %d (%v)", what, body, status, err)
	}
	for _, l := range leaks {
		if bytes.Contains(body, []byte(l)) {
			t.Errorf("%s: body leaks %q: %.300s", what, l, body)
		}
	}
}

// TestTenancyHTTP: a key of organization B, on every endpoint, with every
// method and conditional header, gets for A's job and call exactly the
// answer of a job or call that does not exist.
func TestTenancyHTTP(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(30, 11))
	var orgA, orgB, jobA, callA, jobB, callB string
	err := s.Pool.QueryRow(ctx, `SELECT org_id, job_id, call_id FROM call_attempts WHERE job_id IS NOT NULL ORDER BY call_id LIMIT 1`).Scan(&orgA, &jobA, &callA)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Pool.QueryRow(ctx, `SELECT org_id, job_id, call_id FROM call_attempts WHERE job_id IS NOT NULL AND org_id <> $1 ORDER BY call_id LIMIT 1`, orgA).Scan(&orgB, &jobB, &callB)
	if err != nil {
		t.Fatal(err)
	}
	keyA, keyB := s.Key(orgA), s.Key(orgB)

	for _, r := range []struct{ kind, idA, idB, missing string }{
		{"jobs", jobA, jobB, "ec8edce0-0000-4000-8000-000000000000"},
		{"calls", callA, callB, "0c9e5b1e-0000-4000-8000-000000000000"},
	} {
		t.Run(r.kind, func(t *testing.T) {
			// Each key reads its own organization's report, so the 404s below
			// are not a refused key.
			s.Get("/"+r.kind+"/"+r.idB, keyB, http.StatusOK)
			s.Get("/"+r.kind+"/"+r.idA, keyA, http.StatusOK)
			own, _ := s.wire("GET", "/call-report/"+r.kind+"/"+r.idA, bearerHeader(keyA))
			etagA := own.Header.Get("ETag")
			if etagA == "" {
				t.Fatal("A's report has no ETag")
			}
			if res, _ := s.wire("GET", "/call-report/"+r.kind+"/"+r.idA, bearerHeader(keyA), "If-None-Match: "+etagA); res.StatusCode != http.StatusNotModified {
				t.Fatalf("A revalidating its own report: %d, want 304", res.StatusCode)
			}

			for _, v := range []struct {
				name, method string
				headers      []string
			}{
				{"GET", "GET", nil},
				{"GET with A's ETag", "GET", []string{"If-None-Match: " + etagA}},
				{"GET with If-None-Match *", "GET", []string{"If-None-Match: *"}},
				{"GET with gzip", "GET", []string{"Accept-Encoding: gzip"}},
				{"HEAD", "HEAD", nil},
				{"HEAD with A's ETag", "HEAD", []string{"If-None-Match: " + etagA}},
			} {
				t.Run(v.name, func(t *testing.T) {
					hdrs := append([]string{bearerHeader(keyB)}, v.headers...)
					other, otherBody := s.wire(v.method, "/call-report/"+r.kind+"/"+r.idA, hdrs...)
					missing, missingBody := s.wire(v.method, "/call-report/"+r.kind+"/"+r.missing, hdrs...)
					if other.StatusCode != http.StatusNotFound || !bytes.Equal(otherBody, missingBody) {
						t.Errorf("B on A's id: %d %s; on a missing id: %d %s", other.StatusCode, otherBody, missing.StatusCode, missingBody)
					}
					for name := range mergeKeys(other.Header, missing.Header) {
						// Of the moment, not of the report: the position may
						// move between the two requests.
						if name == "Date" || name == "X-Request-Id" || name == "X-Projection-Position" || name == "X-Projection-Lag-Ms" {
							continue
						}
						if o, m := other.Header.Values(name), missing.Header.Values(name); strings.Join(o, ",") != strings.Join(m, ",") {
							t.Errorf("header %s: %q for A's id, %q for a missing one", name, o, m)
						}
					}
					if v.method == "GET" {
						checkErrorBody(t, "B on A's id", other, otherBody, http.StatusNotFound)
					} else if len(otherBody) != 0 {
						t.Errorf("HEAD with a body: %q", otherBody)
					}
				})
			}
		})
	}
}

func mergeKeys(a, b http.Header) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

// TestHostileIDs sends ids no producer makes through the real listener: each
// gets 404 (or 400) with the JSON error body, never a 500, and no body
// shows SQL, a database error or a stack trace. Headers larger than the
// server allows are refused with 431 before any handler runs.
func TestHostileIDs(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(10, 12))
	var org string
	if err := s.Pool.QueryRow(ctx, `SELECT org_id FROM call_attempts LIMIT 1`).Scan(&org); err != nil {
		t.Fatal(err)
	}
	key := s.Key(org)

	// Each is written into the request target as it stands: escaped where
	// a client escapes, raw where some clients send raw bytes.
	ids := []struct{ name, target string }{
		{"path traversal", "../etc/passwd"},
		{"encoded traversal", "%2e%2e%2f%2e%2e%2fetc%2fpasswd"},
		{"encoded traversal, no slash", "%2e%2e%2f"},
		{"double-encoded traversal", "%252e%252e%252f"},
		{"encoded slash", "a%2Fb"},
		{"backslash traversal", "..%5c..%5cwindows"},
		{"NUL", "%00"},
		{"NUL inside", "abc%00def"},
		{"SQL", url.PathEscape("' OR 1=1 --")},
		{"SQL, unescaped quote", "'%20OR%20'1'='1"},
		{"SQL statement", url.PathEscape("1;DROP TABLE call_attempts;--")},
		{"SQL without spaces", "x'||pg_sleep(5)||'"},
		{"script", url.PathEscape("<script>alert(1)</script>")},
		{"script, no >", url.PathEscape("<script")},
		{"template", url.PathEscape("{{7*7}}${7*7}")},
		{"unicode, escaped", url.PathEscape("ünïcødé-ÿ-💥")},
		{"unicode, raw bytes", "ünïcødé-💥"},
		{"right-to-left override", url.PathEscape("abc\u202Edef")},
		{"byte order mark", url.PathEscape("\uFEFFabc")},
		{"ideographic space", url.PathEscape("a\u3000b")},
		{"next line", url.PathEscape("a\u0085b")},
		{"invalid UTF-8, escaped", "%ff%fe"},
		{"invalid UTF-8, raw bytes", "\xff\xfe"},
		{"overlong UTF-8 dot", "%c0%ae%c0%ae"},
		{"lone surrogate in UTF-8", "%ed%a0%80"},
		{"128 characters", strings.Repeat("a", 128)},
		{"129 characters", strings.Repeat("a", 129)},
		{"128 multibyte characters", url.PathEscape(strings.Repeat("é", 128))},
		{"10 KB", strings.Repeat("x", 10<<10)},
		{"dot", "a.b"},
		{"wildcards", "%2A%3E"},
		{"null", "null"},
		{"empty", ""},
		{"query string", "abc?id=1%27"},
		{"fragment-looking", "abc%23x"},
	}
	notFound := map[string]int{}
	for _, kind := range []string{"jobs", "calls"} {
		for _, id := range ids {
			target := "/call-report/" + kind + "/" + id.target
			t.Run(kind+"/"+id.name, func(t *testing.T) {
				res, body := s.wire("GET", target, bearerHeader(key))
				if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusBadRequest {
					t.Fatalf("GET %.100s: %d %.300s, want 404 or 400", target, res.StatusCode, body)
				}
				notFound[fmt.Sprint(res.StatusCode)]++
				checkErrorBody(t, "GET "+target, res, body, res.StatusCode)
				if head, hb := s.wire("HEAD", target, bearerHeader(key)); head.StatusCode != res.StatusCode || len(hb) != 0 {
					t.Errorf("HEAD %.100s: %d with %d bytes, GET gave %d", target, head.StatusCode, len(hb), res.StatusCode)
				}
				// Without a key, or with a key of no organization, nothing
				// but 401 is said about it.
				for _, hdr := range []string{"X-None: 1", bearerHeader("crk_" + strings.Repeat("0", 40))} {
					res, body := s.wire("GET", target, hdr)
					if res.StatusCode == http.StatusUnauthorized {
						checkErrorBody(t, "GET without a valid key "+target, res, body, http.StatusUnauthorized)
					} else if res.StatusCode != http.StatusNotFound {
						t.Errorf("GET %.100s without a valid key: %d %.200s", target, res.StatusCode, body)
					}
				}
			})
		}
	}
	t.Logf("hostile ids: %v", notFound)

	// A request target that is not a valid URL (a bad percent-escape) never
	// reaches the API: net/http refuses the request itself, 400 in plain text.
	for _, target := range []string{"/call-report/jobs/%zz", "/call-report/calls/%u0000", "/call-report/jobs/a%"} {
		res, body := s.wire("GET", target, bearerHeader(key))
		if res.StatusCode != http.StatusBadRequest || string(body) != "400 Bad Request" {
			t.Errorf("GET %s: %d %q, want net/http's 400 Bad Request", target, res.StatusCode, body)
		}
	}

	t.Run("oversized headers", func(t *testing.T) {
		target := "/call-report/jobs/" + url.PathEscape("whatever")
		for _, tc := range []struct {
			name    string
			headers []string
		}{
			{"one 64 KiB header", []string{bearerHeader(key), "X-Big: " + strings.Repeat("x", 64<<10)}},
			{"one 1 MiB header", []string{bearerHeader(key), "X-Big: " + strings.Repeat("x", 1<<20)}},
			{"2,000 small headers", func() []string {
				h := []string{bearerHeader(key)}
				for i := range 2000 {
					h = append(h, fmt.Sprintf("X-H%d: %d", i, i))
				}
				return h
			}()},
			{"a 64 KiB key", []string{"Authorization: Bearer " + strings.Repeat("k", 64<<10)}},
			{"a 100 KiB request target", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				tgt := target
				if tc.headers == nil {
					tgt = "/call-report/jobs/" + strings.Repeat("x", 100<<10)
					tc.headers = []string{bearerHeader(key)}
				}
				res, body := s.wire("GET", tgt, tc.headers...)
				if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
					t.Fatalf("status %d %.200s, want 431", res.StatusCode, body)
				}
				for _, l := range leaks {
					if bytes.Contains(body, []byte(l)) {
						t.Errorf("body leaks %q: %.300s", l, body)
					}
				}
			})
		}
		// Under the limit, a long key is simply not a key.
		res, body := s.wire("GET", target, "Authorization: Bearer "+strings.Repeat("k", 8<<10))
		checkErrorBody(t, "an 8 KiB key", res, body, http.StatusUnauthorized)
		// And the server still serves.
		s.Get("/jobs/"+url.PathEscape("whatever"), key, http.StatusNotFound)
	})
}
