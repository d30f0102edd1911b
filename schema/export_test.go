package schema

// RefDecode is Decode as it was before the single-pass scanner
// (reference_test.go), for the differential tests of package schema_test.
func (l Limits) RefDecode(subject string, body []byte) (*Event, error) {
	return l.refDecode(subject, body)
}

// RefDecodeMessage is DecodeMessage as it was before the single-pass scanner.
func (l Limits) RefDecodeMessage(subject string, header map[string][]string, body []byte) (*Event, error) {
	return l.refDecodeMessage(subject, header, body)
}
