package schema

import (
	"embed"
	"fmt"
	"io/fs"
)

// JSONSchemas holds one JSON Schema (draft 2020-12) document per known type,
// jsonschema/<type>.json, describing the whole CloudEvents envelope and the
// type's data. Producers validate against them; jsonschema_test.go keeps them
// in step with the data types' struct tags.
//
//go:embed jsonschema/*.json
var JSONSchemas embed.FS

// JSONSchema returns the JSON Schema document of t.
func JSONSchema(t Type) ([]byte, error) {
	if !t.Known() {
		return nil, fmt.Errorf("json schema of %q: unknown type: %w", t, fs.ErrNotExist)
	}
	b, err := JSONSchemas.ReadFile("jsonschema/" + string(t) + ".json")
	if err != nil {
		return nil, fmt.Errorf("json schema of %q: %w", t, err)
	}
	return b, nil
}
