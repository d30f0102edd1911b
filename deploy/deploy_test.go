// Package deploy_test checks the files of deploy/ against the code: the
// Grafana dashboard, the Prometheus alert rules and the example Prometheus
// configuration parse, and every metric their expressions use is one the
// projector and the query API export, with the labels they give it.
package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations/pgtest"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/projector/natstest"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

const (
	dashboardFile  = "grafana/callreport-dashboard.json"
	alertsFile     = "prometheus/alerts.yml"
	prometheusFile = "prometheus/prometheus.yml"
	operationsFile = "../docs/operations.md"
)

// usage is one PromQL expression of a deploy file and where it is.
type usage struct {
	where string
	expr  string
}

// TestDashboard checks the dashboard's structure: a Prometheus data source
// variable that every panel uses, a layout inside the 24 columns, and a
// PromQL expression in every target.
func TestDashboard(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Errorf("%s: only %d expressions", dashboardFile, len(exprs))
	}
}

// TestAlertRules checks the rules' structure, that the alerts the
// operations guide promises exist, and that each has a runbook there.
func TestAlertRules(t *testing.T) {
	rules := alertRules(t)
	guide, err := os.ReadFile(operationsFile)
	if err != nil {
		t.Fatal(err)
	}
	headings := map[string]bool{}
	for _, l := range strings.Split(string(guide), "\n") {
		if h, ok := strings.CutPrefix(l, "### "); ok {
			headings[strings.TrimSpace(h)] = true
		}
	}
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.alert] {
			t.Errorf("alert %s defined twice", r.alert)
		}
		seen[r.alert] = true
		if !headings[r.alert] {
			t.Errorf("alert %s has no runbook section (### %s) in %s", r.alert, r.alert, operationsFile)
		}
		if want := "docs/operations.md#" + strings.ToLower(r.alert); !strings.HasSuffix(r.annotations["runbook_url"], want) {
			t.Errorf("alert %s: runbook_url %q, want one ending in %s", r.alert, r.annotations["runbook_url"], want)
		}
	}
	for _, name := range []string{
		"CallreportProjectorDown", "CallreportQueryDown",
		"CallreportProjectorLagHigh", "CallreportProjectorStalled", "CallreportProjectorRetrying",
		"CallreportDeadLettersGrowing", "CallreportDeadLettersDiscarded", "CallreportHTTPErrorRate", "CallreportHTTPLatencyHigh",
	} {
		if !seen[name] {
			t.Errorf("%s: no alert %s", alertsFile, name)
		}
	}
}

// TestPrometheusConfig checks that the example configuration loads the
// rules and scrapes every job the rules and the dashboard name.
func TestPrometheusConfig(t *testing.T) {
	jobs := scrapeJobs(t)
	uses := append(dashboardExprs(t), ruleExprs(alertRules(t))...)
	named := regexp.MustCompile(`\bjob\s*=\s*"([^"]*)"`)
	n := 0
	for _, u := range uses {
		for _, m := range named.FindAllStringSubmatch(u.expr, -1) {
			n++
			if !jobs[m[1]] {
				t.Errorf("%s: job %q is not scraped by %s", u.where, m[1], prometheusFile)
			}
		}
	}
	if n == 0 {
		t.Errorf("no expression names a job; the up checks are missing")
	}
}

// TestMetricsExist gathers the metrics of a projector that applied and
// rejected events and of a query server that answered requests, and checks
// every metric the dashboard and the alert rules use against them.
func TestMetricsExist(t *testing.T) {
	uses := append(dashboardExprs(t), ruleExprs(alertRules(t))...)
	families := exported(t)
	for _, u := range uses {
		for _, err := range checkExpr(u.expr, families) {
			t.Errorf("%s: %v\n\t%s", u.where, err, u.expr)
		}
	}

	// The check itself: a misspelled metric, label or grouping is caught.
	for _, bad := range []string{
		`rate(callreport_projector_event_total[5m])`,
		`sum by (type) (rate(callreport_projector_events_total{outcom="rejected"}[5m]))`,
		`sum by (typ) (rate(callreport_projector_events_total[5m]))`,
		`histogram_quantile(0.99, rate(callreport_http_request_duration_second_bucket[5m]))`,
		`callreport_projector_position_bucket`,
		`sum(rate(callreport_http_requests_total{code=~"5.."}[5m])`,
	} {
		if len(checkExpr(bad, families)) == 0 {
			t.Errorf("checkExpr accepts %s", bad)
		}
	}
}

// exported runs the projector and the query server on one registry, as the
// binaries do, until every metric has a series, and gathers it.
func exported(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))

	pool := pgtest.Pool(t)
	env := natstest.New(t)
	streams := env.Streams(t)
	p := projector.New(pool, streams, projector.Config{Consumer: env.Consumer, BatchSize: 50, Logger: discard, Metrics: projector.NewMetrics(reg)})
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("projector: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("projector did not stop")
		}
	})
	publish(t, streams)

	srv := query.New(ctx, pool, query.Config{Logger: discard, Registerer: reg, Gatherer: reg})
	h := srv.Handler()
	for _, target := range []string{"/healthz", "/readyz", "/call-report/jobs/" + "550e8400-e29b-41d4-a716-446655440000", "/nope"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, target, nil))
	}
	rec := httptest.NewRecorder()
	srv.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "callreport_http_requests_total{") {
		t.Errorf("query GET /metrics (metrics listener): %d, without the HTTP metrics:\n%.2000s", rec.Code, rec.Body.String())
	}

	var families map[string]*dto.MetricFamily
	deadline := time.Now().Add(time.Minute)
	for {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		families = make(map[string]*dto.MetricFamily, len(mfs))
		for _, f := range mfs {
			families[f.GetName()] = f
		}
		events := families["callreport_projector_events_total"]
		if hasSeries(events, "outcome", "applied") && hasSeries(events, "outcome", "rejected") &&
			families["callreport_projector_info"] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the projector's event counters did not appear within a minute: %v", events)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The label values the expressions filter on.
	requests := families["callreport_http_requests_total"]
	for _, want := range [][2]string{{"/healthz", "200"}, {"/readyz", "200"}, {"/call-report/jobs/:jobId", "401"}, {"unmatched", "404"}} {
		if !hasSeries(requests, "route", want[0], "code", want[1]) {
			t.Errorf("callreport_http_requests_total has no series route=%q code=%q: %v", want[0], want[1], requests)
		}
	}
	return families
}

// publish sends the first contract example and a message the decoder
// rejects.
func publish(t *testing.T, s *stream.Streams) {
	t.Helper()
	js := s.JetStream()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lines := schematest.Examples(t)[0].Lines
	lines = append(lines, schematest.Line{Subject: lines[0].Subject, Body: []byte(`{"not":"an event"}`)})
	for _, l := range lines {
		m := nats.NewMsg(s.SubjectPrefix + strings.TrimPrefix(l.Subject, schema.SubjectPrefix))
		m.Data = l.Body
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatalf("publish %s: %v", l.Subject, err)
		}
	}
}

// hasSeries reports whether f has a series with all the label pairs given.
func hasSeries(f *dto.MetricFamily, pairs ...string) bool {
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(pairs); i += 2 {
			ok = ok && labels[pairs[i]] == pairs[i+1]
		}
		if ok {
			return true
		}
	}
	return false
}

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance"}

var (
	stringLit  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	metricName = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:$])(callreport_[a-zA-Z0-9_:]*|up)(?:[^a-zA-Z0-9_:(]|$)`)
	selector   = regexp.MustCompile(`(callreport_[a-zA-Z0-9_:]*|\bup)\s*\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	grouping   = regexp.MustCompile(`\b(?:by|without|on|ignoring)\s*\(([^)]*)\)`)
)

// checkExpr returns what is wrong with the metrics of a PromQL expression:
// unbalanced brackets, a metric that families lacks (a histogram's _bucket,
// _sum and _count count as its own), or a label that none of the metrics
// of the expression has. `up` is Prometheus's own, with the target labels.
func checkExpr(expr string, families map[string]*dto.MetricFamily) []error {
	var errs []error
	bare := stringLit.ReplaceAllString(expr, `""`)
	if err := balanced(bare); err != nil {
		errs = append(errs, err)
	}
	labels := map[string]bool{}
	for _, l := range targetLabels {
		labels[l] = true
	}
	known := map[string]map[string]bool{} // metric used → its labels
	for _, m := range metricName.FindAllStringSubmatch(bare, -1) {
		name := m[1]
		if known[name] != nil {
			continue
		}
		ls, err := labelsOf(name, families)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		known[name] = ls
		for l := range ls {
			labels[l] = true
		}
	}
	if len(known) == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("uses no callreport metric"))
	}
	for _, m := range selector.FindAllStringSubmatch(expr, -1) {
		ls := known[strings.TrimSpace(m[1])]
		if ls == nil {
			continue // reported above
		}
		for _, lm := range matcher.FindAllStringSubmatch(m[2], -1) {
			if !ls[lm[1]] && !slices.Contains(targetLabels, lm[1]) {
				errs = append(errs, fmt.Errorf("%s has no label %q", m[1], lm[1]))
			}
		}
	}
	for _, g := range grouping.FindAllStringSubmatch(bare, -1) {
		for _, l := range strings.Split(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !labels[l] {
				errs = append(errs, fmt.Errorf("grouping by %q, a label none of its metrics has", l))
			}
		}
	}
	return errs
}

// labelsOf is the label names of a metric an expression uses.
func labelsOf(name string, families map[string]*dto.MetricFamily) (map[string]bool, error) {
	if name == "up" {
		return map[string]bool{}, nil
	}
	f, extra := families[name], ""
	if f == nil {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base, ok := strings.CutSuffix(name, suffix)
			if g := families[base]; ok && g != nil && (g.GetType() == dto.MetricType_HISTOGRAM || g.GetType() == dto.MetricType_SUMMARY && suffix != "_bucket") {
				f = g
				if suffix == "_bucket" {
					extra = "le"
				}
			}
		}
	}
	if f == nil {
		return nil, fmt.Errorf("no metric %s is exported", name)
	}
	if f.GetType() == dto.MetricType_HISTOGRAM && name == f.GetName() {
		return nil, fmt.Errorf("%s is a histogram: use %s_bucket, _sum or _count", name, name)
	}
	ls := map[string]bool{}
	if extra != "" {
		ls[extra] = true
	}
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			ls[l.GetName()] = true
		}
	}
	return ls, nil
}

// balanced checks the brackets of an expression whose strings are blanked.
func balanced(expr string) error {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	for _, r := range expr {
		switch r {
		case '(', '[', '{':
			stack = append(stack, r)
		case ')', ']', '}':
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) > 0 {
		return fmt.Errorf("unclosed %q", stack[len(stack)-1])
	}
	return nil
}

// dashboardExprs parses the dashboard, checks its structure and returns
// the PromQL of its targets and variables.
func dashboardExprs(t *testing.T) []usage {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Templating    struct {
			List []struct {
				Name       string          `json:"name"`
				Type       string          `json:"type"`
				Query      json.RawMessage `json:"query"`
				Datasource *datasource     `json:"datasource"`
			} `json:"list"`
		} `json:"templating"`
		Panels []panel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion == 0 {
		t.Errorf("%s: title %q, uid %q, schemaVersion %d: want all set", dashboardFile, d.Title, d.UID, d.SchemaVersion)
	}
	var uses []usage
	hasDS := false
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			var q string
			hasDS = hasDS || v.Name == "datasource" && json.Unmarshal(v.Query, &q) == nil && q == "prometheus"
		case "query":
			var q struct {
				Query string `json:"query"`
			}
			if json.Unmarshal(v.Query, &q) != nil {
				_ = json.Unmarshal(v.Query, &q.Query)
			}
			if q.Query == "" {
				t.Errorf("%s: variable %s has no query", dashboardFile, v.Name)
			}
			if !v.Datasource.isVariable() {
				t.Errorf("%s: variable %s does not use ${datasource}", dashboardFile, v.Name)
			}
			uses = append(uses, usage{where: "dashboard variable " + v.Name, expr: q.Query})
		}
	}
	if !hasDS {
		t.Errorf(`%s: no variable "datasource" of type datasource with query "prometheus"`, dashboardFile)
	}

	ids := map[int]bool{}
	var walk func([]panel)
	walk = func(panels []panel) {
		for _, p := range panels {
			where := fmt.Sprintf("dashboard panel %d %q", p.ID, p.Title)
			if p.ID == 0 || ids[p.ID] {
				t.Errorf("%s: id missing or used twice", where)
			}
			ids[p.ID] = true
			if p.Type == "" || p.Title == "" {
				t.Errorf("%s: type %q and title %q: want both", where, p.Type, p.Title)
			}
			g := p.GridPos
			if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 || g.Y < 0 {
				t.Errorf("%s: gridPos %+v outside the 24 columns", where, g)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if !p.Datasource.isVariable() {
				t.Errorf("%s: datasource %+v, want the ${datasource} variable", where, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: no targets", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.Expr == "" || tg.RefID == "" || refs[tg.RefID] {
					t.Errorf("%s: target %q: want an expr and a refId of its own", where, tg.RefID)
				}
				refs[tg.RefID] = true
				if tg.Datasource != nil && !tg.Datasource.isVariable() {
					t.Errorf("%s: target %s: datasource %+v", where, tg.RefID, tg.Datasource)
				}
				uses = append(uses, usage{where: where + " target " + tg.RefID, expr: tg.Expr})
			}
		}
	}
	walk(d.Panels)
	return uses
}

type panel struct {
	ID         int         `json:"id"`
	Type       string      `json:"type"`
	Title      string      `json:"title"`
	Datasource *datasource `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string      `json:"refId"`
		Expr       string      `json:"expr"`
		Datasource *datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // of a collapsed row
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func (d *datasource) isVariable() bool {
	return d != nil && d.Type == "prometheus" && d.UID == "${datasource}"
}

// rule is one alerting rule.
type rule struct {
	alert, expr         string
	labels, annotations map[string]string
}

func ruleExprs(rules []rule) []usage {
	uses := make([]usage, len(rules))
	for i, r := range rules {
		uses[i] = usage{where: alertsFile + " " + r.alert, expr: r.expr}
	}
	return uses
}

// alertRules parses the alert rules and checks the shape of each.
func alertRules(t *testing.T) []rule {
	t.Helper()
	doc := parseYAMLFile(t, alertsFile)
	groups := list(t, alertsFile+" groups", mapping(t, alertsFile, doc, "groups")["groups"])
	if len(groups) == 0 {
		t.Fatalf("%s: no groups", alertsFile)
	}
	var rules []rule
	for gi, g := range groups {
		gm := mapping(t, fmt.Sprintf("%s group %d", alertsFile, gi+1), g, "name", "rules")
		name := str(t, alertsFile+" group name", gm["name"])
		for ri, r := range list(t, alertsFile+" "+name+" rules", gm["rules"]) {
			where := fmt.Sprintf("%s %s rule %d", alertsFile, name, ri+1)
			rm := mapping(t, where, r, "alert", "expr", "for", "keep_firing_for", "labels", "annotations")
			ru := rule{alert: str(t, where+" alert", rm["alert"]), expr: str(t, where+" expr", rm["expr"])}
			where = alertsFile + " " + ru.alert
			if !regexp.MustCompile(`^Callreport[A-Za-z0-9]+$`).MatchString(ru.alert) || strings.TrimSpace(ru.expr) == "" {
				t.Errorf("%s: alert %q, expr %q: want a Callreport… name and an expression", where, ru.alert, ru.expr)
			}
			for _, k := range []string{"for", "keep_firing_for"} {
				if v, ok := rm[k]; ok {
					if _, err := model.ParseDuration(str(t, where+" "+k, v)); err != nil {
						t.Errorf("%s: %s: %v", where, k, err)
					}
				}
			}
			ru.labels = stringMap(t, where+" labels", rm["labels"])
			ru.annotations = stringMap(t, where+" annotations", rm["annotations"])
			if s := ru.labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("%s: severity %q, want critical, warning or info", where, s)
			}
			for _, k := range []string{"summary", "description", "runbook_url"} {
				if ru.annotations[k] == "" {
					t.Errorf("%s: no %s annotation", where, k)
				}
			}
			rules = append(rules, ru)
		}
	}
	return rules
}

// scrapeJobs parses the example configuration, checks that it loads the
// alert rules, and returns its job names.
func scrapeJobs(t *testing.T) map[string]bool {
	t.Helper()
	doc := mapping(t, prometheusFile, parseYAMLFile(t, prometheusFile), "global", "rule_files", "alerting", "scrape_configs")
	var files []string
	for _, f := range list(t, prometheusFile+" rule_files", doc["rule_files"]) {
		files = append(files, str(t, prometheusFile+" rule_files", f))
	}
	if !slices.Contains(files, filepath.Base(alertsFile)) {
		t.Errorf("%s: rule_files %q do not load %s", prometheusFile, files, filepath.Base(alertsFile))
	}
	jobs := map[string]bool{}
	for i, sc := range list(t, prometheusFile+" scrape_configs", doc["scrape_configs"]) {
		where := fmt.Sprintf("%s scrape_configs %d", prometheusFile, i+1)
		m := mapping(t, where, sc, "job_name", "metrics_path", "scrape_interval", "static_configs")
		jobs[str(t, where+" job_name", m["job_name"])] = true
		for _, st := range list(t, where+" static_configs", m["static_configs"]) {
			for _, tg := range list(t, where+" targets", mapping(t, where, st, "targets", "labels")["targets"]) {
				if _, port, ok := strings.Cut(str(t, where+" target", tg), ":"); !ok || port == "" {
					t.Errorf("%s: target %v: want host:port", where, tg)
				}
			}
		}
	}
	return jobs
}

func parseYAMLFile(t *testing.T, name string) any {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseYAML(string(b))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// mapping asserts that v is a mapping whose keys are among allowed (the
// first of which is required) and returns it.
func mapping(t *testing.T, where string, v any, allowed ...string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %T, want a mapping", where, v)
	}
	for k := range m {
		if !slices.Contains(allowed, k) {
			t.Errorf("%s: unknown key %q (want one of %q)", where, k, allowed)
		}
	}
	if _, ok := m[allowed[0]]; !ok {
		t.Fatalf("%s: no %s", where, allowed[0])
	}
	return m
}

func list(t *testing.T, where string, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("%s: %T, want a sequence", where, v)
	}
	return l
}

func str(t *testing.T, where string, v any) string {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s: %T, want a string", where, v)
	}
	return s
}

func stringMap(t *testing.T, where string, v any) map[string]string {
	t.Helper()
	out := map[string]string{}
	m, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s: %T, want a mapping of strings", where, v)
		return out
	}
	for k, x := range m {
		out[k] = str(t, where+" "+k, x)
	}
	return out
}

// parseYAML decodes a YAML document into mappings, sequences and
// strings: the checks compare what the files say, not what YAML would
// type their scalars as. Duplicate keys are an error, as they are to
// Prometheus and Compose.
func parseYAML(src string) (any, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		return nil, err
	}
	if len(doc.Content) == 0 {
		return nil, errors.New("empty document")
	}
	return plain(doc.Content[0])
}

func plain(n *yaml.Node) (any, error) {
	switch n.Kind {
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		// Merge keys (<<: *anchor) first: the mapping's own keys win.
		merged := map[string]bool{}
		for i := 0; i < len(n.Content); i += 2 {
			if n.Content[i].Tag != "!!merge" {
				continue
			}
			v, err := plain(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			from, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("line %d: merge of a %T", n.Content[i].Line, v)
			}
			for k, x := range from {
				m[k], merged[k] = x, true
			}
		}
		for i := 0; i < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if n.Content[i].Tag == "!!merge" {
				continue
			}
			if merged[k] {
				delete(merged, k)
				delete(m, k)
			}
			if _, dup := m[k]; dup {
				return nil, fmt.Errorf("line %d: key %q twice", n.Content[i].Line, k)
			}
			v, err := plain(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			m[k] = v
		}
		return m, nil
	case yaml.SequenceNode:
		l := make([]any, len(n.Content))
		for i, c := range n.Content {
			v, err := plain(c)
			if err != nil {
				return nil, err
			}
			l[i] = v
		}
		return l, nil
	case yaml.AliasNode:
		return plain(n.Alias)
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil, nil
		}
		return n.Value, nil
	}
	return nil, fmt.Errorf("line %d: unexpected YAML node", n.Line)
}
