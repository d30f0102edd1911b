package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pace"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema/simulate"
)

func init() {
	register("simulate", "publish a realistic generated event stream at a steady rate (live demos)", runSimulate)
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl simulate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl simulate [--rate R] [--calls N] [--seed S]\n\n"+
			"Publishes the stream of the simulator (jobs with retries, flows with loops, billing,\n"+
			"timeline events, three interleaved producers, duplicates, redeliveries) to the configured stream\n"+
			"at R events per second, until the N calls are published or Ctrl-C.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	rate := fs.Float64("rate", 2000, "events per second; 0 publishes as fast as JetStream acknowledges")
	opts := simulateFlags(fs, 1000)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate < 0 {
		return fmt.Errorf("--rate %v: want 0 or more", *rate)
	}
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	nc, err := stream.Connect(cfg.NATS, "reportctl-simulate", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	s, err := stream.New(nc, stream.NamesOf(cfg.NATS), jetstream.WithPublishAsyncTimeout(30*time.Second),
		jetstream.WithPublishAsyncMaxPending(2048))
	if err != nil {
		return err
	}
	if err := s.Ensure(ctx); err != nil {
		return err
	}

	pub := s.NewPublisher(1024, nil)
	prog := progress.New(stderr, "simulate")
	gen := simulate.New(*opts)
	sent, err := pace.Publish(ctx, gen, pub, *rate, 0, func(i int, _ simulate.Message, _ time.Time) {
		prog.Update(uint64(i), 0)
	})
	st, cerr := pub.Close(context.WithoutCancel(ctx), 30*time.Second)
	prog.Finish(uint64(sent), 0)
	fmt.Fprintf(stdout, "published %d events to %s: %d stored, %d dropped by JetStream as duplicates, %d failed\n",
		st.Sent, s.Stream, st.Stored, st.Duplicates, st.Errors)
	if errors.Is(err, context.Canceled) {
		err = nil // Ctrl-C is how a demo ends
	}
	return errors.Join(err, cerr)
}

// simulateFlags registers the generator's options on fs.
func simulateFlags(fs *flag.FlagSet, calls int) *simulate.Options {
	o := &simulate.Options{}
	fs.IntVar(&o.Calls, "calls", calls, "call attempts to generate (about 18 events each)")
	fs.IntVar(&o.Orgs, "orgs", 5, "organizations")
	fs.Uint64Var(&o.Seed, "seed", 1, "seed of the generator: the same seed gives the same stream")
	fs.Float64Var(&o.DuplicateRate, "duplicate-rate", 0.02, "share of events published twice with the same Nats-Msg-Id, which JetStream drops (negative for none)")
	fs.Float64Var(&o.Redeliver, "redeliver-rate", 0.05, "share of events delivered again a few seconds later without a Nats-Msg-Id, which the projector sees twice (0 for none)")
	return o
}
