// Package faults holds the fault tests of the projection: they run the
// projector (the real binary, or its code in process) while processes are
// killed, Postgres connections are terminated or cut, NATS restarts, two
// projectors share a consumer, the query process loses its database or a
// batch stalls past AckWait, and prove that the reports end up identical,
// table digest for table digest, to those of an undisturbed projection of
// the same stream, with nothing lost and nothing applied twice.
//
// The tests stand on internal/systest (the test's database and JetStream,
// the projector and the query process started through their Main) and add
// what is theirs: the real binaries killed, a proxy in front of Postgres, a
// publisher that outlives NATS restarts, the undisturbed baseline. The
// package has no code outside its tests. Under -short, and under the
// race detector, the streams are smaller (about 9k events instead of 50k
// for the SIGKILL test). docs/reliability.md keeps the figures.
package faults
