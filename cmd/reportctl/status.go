package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/projector"
)

func init() {
	register("status", "show the stream, the live position and lag, dead letters, generations", runStatus)
}

const statusUsage = `Usage: reportctl status [--json] [flags]

Shows the event stream, the live generation and its position, the lag of the
live consumer (events not yet acknowledged, and the age of the oldest), the
dead letters by reason, a rebuild in progress and the retired generations.

--json prints one JSON object (projector.StatusReport); fields are only ever
added, never renamed or removed:
  checked_at            time of the check (RFC 3339, UTC)
  fold_version          fold version of this binary
  stream                {name, messages, bytes, first_seq, last_seq, last_time}
  live                  {generation, fold_version, fold_version_matches, consumer,
                         switched_at, position, applied, rejected, skipped, last_commit}
  lag                   {events, seconds, estimated}
  consumer              {name, pending, ack_pending, redelivered, ack_floor, waiting},
                        null when the live consumer does not exist
  partitions            [{partition, consumer, owner, epoch, lease_expires_at, position,
                         through, last_commit, pending, lag_seconds}]: the live
                        consumer's partitions and the projector processes holding them
  dead_letters          {stream, total, by_reason: {reason: count}, last_time,
                         first_seq, last_seq}
  rebuild               {generation, fold_version, schema, consumer, started_at,
                         position, last_seq, percent}, null when none is building
  retired               [{generation, fold_version, schema, switched_at, retired_at}]
  stalled               true when events are pending and nothing was committed for
                        30 s: the projector is down or stuck (its /readyz says why)
  warnings              [string]
  database, nats        where the status was read, passwords and tokens redacted
Unknown times are null.

Flags:
`

func runStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, statusUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	asJSON := fs.Bool("json", false, "print the status as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return errUsage
	}
	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	s, closeNATS, err := openStreams(cfg, "reportctl-status", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	r, err := projector.Status(ctx, pool, s, cfg.Projector.Consumer)
	if err != nil {
		return err
	}
	r.Database, r.NATS = cfg.Database.URL.String(), cfg.NATS.URL.String() // redacted
	if *asJSON {
		return cli.WriteJSON(stdout, r)
	}
	cli.WriteStatus(stdout, r)
	return nil
}
