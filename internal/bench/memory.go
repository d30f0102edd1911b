package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// memoryResult is the memory phase: flow.variables events as large as the
// contract allows (1,000 names, ~1,000,000 bytes each), on a few calls
// that grow to the contract's 10,000 names; what matters is the
// projector's peak RSS while it folds and writes them.
type memoryResult struct {
	Calls      int     `json:"calls"`
	Events     int     `json:"events"`
	EventBytes int     `json:"mean_event_bytes"`
	Seconds    float64 `json:"seconds"` // from the first handed to JetStream to the last acknowledged
	// Rejected counts the events of this phase the projector dead-lettered:
	// none should be, they are within the contract's bounds.
	Rejected  uint64        `json:"rejected"`
	Projector *processStats `json:"projector,omitempty"`
}

// memory runs the phase with a projector child of its own (whose heap
// profile, with --profile-dir, shows what held the memory).
func (r *run) memory(ctx context.Context) (*memoryResult, error) {
	env := r.env
	r.vacuum(true)
	defer r.vacuum(false)
	proj, profiles, err := r.startProjector("memory")
	if err != nil {
		return nil, err
	}
	defer proj.stop(10 * time.Second)
	if err := r.warm(ctx, proj, "memory"); err != nil {
		return nil, err
	}
	before, err := env.deadLetters(ctx)
	if err != nil {
		return nil, err
	}
	res := &memoryResult{Calls: r.o.MemoryCalls, Events: r.o.MemoryEvents}
	msgs := newEventClock("memory").memoryEvents(r.o.MemoryEvents, r.o.MemoryCalls, rand.New(rand.NewPCG(r.o.Sim.Seed, 0x3e3)))
	total := 0
	for _, m := range msgs[len(msgs)-res.Events:] {
		total += len(m.Data)
	}
	res.EventBytes = total / res.Events
	fmt.Fprintf(r.stderr, "memory: %d flow.variables events of %d bytes on %d calls\n", res.Events, res.EventBytes, res.Calls)
	start := time.Now()
	seq, err := env.publish(ctx, msgs)
	if err != nil {
		return nil, err
	}
	done, err := env.acks.wait(ctx, env.consumer, seq, proj, 10*time.Minute)
	if err != nil {
		return nil, err
	}
	res.Seconds = done.Sub(start).Seconds()
	after, err := env.deadLetters(ctx)
	if err != nil {
		return nil, err
	}
	if res.Rejected = after - before; res.Rejected > 0 {
		fmt.Fprintf(r.stderr, "warning: the projector rejected %d events of the memory phase, which are within the contract's bounds\n", res.Rejected)
	}
	if res.Projector, err = r.stopProjector(proj, profiles); err != nil {
		return nil, err
	}
	return res, nil
}
