package query_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/labstack/echo/v4"

	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema/schematest"
)

// TestOpenAPI: the document served is valid OpenAPI 3.1; every route the
// server registers is in it, and every operation in it is served with the
// query parameters it documents; the answers of every endpoint here, errors included,
// and the report of every contract example validate against it.
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	pool := pgtest.Pool(t)
	rollupFixture(t, pool)
	f := newFixture(t, pool)
	h := newServer(t, pool, query.Config{}).Handler()

	res := get(t, h, "GET", "/call-report/openapi.json")
	raw := readBody(t, res)
	if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("openapi.json: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid: %v", err)
	}

	// Every route of the server, with its methods.
	param := regexp.MustCompile(`:([A-Za-z]+)`)
	for _, r := range h.(*echo.Echo).Routes() {
		if r.Method != http.MethodGet {
			continue // HEAD is GET's
		}
		path := param.ReplaceAllString(r.Path, "{$1}")
		item := doc.Paths.Value(path)
		if item == nil || item.Get == nil {
			t.Errorf("GET %s is served but not in the document", path)
		}
	}

	// Every documented operation is served, and takes exactly the query
	// parameters documented: each is known to it, and the endpoints that
	// refuse unknown parameters refuse an undocumented one.
	strict := regexp.MustCompile(`^/call-report/(calls|jobs|export/calls|export/jobs|stats/calls|flows/\{flowId\}/funnel)$`)
	values := map[string]string{"from": "2025-12-16T00:00:00Z", "to": "2025-12-17T00:00:00Z", "limit": "10",
		"groupBy": "day", "tz": "UTC", "minPosition": "0", "direction": "inbound", "status": "completed"}
	for path, item := range doc.Paths.Map() {
		if item.Get == nil {
			continue
		}
		target := regexp.MustCompile(`\{[A-Za-z]+\}`).ReplaceAllString(path, "nope")
		ask := func(query string) (int, string) {
			t.Helper()
			res := get(t, h, "GET", target+query, bearer(f.keyA)...)
			return res.StatusCode, readBody(t, res)
		}
		if status, body := ask(""); status == http.StatusNotFound && strings.Contains(body, "Cannot GET") {
			t.Errorf("GET %s is in the document but not served", path)
		}
		for _, p := range item.Get.Parameters {
			if p.Value == nil || p.Value.In != "query" {
				continue
			}
			v := values[p.Value.Name]
			if v == "" {
				v = "x1"
			}
			if status, body := ask("?" + p.Value.Name + "=" + v); status == http.StatusBadRequest && strings.Contains(body, "unknown parameter") {
				t.Errorf("GET %s: the documented parameter %s is refused: %s", path, p.Value.Name, body)
			}
		}
		if strict.MatchString(path) {
			if status, body := ask("?undocumented=1"); status != http.StatusBadRequest || !strings.Contains(body, "undocumented") {
				t.Errorf("GET %s?undocumented=1: %d %s, want 400 naming it", path, status, body)
			}
		}
	}

	// An export's body is validated as the text it is documented as; its
	// lines are the reports validated below.
	openapi3filter.RegisterBodyDecoder("application/x-ndjson", openapi3filter.PlainBodyDecoder)
	defer openapi3filter.UnregisterBodyDecoder("application/x-ndjson")
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	check := func(target string, status int, header http.Header, body []byte) {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, target, nil)
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Fatalf("%s: no operation: %v", target, err)
		}
		in := &openapi3filter.ResponseValidationInput{
			RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
			Status:                 status,
			Header:                 header,
			Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
		}
		in.SetBodyBytes(body)
		if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
			t.Errorf("%s %d %s: %v", target, status, body, err)
		}
	}

	// What the server answers.
	for _, c := range []struct {
		target string
		key    string
		status int
	}{
		{"/call-report/jobs/" + jobA, f.keyA, 200},
		{"/call-report/calls/" + callA, f.keyA, 200},
		{"/call-report/jobs/" + jobA, f.keyB, 404},
		{"/call-report/calls/nope", f.keyA, 404},
		{"/call-report/calls/" + callA, "", 401},
		{"/call-report/calls/" + callA + "?minPosition=x", f.keyA, 400},
		{"/call-report/stats/calls", f.keyA, 200},
		{"/call-report/stats/calls?groupBy=day,hour,outcome,program,flow,direction&tz=Asia/Kathmandu", f.keyA, 200},
		{"/call-report/stats/calls?groupBy=week", f.keyA, 400},
		{"/call-report/flows/f1/funnel", f.keyA, 200},
		{"/call-report/flows/f1/funnel?from=2025-12-16T18:01:00Z", f.keyA, 400},
		{"/call-report/calls?limit=1", f.keyA, 200},
		{"/call-report/jobs", f.keyA, 200},
		{"/call-report/calls?limit=0", f.keyA, 400},
		{"/call-report/jobs?cursor=forged", f.keyA, 400},
		{"/call-report/export/calls", f.keyA, 200},
		{"/call-report/export/jobs?after=nope", f.keyA, 400},
		{"/call-report/calls/nope/updates", f.keyA, 404},
		{"/call-report/openapi.json", "", 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
	} {
		var headers []string
		if c.key != "" {
			headers = bearer(c.key)
		}
		res := get(t, h, "GET", c.target, headers...)
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != c.status {
			t.Fatalf("%s: %d %s, want %d", c.target, res.StatusCode, body, c.status)
		}
		check(c.target, res.StatusCode, res.Header, body)
	}

	// The contract's examples (the API reference's own among them).
	for _, ex := range schematest.Examples(t) {
		check("/call-report/"+ex.Kind+"/"+ex.ID, 200, http.Header{"Content-Type": {"application/json; charset=UTF-8"}}, ex.Expected)
	}

	// The check fails on a report that is not one.
	req := httptest.NewRequest(http.MethodGet, "/call-report/jobs/"+jobA, nil)
	route, params, _ := router.FindRoute(req)
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 200, Header: http.Header{"Content-Type": {"application/json"}},
	}
	in.SetBodyBytes([]byte(`{"jobId":"j","status":"lost","attempts":[]}`))
	if openapi3filter.ValidateResponse(context.Background(), in) == nil {
		t.Fatal("a job of status lost validates")
	}
}
