package schema_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/schematest"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

const (
	draft2020 = "https://json-schema.org/draft/2020-12/schema"
	// idPattern is the contract's rule for ids: no '.', '*', '>', white
	// space (Unicode White_Space) or control character (Cc).
	idPattern = "^[^.*>\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$"
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
	limit     string   // limit:"id", "code" or "text": the class of a string in the contract's limits
}

var (
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	variablesType  = reflect.TypeFor[map[string]json.RawMessage]()
	numberType     = reflect.TypeFor[schema.Number]()
	knownTags      = map[string]bool{"json": true, "enum": true, "minimum": true, "nullable": true, "limit": true}
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
		f.limit = sf.Tag.Get("limit")
		switch {
		case f.jsonType == "string" && f.limit != "id" && f.limit != "code" && f.limit != "text":
			t.Fatalf("%s.%s: a string needs limit:\"id\", \"code\" or \"text\", has %q", rt.Name(), sf.Name, f.limit)
		case f.jsonType != "string" && f.limit != "":
			t.Fatalf("%s.%s: limit:%q on a %s", rt.Name(), sf.Name, f.limit, f.jsonType)
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
			eq("source", without(props["source"], "description", "examples"), map[string]any{
				"type": "string", "minLength": json.Number("1"), "maxLength": num(schema.MaxStringBytes),
			})
			for _, a := range []string{"id", "orgid", "jobid", "callid"} {
				eq(a, without(props[a], "description"), map[string]any{"$ref": "#/$defs/id"})
			}
			defs, _ := d["$defs"].(map[string]any)
			eq("$defs", sorted(keys(defs)), []string{"id"})
			eq("$defs.id", without(defs["id"], "description"), map[string]any{
				"type": "string", "minLength": json.Number("1"), "maxLength": num(schema.MaxIDLen), "pattern": idPattern,
			})
			if _, ok := props["data"].(map[string]any); !ok {
				t.Fatalf("properties.data = %s, want a schema", js(props["data"]))
			}
		})
	}
}

// TestJSONSchemaData checks the data schema of every document against the
// struct tags of its Go type, both ways: every field is there with its JSON
// type, nullability, enum, minimum and limits, and nothing else is.
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
				switch f.limit {
				case "id":
					want = map[string]any{"$ref": "#/$defs/id"}
				case "code":
					want["minLength"], want["maxLength"] = json.Number("1"), num(schema.MaxCodeLen)
				case "text":
					want["maxLength"] = num(schema.MaxStringBytes)
				}
				if f.variables {
					want["maxProperties"] = num(schema.MaxVariables)
					want["propertyNames"] = map[string]any{"maxLength": num(schema.MaxStringBytes)}
					want["additionalProperties"] = map[string]any{
						"type": []any{"string", "number", "boolean", "null"}, "maxLength": num(schema.MaxStringBytes),
					}
				}
				if got := without(p, "description"); !reflect.DeepEqual(got, want) {
					t.Errorf("data.%s = %s, want %s", f.name, js(got), js(want))
				}
			}
		})
	}
}

// The keywords the documents may use: those the drift tests above read, and
// annotations. A new keyword gets a rule in those tests first.
var keywords = map[string]bool{
	"$schema": true, "$id": true, "$comment": true, "title": true, "description": true, "examples": true, "$defs": true,
	"$ref": true, "type": true, "const": true, "enum": true, "required": true, "properties": true, "additionalProperties": true,
	"minimum": true, "minLength": true, "maxLength": true, "pattern": true, "format": true,
	"maxProperties": true, "propertyNames": true,
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
				case "additionalProperties", "propertyNames":
					walk(path+"."+k, v)
				case "format":
					if v != "date-time" {
						t.Errorf("%s: %s: format %v", tt.Type, path, v)
					}
				}
			}
		}
		walk("#", d)
		compiled(t, tt.Type) // valid by the 2020-12 meta-schema, every $ref resolved
	}
}

// TestJSONSchemaIDPattern checks the pattern of $defs.id against the
// decoder's rule for ids, character by character over the Basic
// Multilingual Plane and a few beyond: the pattern lists the characters
// itself rather than use \s, which RE2 and ECMA-262 read differently.
func TestJSONSchemaIDPattern(t *testing.T) {
	defs, _ := doc(t, schema.CallCreated)["$defs"].(map[string]any)
	id, _ := defs["id"].(map[string]any)
	p, _ := id["pattern"].(string)
	re, err := regexp.Compile(p)
	if err != nil {
		t.Fatalf("pattern %q: %v", p, err)
	}
	for r := rune(0); r <= 0x10ffff; r++ {
		if r > 0xffff && r&0xfff != 0 || r >= 0xd800 && r <= 0xdfff {
			continue
		}
		s := "a" + string(r) + "b"
		if got, want := re.MatchString(s), schema.ValidID(s); got != want {
			t.Errorf("U+%04X: pattern says %v, ValidID says %v", r, got, want)
		}
	}
}

// TestJSONSchemaExamples checks that the contract's worked examples are
// valid by the documents and by DecodeMessage.
func TestJSONSchemaExamples(t *testing.T) {
	n := 0
	for _, ex := range schematest.Examples(t) {
		for i, l := range ex.Lines {
			e, err := schema.DecodeMessage(l.Subject, l.Header, l.Body)
			if err != nil {
				t.Errorf("%s line %d: DecodeMessage: %v", ex.Name, i+1, err)
				continue
			}
			body := l.Body
			if schema.BinaryMode(l.Header) {
				body = toStructured(t, l.Header, l.Body)
			}
			if err := validate(t, e.Type, body); err != nil {
				t.Errorf("%s line %d (%s): %v", ex.Name, i+1, e.Type, err)
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
	for _, c := range decodeCases(t) {
		if !c.typ.Known() || c.reason == schema.ReasonInvalidJSON || c.reason == schema.ReasonSubjectMismatch {
			continue // not a question for the document
		}
		checked++
		err := validate(t, c.typ, c.body)
		valid, want := err == nil, c.reason == ""
		switch {
		case c.schemaDiffers == "" && valid != want:
			t.Errorf("%s: the %s document says valid=%v (%v), the contract says %v", c.name, c.typ, valid, err, want)
		case c.schemaDiffers != "" && valid == want:
			t.Errorf("%s: the %s document now agrees with the contract (valid=%v): drop %q", c.name, c.typ, valid, c.schemaDiffers)
		}
	}
	if checked < 100 {
		t.Fatalf("only %d cases checked", checked)
	}
}

var (
	compileOnce sync.Once
	schemas     map[schema.Type]*jsonschema.Schema
	compileErr  error
)

// compiled is the document of typ compiled by santhosh-tekuri/jsonschema,
// which asserts format (date-time) as the contract does.
func compiled(t testing.TB, typ schema.Type) *jsonschema.Schema {
	t.Helper()
	compileOnce.Do(func() {
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		ids := map[schema.Type]string{}
		for _, tt := range schema.Types {
			b, err := schema.JSONSchema(tt.Type)
			if err != nil {
				compileErr = err
				return
			}
			d, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			if err != nil {
				compileErr = fmt.Errorf("%s.json: %w", tt.Type, err)
				return
			}
			id, _ := d.(map[string]any)["$id"].(string)
			if err := c.AddResource(id, d); err != nil {
				compileErr = fmt.Errorf("%s.json: %w", tt.Type, err)
				return
			}
			ids[tt.Type] = id
		}
		schemas = map[schema.Type]*jsonschema.Schema{}
		for typ, id := range ids {
			s, err := c.Compile(id)
			if err != nil {
				compileErr = fmt.Errorf("%s.json: %w", typ, err)
				return
			}
			schemas[typ] = s
		}
	})
	if compileErr != nil {
		t.Fatal(compileErr)
	}
	return schemas[typ]
}

// validate checks body against the document of typ: nil when it is valid.
func validate(t testing.TB, typ schema.Type, body []byte) error {
	t.Helper()
	s := compiled(t, typ)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return s.Validate(v)
}

func num(n int) json.Number { return json.Number(strconv.Itoa(n)) }

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
