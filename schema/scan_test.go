package schema

import "testing"

// TestAttrIndex holds attrIndex, a switch, to envelopeAttrs.
func TestAttrIndex(t *testing.T) {
	for i, name := range envelopeAttrs {
		if got := attrIndex(name); got != i {
			t.Errorf("attrIndex(%q) = %d, want %d", name, got, i)
		}
	}
	for _, name := range []string{"data", "", "ID", "specversio", "datacontenttypes"} {
		if got := attrIndex(name); got != -1 {
			t.Errorf("attrIndex(%q) = %d, want -1", name, got)
		}
	}
}
