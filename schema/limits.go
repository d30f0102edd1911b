package schema

// The bounds of contract version 1.1 ("Limits (version 1.1)" in
// contract/EVENTS.md). One event must never be able to stop or slow the
// projection for everybody, so the contract bounds what an event and a
// call may hold; an event past a bound is rejected with ReasonLimitExceeded
// and the field at fault named.
const (
	// MaxEventBytes bounds the message body: "event body | 1,000,000 bytes
	// (NATS's default 1 MiB payload counts headers too)". In binary mode
	// the body is the data alone, and each attribute has its own bound.
	MaxEventBytes = 1_000_000
	// MaxIDLen bounds ids: "ids (id, jobid, callid) and id-like fields
	// (nodeId, programId, programExecutionId, contactId, flowId) | 1–128
	// characters, as ids above". The decoder holds orgid to it too: it is
	// an id of the envelope.
	MaxIDLen = 128
	// MaxCodeLen bounds the short names a report shows as they are:
	// "nodeType, outputPath, status, outcome, direction, unit, call.event
	// type | 1–64 characters".
	MaxCodeLen = 64
	// MaxStringBytes bounds every other string: "any other string (from,
	// to, flowName, nodeLabel, reason, a variable's name or string value) |
	// 4,096 bytes", counted on the decoded UTF-8 string. The decoder holds
	// the envelope's source and type to it too.
	MaxStringBytes = 4096
	// MaxVariables bounds one flow.variables: "flow.variables: names in one
	// event | 1,000".
	MaxVariables = 1000
	// MaxTimelineDataBytes bounds the data of call.event: "data of
	// call.event | 64 KiB as JSON", measured on the compact form the report
	// keeps.
	MaxTimelineDataBytes = 64 << 10
	// MaxDataDepth bounds nesting: "data of call.event | ..., nesting depth
	// 32". Levels count inside the event's data object: call.event's data
	// object is level 1. The decoder holds every field of data to it, known
	// or not.
	MaxDataDepth = 32

	// MaxCallEntries bounds one call, and the projector's fold enforces it:
	// "per call: execution-path entries, timeline entries, billing lines,
	// distinct variable names | 10,000 each: an event that would add a new
	// one (a new executionIndex, timeline event, billing nodeId, variable
	// name) past the 10,000th is rejected limit_exceeded; events on
	// existing ones still apply".
	MaxCallEntries = 10_000
	// MaxReportBytes bounds one call's report, and the projector's fold
	// enforces it: "per call: its report as JSON | 16 MiB: an event that
	// would grow it past is rejected limit_exceeded".
	MaxReportBytes = 16 << 20
)

// Bounds on numbers that keep them storable in Postgres numeric (and so in
// jsonb), and cheap for the fold to add up exactly. They are older than the
// contract's limits and give ReasonInvalidData.
const (
	maxNumberLen  = 64   // characters of a decimal number (cost, costPerUnit)
	maxExponent   = 100  // |exponent| of such a number
	maxDataNumLen = 1000 // characters of a number in variables or timeline data
	maxDataExp    = 1000 // |exponent| of such a number
)

// Limits are the bounds a decoder holds one event to. A zero field is no
// bound. DefaultLimits gives the contract's, which the package-level Decode
// and DecodeMessage use.
//
// The zero Limits, "unchecked", holds an event to none of them and skips
// Storable: it still checks the JSON, the attributes and data fields and
// their types, the rules for ids (not empty; no '.', '*', '>', white space
// or control character), the time and the subject. It exists for tests of
// the projector's unwritable path, which need events only Postgres refuses:
// an id of 10,000 characters, U+0000 in a string, a cost of 1e200000. The
// fold relies on the number bounds (it computes 10^exponent to add costs
// exactly), so pick such numbers with care, and never run a projector on
// real input without the default limits.
type Limits struct {
	EventBytes        int // the message body, in bytes
	IDChars           int // ids and id-like data fields, in characters
	CodeChars         int // nodeType, outputPath, status, outcome, direction, unit, call.event type, in characters
	StringBytes       int // every other string of the envelope and data, in bytes of UTF-8
	Variables         int // names in one flow.variables
	TimelineDataBytes int // the data of call.event, as compact JSON
	DataDepth         int // nesting of objects and arrays inside data (see MaxDataDepth)
	// Storable refuses what Postgres cannot store, whatever its size: U+0000
	// in any string (ReasonInvalidData, for the whole event), and numbers
	// past the bounds that keep them within numeric (ReasonInvalidData, for
	// the field): cost and costPerUnit of at most 64 characters with an
	// exponent within ±100, numbers in variables and timeline data of at
	// most 1,000 characters within ±1,000.
	Storable bool
}

// DefaultLimits returns the limits of the contract. It is a function, not a
// variable, so that no test can change them for the rest of the process.
func DefaultLimits() Limits { return contractLimits }

var contractLimits = Limits{
	EventBytes:        MaxEventBytes,
	IDChars:           MaxIDLen,
	CodeChars:         MaxCodeLen,
	StringBytes:       MaxStringBytes,
	Variables:         MaxVariables,
	TimelineDataBytes: MaxTimelineDataBytes,
	DataDepth:         MaxDataDepth,
	Storable:          true,
}
