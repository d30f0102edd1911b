//go:build race

package faults

// raceEnabled: under the race detector the tests run at their -short
// sizes, the in-process projectors being several times slower; the full
// sizes run without it.
const raceEnabled = true
