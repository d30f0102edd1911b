package bench

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"os"

	"github.com/callreport/callreport/internal/pace"
	"github.com/callreport/callreport/schema/simulate"
)

// The orders the generated stream is published in.
const (
	// OrderTime is how producers deliver: roughly in event time, each
	// event up to a few seconds late, some delivered twice, some again a
	// little later (Options.Sim.Redeliver).
	OrderTime = "time"
	// OrderShuffled is the adversarial order: the whole stream in a random
	// permutation (seeded by Options.Sim.Seed), so that every batch
	// touches nearly every call.
	OrderShuffled = "shuffled"
)

// openSource is the generated stream in the given order, with its length
// when known (0 otherwise) and what releases it.
func openSource(order string, opts simulate.Options, dir string) (src pace.Source, total int, closeFn func() error, err error) {
	switch order {
	case OrderTime, "":
		return simulate.New(opts), 0, func() error { return nil }, nil
	case OrderShuffled:
		s, err := shuffle(simulate.New(opts), opts.Seed, dir)
		if err != nil {
			return nil, 0, nil, err
		}
		return s, len(s.offs), s.close, nil
	}
	return nil, 0, nil, fmt.Errorf("order %q: want %s or %s", order, OrderTime, OrderShuffled)
}

// shuffled is a stream read back in a seeded random order. Its messages
// wait in a file, not in memory: 300k calls make about 2 GB of events.
type shuffled struct {
	f    *os.File
	offs []int64 // where each message starts, in publishing order
	next int
	err  error
}

// A message in the file: the lengths of its subject, id and data (uint32
// each), a redelivery flag, then the three.
const frameHeader = 13

// shuffle writes all of src to a file in dir and returns it to be read in
// a permutation drawn from seed.
func shuffle(src pace.Source, seed uint64, dir string) (*shuffled, error) {
	f, err := os.CreateTemp(dir, "shuffled-*.stream")
	if err != nil {
		return nil, err
	}
	s := &shuffled{f: f}
	w := bufio.NewWriterSize(f, 1<<20)
	var off int64
	var hdr [frameHeader]byte
	for m, ok := src.Next(); ok; m, ok = src.Next() {
		s.offs = append(s.offs, off)
		binary.LittleEndian.PutUint32(hdr[0:], uint32(len(m.Subject)))
		binary.LittleEndian.PutUint32(hdr[4:], uint32(len(m.ID)))
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(m.Data)))
		hdr[12] = 0
		if m.Redelivery {
			hdr[12] = 1
		}
		_, _ = w.Write(hdr[:])
		_, _ = w.WriteString(m.Subject)
		_, _ = w.WriteString(m.ID)
		_, _ = w.Write(m.Data)
		off += int64(frameHeader + len(m.Subject) + len(m.ID) + len(m.Data))
	}
	if err := w.Flush(); err != nil {
		_ = s.close()
		return nil, fmt.Errorf("write the stream to shuffle: %w", err)
	}
	r := rand.New(rand.NewPCG(seed, 0x5b0ff1e))
	r.Shuffle(len(s.offs), func(i, j int) { s.offs[i], s.offs[j] = s.offs[j], s.offs[i] })
	return s, nil
}

// Next reads the next message of the permutation. Each message gets bytes
// of its own: the publisher keeps them until JetStream acknowledges.
func (s *shuffled) Next() (simulate.Message, bool) {
	if s.err != nil || s.next >= len(s.offs) {
		return simulate.Message{}, false
	}
	off := s.offs[s.next]
	s.next++
	var hdr [frameHeader]byte
	if _, err := s.f.ReadAt(hdr[:], off); err != nil {
		s.err = err
		return simulate.Message{}, false
	}
	ls := int(binary.LittleEndian.Uint32(hdr[0:]))
	li := int(binary.LittleEndian.Uint32(hdr[4:]))
	ld := int(binary.LittleEndian.Uint32(hdr[8:]))
	b := make([]byte, ls+li+ld)
	if _, err := s.f.ReadAt(b, off+frameHeader); err != nil && err != io.EOF {
		s.err = err
		return simulate.Message{}, false
	}
	return simulate.Message{Subject: string(b[:ls]), ID: string(b[ls : ls+li]), Data: b[ls+li:], Redelivery: hdr[12] == 1}, true
}

// Err is why Next stopped early, if it did.
func (s *shuffled) Err() error { return s.err }

func (s *shuffled) close() error {
	err := s.f.Close()
	if rerr := os.Remove(s.f.Name()); err == nil {
		err = rerr
	}
	return err
}
