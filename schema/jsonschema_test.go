package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
)

const (
	draft2020 = "https://json-schema.org/draft/2020-12/schema"
	idPattern = `^[^.*>\s]+$`
)

// dataField is what the struct tags of one data field say.
type dataField struct {
	name      string
	optional  bool     // ,omitempty: may be left out
	nullable  bool     // nullable:"true": required, but may be null
	jsonType  string   // string, integer, number or object
	variables bool     // an object whose values are strings, numbers, booleans or null
	enum      []string // enum:"a,b"
	minimum   *int64   // minimum:"N"
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	variablesType  = reflect.TypeFor[map[string]json.RawMessage]()
	numberType     = reflect.TypeFor[schema.Number]()
	knownTags      = map[string]bool{"json": true, "enum": true, "minimum": true, "nullable": true}
)

// dataFields reads the fields of a data type. A Go type or tag it does not
// know fails the test, so that a new kind of field gets a rule here first.
func dataFields(t testing.TB, v any) []dataField {
	t.Helper()
	rt := reflect.TypeOf(v)
	if rt.Kind() != reflect.Struct {
		t.Fatalf("data type %s is not a struct", rt)
	}
	var out []dataField
	for i := 0; i < rt.NumField(); i++ {
		sf := rt.Field(i)
		for _, k := range tagKeys(t, sf.Tag) {
			if !knownTags[k] {
				t.Fatalf("%s.%s: unknown tag %q", rt.Name(), sf.Name, k)
			}
		}
		name, opts, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" || !sf.IsExported() {
			t.Fatalf("%s.%s: no JSON name", rt.Name(), sf.Name)
		}
		f := dataField{name: name, optional: opts == "omitempty", nullable: sf.Tag.Get("nullable") == "true"}
		if opts != "" && opts != "omitempty" {
			t.Fatalf("%s.%s: unknown json option %q", rt.Name(), sf.Name, opts)
		}
		if nv, ok := sf.Tag.Lookup("nullable"); ok && nv != "true" {
			t.Fatalf("%s.%s: nullable:%q, want \"true\"", rt.Name(), sf.Name, nv)
		}
		ft := sf.Type
		if (f.optional || f.nullable) != (ft.Kind() == reflect.Pointer) {
			t.Fatalf("%s.%s: a field is a pointer exactly when it is optional or nullable", rt.Name(), sf.Name)
		}
		if f.optional && f.nullable {
			t.Fatalf("%s.%s: optional and nullable", rt.Name(), sf.Name)
		}
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == rawMessageType:
			f.jsonType = "object"
		case ft == variablesType:
			f.jsonType, f.variables = "object", true
		case ft == numberType:
			f.jsonType = "number"
		case ft.Kind() == reflect.String:
			f.jsonType = "string"
		case ft.Kind() == reflect.Int64:
			f.jsonType = "integer"
		default:
			t.Fatalf("%s.%s: no JSON Schema rule for Go type %s", rt.Name(), sf.Name, sf.Type)
		}
		if e, ok := sf.Tag.Lookup("enum"); ok {
			if f.jsonType != "string" {
				t.Fatalf("%s.%s: enum on a %s", rt.Name(), sf.Name, f.jsonType)
			}
			f.enum = strings.Split(e, ",")
		}
		if m, ok := sf.Tag.Lookup("minimum"); ok {
			n, err := strconv.ParseInt(m, 10, 64)
			if err != nil || f.jsonType != "integer" {
				t.Fatalf("%s.%s: minimum:%q on a %s", rt.Name(), sf.Name, m, f.jsonType)
			}
			f.minimum = &n
		}
		out = append(out, f)
	}
	return out
}

// tagKeys lists the keys of a conventional struct tag.
func tagKeys(t testing.TB, tag reflect.StructTag) []string {
	var keys []string
	s := strings.TrimSpace(string(tag))
	for s != "" {
		i := strings.Index(s, ":\"")
		if i <= 0 {
			t.Fatalf("malformed struct tag %q", tag)
		}
		keys = append(keys, s[:i])
		rest := s[i+1:]
		v, err := strconv.QuotedPrefix(rest)
		if err != nil {
			t.Fatalf("malformed struct tag %q", tag)
		}
		s = strings.TrimSpace(rest[len(v):])
	}
	return keys
}

// doc is one JSON Schema document, decoded with numbers as json.Number.
func doc(t testing.TB, typ schema.Type) map[string]any {
	t.Helper()
	b, err := schema.JSONSchema(typ)
	if err != nil {
		t.Fatalf("JSONSchema(%s): %v", typ, err)
	}
	v, err := decodeJSON(b)
	if err != nil {
		t.Fatalf("%s.json: %v", typ, err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s.json is not an object", typ)
	}
	return m
}

func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

func TestJSONSchemaForEveryType(t *testing.T) {
	files, err := fs.Glob(schema.JSONSchemas, "jsonschema/*")
	if err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadDir("jsonschema")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range disk {
		if p := "jsonschema/" + d.Name(); !slices.Contains(files, p) {
			files = append(files, p) // on disk but not embedded: also a document without a type
		}
	}
	left := map[string]bool{}
	for _, f := range files {
		left[f] = true
	}
	for _, tt := range schema.Types {
		name := "jsonschema/" + string(tt.Type) + ".json"
		if !left[name] {
			t.Errorf("type %s has no document %s", tt.Type, name)
			continue
		}
		delete(left, name)
		got, err := schema.JSONSchema(tt.Type)
		if err != nil {
			t.Errorf("JSONSchema(%s): %v", tt.Type, err)
		}
		want, _ := fs.ReadFile(schema.JSONSchemas, name)
		if !bytes.Equal(got, want) {
			t.Errorf("JSONSchema(%s) is not %s", tt.Type, name)
		}
		if !json.Valid(got) {
			t.Errorf("%s is not valid JSON", name)
		}
	}
	for f := range left {
		t.Errorf("document %s has no type in schema.Types", f)
	}
	for _, typ := range []schema.Type{"call.transferred", "", "call", "../event.go", "jsonschema/call.created", "call.created.json"} {
		if b, err := schema.JSONSchema(typ); err == nil || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("JSONSchema(%q) = %d bytes, %v; want an fs.ErrNotExist error", typ, len(b), err)
		}
	}
}

// TestJSONSchemaEnvelope checks the CloudEvents attributes of every document.
func TestJSONSchemaEnvelope(t *testing.T) {
	for _, tt := range schema.Types {
		t.Run(string(tt.Type), func(t *testing.T) {
			d := doc(t, tt.Type)
			eq := func(what string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %s, want %s", what, js(got), js(want))
				}
			}
			eq("$schema", d["$schema"], draft2020)
			eq("title", d["title"], string(tt.Type))
			eq("type", d["type"], "object")
			if id, _ := d["$id"].(string); !strings.HasSuffix(id, "/"+string(tt.Type)+".json") {
				t.Errorf("$id = %q, want it to end in /%s.json", id, tt.Type)
			}
			required := []string{"specversion", "id", "source", "type", "time", "orgid", "data"}
			if tt.Type.Family() == schema.FamilyJob {
				required = append(required, "jobid")
			} else {
				required = append(required, "callid")
			}
			eq("required", sortedStrings(t, d["required"]), sorted(required))
			props, _ := d["properties"].(map[string]any)
			eq("properties", sorted(keys(props)), sorted([]string{"specversion", "id", "source", "type", "time", "orgid", "jobid", "callid", "datacontenttype", "data"}))
			eq("specversion", props["specversion"], map[string]any{"const": schema.SpecVersion})
			eq("type", props["type"], map[string]any{"const": string(tt.Type)})
			eq("datacontenttype", props["datacontenttype"], map[string]any{"const": "application/json"})
			eq("time", without(props["time"], "description"), map[string]any{"type": "string", "format": "date-time"})
			eq("source", without(props["source"], "description", "examples"), map[string]any{"type": "string", "minLength": json.Number("1")})
			for _, a := range []string{"id", "orgid", "jobid", "callid"} {
				eq(a, without(props[a], "description"), map[string]any{"$ref": "#/$defs/id"})
			}
			defs, _ := d["$defs"].(map[string]any)
			eq("$defs", sorted(keys(defs)), []string{"id"})
			eq("$defs.id", without(defs["id"], "description"), map[string]any{
				"type": "string", "minLength": json.Number("1"), "maxLength": json.Number(strconv.Itoa(schema.MaxIDLen)), "pattern": idPattern,
			})
			if _, ok := props["data"].(map[string]any); !ok {
				t.Fatalf("properties.data = %s, want a schema", js(props["data"]))
			}
		})
	}
}

// TestJSONSchemaData checks the data schema of every document against the
// struct tags of its Go type, both ways: every field is there with its JSON
// type, nullability, enum and minimum, and nothing else is.
func TestJSONSchemaData(t *testing.T) {
	for _, tt := range schema.Types {
		t.Run(string(tt.Type), func(t *testing.T) {
			props, _ := doc(t, tt.Type)["properties"].(map[string]any)
			data, _ := props["data"].(map[string]any)
			if data["type"] != "object" {
				t.Errorf("data.type = %s, want \"object\"", js(data["type"]))
			}
			for k := range data {
				if k != "type" && k != "required" && k != "properties" && k != "description" {
					t.Errorf("data has keyword %q; the decoder ignores unknown fields, and the tags say nothing more", k)
				}
			}
			fields := dataFields(t, tt.Data)
			var required, names []string
			for _, f := range fields {
				names = append(names, f.name)
				if !f.optional {
					required = append(required, f.name)
				}
			}
			if r, ok := data["required"]; ok || len(required) > 0 {
				if got := sortedStrings(t, r); !reflect.DeepEqual(got, sorted(required)) {
					t.Errorf("data.required = %s, want %s", js(got), js(sorted(required)))
				}
			}
			fprops, ok := data["properties"].(map[string]any)
			if !ok {
				t.Fatalf("data.properties = %s, want an object", js(data["properties"]))
			}
			if got := sorted(keys(fprops)); !reflect.DeepEqual(got, sorted(names)) {
				t.Errorf("data.properties = %s, want %s", js(got), js(sorted(names)))
			}
			for _, f := range fields {
				p, ok := fprops[f.name].(map[string]any)
				if !ok {
					continue
				}
				want := map[string]any{"type": f.jsonType}
				if f.nullable {
					want["type"] = []any{f.jsonType, "null"}
				}
				if f.enum != nil {
					var e []any
					for _, v := range f.enum {
						e = append(e, v)
					}
					want["enum"] = e
				}
				if f.minimum != nil {
					want["minimum"] = json.Number(strconv.FormatInt(*f.minimum, 10))
				}
				if f.variables {
					want["additionalProperties"] = map[string]any{"type": []any{"string", "number", "boolean", "null"}}
				}
				if got := without(p, "description"); !reflect.DeepEqual(got, want) {
					t.Errorf("data.%s = %s, want %s", f.name, js(got), js(want))
				}
			}
		})
	}
}

// The keywords the documents may use: those the validator below knows, and
// annotations.
var keywords = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true, "examples": true, "$defs": true,
	"$ref": true, "type": true, "const": true, "enum": true, "required": true, "properties": true, "additionalProperties": true,
	"minimum": true, "minLength": true, "maxLength": true, "pattern": true, "format": true,
}

func TestJSONSchemaKeywords(t *testing.T) {
	for _, tt := range schema.Types {
		d := doc(t, tt.Type)
		var walk func(path string, s any)
		walk = func(path string, s any) {
			m, ok := s.(map[string]any)
			if !ok {
				t.Errorf("%s: %s is not a schema", tt.Type, path)
				return
			}
			for k, v := range m {
				if !keywords[k] {
					t.Errorf("%s: %s uses keyword %q", tt.Type, path, k)
				}
				switch k {
				case "properties", "$defs":
					for name, sub := range v.(map[string]any) {
						walk(path+"."+k+"."+name, sub)
					}
				case "additionalProperties":
					walk(path+"."+k, v)
				case "$ref":
					if _, err := resolve(d, v.(string)); err != nil {
						t.Errorf("%s: %s: %v", tt.Type, path, err)
					}
				case "format":
					if v != "date-time" {
						t.Errorf("%s: %s: format %v", tt.Type, path, v)
					}
				}
			}
		}
		walk("#", d)
	}
}

// TestJSONSchemaExamples checks that the contract's worked examples are
// valid by the documents and by Decode.
func TestJSONSchemaExamples(t *testing.T) {
	n := 0
	for _, ex := range schematest.Examples(t) {
		for i, l := range ex.Lines {
			e, err := schema.Decode(l.Subject, l.Body)
			if err != nil {
				t.Errorf("%s line %d: Decode: %v", ex.Name, i+1, err)
				continue
			}
			if errs := validate(t, e.Type, l.Body); len(errs) > 0 {
				t.Errorf("%s line %d (%s): %s", ex.Name, i+1, e.Type, strings.Join(errs, "; "))
			}
			n++
		}
	}
	if n == 0 {
		t.Fatal("no example events")
	}
}

// TestJSONSchemaAgreesWithDecode runs the documents over the cases of
// TestDecode: an event the contract accepts must be valid by its type's
// document and one it rejects for its envelope or data must not, except
// where the case says why JSON Schema cannot tell.
func TestJSONSchemaAgreesWithDecode(t *testing.T) {
	checked := 0
	for _, c := range decodeCases() {
		if !c.typ.Known() || c.reason == schema.ReasonInvalidJSON || c.reason == schema.ReasonSubjectMismatch {
			continue // not a question for the document
		}
		checked++
		errs := validate(t, c.typ, c.body)
		valid, want := len(errs) == 0, c.reason == ""
		switch {
		case c.schemaDiffers == "" && valid != want:
			t.Errorf("%s: the %s document says valid=%v %v, the contract says %v", c.name, c.typ, valid, errs, want)
		case c.schemaDiffers != "" && valid == want:
			t.Errorf("%s: the %s document now agrees with the contract (valid=%v): drop %q", c.name, c.typ, valid, c.schemaDiffers)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d cases checked", checked)
	}
}

// validate checks body against the document of typ and returns what is wrong.
func validate(t testing.TB, typ schema.Type, body []byte) []string {
	t.Helper()
	d := doc(t, typ)
	v, err := decodeJSON(body)
	if err != nil {
		return []string{err.Error()}
	}
	return validateValue(d, d, v, "#")
}

// validateValue is a validator for the subset of JSON Schema 2020-12 that
// TestJSONSchemaKeywords allows.
func validateValue(root, s map[string]any, v any, path string) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, path+": "+fmt.Sprintf(format, args...)) }
	if ref, ok := s["$ref"].(string); ok {
		sub, err := resolve(root, ref)
		if err != nil {
			fail("%v", err)
			return errs
		}
		errs = append(errs, validateValue(root, sub, v, path)...)
	}
	if c, ok := s["const"]; ok && !reflect.DeepEqual(c, v) {
		fail("is %s, want %s", js(v), js(c))
	}
	if e, ok := s["enum"].([]any); ok && !slices.ContainsFunc(e, func(x any) bool { return reflect.DeepEqual(x, v) }) {
		fail("%s is not one of %s", js(v), js(e))
	}
	if ty, ok := s["type"]; ok {
		types, _ := ty.([]any)
		if s, ok := ty.(string); ok {
			types = []any{s}
		}
		if !slices.ContainsFunc(types, func(x any) bool { return isType(v, x.(string)) }) {
			fail("%s is not of type %s", js(v), js(ty))
			return errs
		}
	}
	switch v := v.(type) {
	case string:
		n := json.Number(strconv.Itoa(utf8.RuneCountInString(v)))
		if m, ok := s["minLength"].(json.Number); ok && cmp(n, m) < 0 {
			fail("shorter than %s characters", m)
		}
		if m, ok := s["maxLength"].(json.Number); ok && cmp(n, m) > 0 {
			fail("longer than %s characters", m)
		}
		if p, ok := s["pattern"].(string); ok && !ecmaRegexp(p).MatchString(v) {
			fail("%q does not match %s", v, p)
		}
		if s["format"] == "date-time" && !isDateTime(v) {
			fail("%q is not an RFC 3339 date-time", v)
		}
	case json.Number:
		if m, ok := s["minimum"].(json.Number); ok && cmp(v, m) < 0 {
			fail("%s is less than %s", v, m)
		}
	case map[string]any:
		if r, ok := s["required"].([]any); ok {
			for _, k := range r {
				if _, ok := v[k.(string)]; !ok {
					fail("%s is required", k)
				}
			}
		}
		props, _ := s["properties"].(map[string]any)
		for k, x := range v {
			if p, ok := props[k].(map[string]any); ok {
				errs = append(errs, validateValue(root, p, x, path+"."+k)...)
			} else if ap, ok := s["additionalProperties"].(map[string]any); ok {
				errs = append(errs, validateValue(root, ap, x, path+"."+k)...)
			}
		}
	}
	return errs
}

func resolve(root map[string]any, ref string) (map[string]any, error) {
	name, ok := strings.CutPrefix(ref, "#/$defs/")
	defs, _ := root["$defs"].(map[string]any)
	sub, found := defs[name].(map[string]any)
	if !ok || !found {
		return nil, fmt.Errorf("unresolvable $ref %q", ref)
	}
	return sub, nil
}

func isType(v any, typ string) bool {
	switch v := v.(type) {
	case nil:
		return typ == "null"
	case bool:
		return typ == "boolean"
	case string:
		return typ == "string"
	case []any:
		return typ == "array"
	case map[string]any:
		return typ == "object"
	case json.Number:
		if typ == "number" {
			return true
		}
		r, ok := new(big.Rat).SetString(string(v))
		return typ == "integer" && ok && r.IsInt()
	}
	return false
}

func cmp(a, b json.Number) int {
	x, okx := new(big.Rat).SetString(string(a))
	y, oky := new(big.Rat).SetString(string(b))
	if !okx || !oky {
		panic("not numbers: " + string(a) + ", " + string(b))
	}
	return x.Cmp(y)
}

// ecmaSpace is what \s matches in ECMA-262, the regular expressions of JSON
// Schema; in Go's RE2 it is ASCII only.
const ecmaSpace = `\t\n\x0B\f\r \x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}`

func ecmaRegexp(p string) *regexp.Regexp {
	if strings.Count(p, `\s`) != strings.Count(p, `[^.*>\s]`) {
		panic("ecmaRegexp translates \\s only inside [^.*>\\s]: " + p)
	}
	return regexp.MustCompile(strings.ReplaceAll(p, `\s`, ecmaSpace))
}

var dateTimeRE = regexp.MustCompile(`^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d+)?(?:[Zz]|[+-](\d{2}):(\d{2}))$`)

// isDateTime is RFC 3339's date-time, leap seconds left out.
func isDateTime(s string) bool {
	m := dateTimeRE.FindStringSubmatch(s)
	if m == nil {
		return false
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	y, mo, d := n(1), n(2), n(3)
	if mo < 1 || mo > 12 || d < 1 || time.Date(y, time.Month(mo), d, 0, 0, 0, 0, time.UTC).Day() != d {
		return false
	}
	if n(4) > 23 || n(5) > 59 || n(6) > 59 {
		return false
	}
	return m[8] == "" || (n(8) <= 23 && n(9) <= 59)
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	if s == nil {
		s = []string{}
	}
	return s
}

// sortedStrings reads a JSON array of distinct strings.
func sortedStrings(t testing.TB, v any) []string {
	t.Helper()
	a, ok := v.([]any)
	if !ok {
		t.Errorf("%s is not an array", js(v))
		return nil
	}
	var out []string
	for _, x := range a {
		s, ok := x.(string)
		if !ok || slices.Contains(out, s) {
			t.Errorf("%s is not an array of distinct strings", js(v))
		}
		out = append(out, s)
	}
	return sorted(out)
}

// without is the schema v without the annotation keywords given.
func without(v any, annotations ...string) map[string]any {
	m, _ := v.(map[string]any)
	out := map[string]any{}
	for k, x := range m {
		if !slices.Contains(annotations, k) {
			out[k] = x
		}
	}
	return out
}

func js(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Sprint(v)
	}
	return strings.TrimSuffix(b.String(), "\n")
}
