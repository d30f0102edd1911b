package schema_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/callreport/callreport/schema"
)

// eventsDoc is the contract in the project's words.
const eventsDoc = "../docs/events.md"

// limitConstants are the limits of the contract, by the name docs/events.md
// gives them. TestLimitConstantsListed keeps the list complete.
var limitConstants = map[string]int{
	"MaxEventBytes":        schema.MaxEventBytes,
	"MaxIDLen":             schema.MaxIDLen,
	"MaxCodeLen":           schema.MaxCodeLen,
	"MaxStringBytes":       schema.MaxStringBytes,
	"MaxVariables":         schema.MaxVariables,
	"MaxTimelineDataBytes": schema.MaxTimelineDataBytes,
	"MaxDataDepth":         schema.MaxDataDepth,
	"MaxCallEntries":       schema.MaxCallEntries,
	"MaxReportBytes":       schema.MaxReportBytes,
}

var (
	tableRowRE = regexp.MustCompile("^\\| `([^`]+)` \\|")
	codeRE     = regexp.MustCompile("`([^`\n]+)`")
	typeLikeRE = regexp.MustCompile(`^(job|call|flow|billing)\.[a-z_]+$`)
	// reasonLikeRE matches what reads as a reason: a dead-letter subject's
	// token in the style of the known ones.
	reasonLikeRE = regexp.MustCompile(`^(invalid_[a-z_]+|[a-z_]+_(mismatch|exceeded|conflict)|unwritable)$`)
	numberRE     = regexp.MustCompile(`\d{1,3}(?:,\d{3})+|\d+`)
)

// section is the text of docs/events.md from the heading that starts with
// title to the next heading of the same level or higher.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	start := strings.Index(doc, "\n"+title)
	if start < 0 {
		t.Fatalf("%s has no section %q", eventsDoc, title)
	}
	level := strings.Index(title, " ")
	rest := doc[start+1+len(title):]
	for i := 0; i < len(rest); {
		j := strings.Index(rest[i:], "\n#")
		if j < 0 {
			break
		}
		i += j + 1
		if n := len(rest[i:]) - len(strings.TrimLeft(rest[i:], "#")); n <= level {
			return rest[:i]
		}
	}
	return rest
}

// TestEventsDoc keeps docs/events.md in step with the code: its type tables
// list exactly the types of schema.Types, its reasons table exactly
// schema.Reasons, a line naming each limit constant gives its value, and
// nothing in the page that reads as a type or a reason is unknown.
func TestEventsDoc(t *testing.T) {
	b, err := os.ReadFile(eventsDoc)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)

	var tableTypes []string
	for _, line := range strings.Split(section(t, doc, "## Types and how they fold"), "\n") {
		if m := tableRowRE.FindStringSubmatch(line); m != nil {
			tableTypes = append(tableTypes, m[1])
		}
	}
	var want []string
	for _, tt := range schema.Types {
		want = append(want, string(tt.Type))
	}
	if !slices.Equal(tableTypes, want) {
		t.Errorf("the type tables list %v, want schema.Types in order: %v", tableTypes, want)
	}

	var tableReasons []string
	for _, line := range strings.Split(section(t, doc, "## Bad events and dead letters"), "\n") {
		if m := tableRowRE.FindStringSubmatch(line); m != nil {
			tableReasons = append(tableReasons, m[1])
		}
	}
	want = nil
	for _, r := range schema.Reasons {
		want = append(want, string(r))
	}
	if !slices.Equal(tableReasons, want) {
		t.Errorf("the reasons table lists %v, want schema.Reasons in order: %v", tableReasons, want)
	}

	for _, m := range codeRE.FindAllStringSubmatch(doc, -1) {
		switch s := m[1]; {
		case typeLikeRE.MatchString(s) && !schema.Type(s).Known():
			t.Errorf("the page names %q, which is not a type of schema.Types", s)
		case reasonLikeRE.MatchString(s) && !slices.Contains(schema.Reasons, schema.Reason(s)):
			t.Errorf("the page names %q, which is not a reason of schema.Reasons", s)
		}
	}

	for name, value := range limitConstants {
		found := false
		for _, line := range strings.Split(doc, "\n") {
			if !strings.Contains(line, "`"+name+"`") {
				continue
			}
			for _, n := range numberRE.FindAllString(line, -1) {
				if v, err := strconv.Atoi(strings.ReplaceAll(n, ",", "")); err == nil && v == value {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("no line of the page names `%s` with its value %d", name, value)
		}
	}
}

// TestLimitConstantsListed: every exported constant Max… of the package is
// in limitConstants, so that a new limit reaches the page.
func TestLimitConstantsListed(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, spec := range g.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					if _, listed := limitConstants[n.Name]; n.IsExported() && strings.HasPrefix(n.Name, "Max") && !listed {
						t.Errorf("%s: constant %s is not in limitConstants (and so maybe not in %s)", f, n.Name, eventsDoc)
					}
				}
			}
		}
	}
}
