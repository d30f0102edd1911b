// Package dev runs the whole service in one process on a laptop: the
// projector and the query API, an embedded NATS server when none answers,
// and the example streams with a curl command for each report
// (`reportctl dev`, `make run`).
package dev

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/fixture"
	"github.com/callreport/callreport/internal/natsserver"
	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/migrations"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema/examples"
)

// Options say where the embedded NATS server keeps its store and which
// examples to load.
type Options struct {
	// DataDir holds the store of an embedded NATS server, under nats/.
	DataDir string
	// Examples is a folder of *.events.ndjson files (each beside its
	// .expected.json); empty for the contract's examples, embedded.
	Examples string
}

// Run is the quick start: one process runs the projector and the query API
// (their Main types, as cmd/projector and cmd/query run them) on cfg,
// starting an embedded JetStream server when none answers, loads the
// example streams and prints a curl command for each example report. It
// returns when ctx ends.
func Run(ctx context.Context, cfg *config.Config, o Options, stdout, stderr io.Writer) error {
	cfg.Database.Migrate = true
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}

	if !natsserver.Answers(cfg.NATS.URL.Value()) {
		ns, err := natsserver.StartAt(cfg.NATS.URL.Value(), filepath.Join(o.DataDir, "nats"))
		if err != nil {
			return fmt.Errorf("no NATS server at %s, and starting an embedded one failed: %w", cfg.NATS.URL, err)
		}
		defer ns.Shutdown()
		log.Info("no NATS server answered; started an embedded JetStream server", "url", ns.ClientURL(), "store", ns.StoreDir())
		cfg.NATS.URL = config.Secret(ns.ClientURL())
	}

	// dev, like migrate, creates the database; the processes never do.
	if err := migrations.CreateDatabase(ctx, cfg.Database.URL.Value()); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The projector migrates the database before the query process checks it.
	proj := &projector.Main{Config: *cfg, Logger: log}
	if err := proj.Start(ctx); err != nil {
		return err
	}
	api := &query.Main{Config: *cfg, Logger: log}
	if err := api.Start(ctx); err != nil {
		cancel()
		return errors.Join(err, proj.Wait())
	}
	base := "http://" + api.Addr().String() + "/call-report"

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { defer cancel(); return proj.Wait() })
	g.Go(func() error { defer cancel(); return api.Wait() })
	g.Go(func() error {
		var fsys fs.FS = examples.FS
		if o.Examples != "" {
			fsys = os.DirFS(o.Examples)
		}
		if err := loadExamples(gctx, cfg, fsys, base, stdout, stderr); err != nil && gctx.Err() == nil {
			log.Error("loading the examples failed", "err", err)
		}
		return nil
	})
	err = g.Wait()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

// loadExamples publishes every example stream, issues a dev key per
// organization, waits for each example's report and prints how to get it.
func loadExamples(ctx context.Context, cfg *config.Config, dir fs.FS, base string, stdout, stderr io.Writer) error {
	files, _ := fs.Glob(dir, "*.events.ndjson")
	if len(files) == 0 {
		return errors.New("no *.events.ndjson among the examples")
	}
	sort.Strings(files)
	log, err := cfg.Log.Logger(stderr)
	if err != nil {
		return err
	}
	s, closeNATS, err := stream.Open(cfg.NATS, "callreport-dev", log)
	if err != nil {
		return err
	}
	defer closeNATS()
	if err := s.Ensure(ctx); err != nil {
		return err
	}

	pool, err := pg.Open(ctx, cfg.Database, pg.Options{MaxConns: 4})
	if err != nil {
		return err
	}
	defer pool.Close()
	keys := map[string]string{} // org → key
	type report struct{ name, url, org string }
	var reports []report
	for _, f := range files {
		st, err := fixture.PublishFS(ctx, s, dir, f, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s: %d events, %d of them dropped by JetStream as duplicates\n", f, st.Published, st.Duplicates)
		name := strings.TrimSuffix(f, ".events.ndjson")
		kind, id, org, err := exampleTarget(dir, name+".expected.json", f)
		if err != nil {
			slog.Warn("no expected report beside the stream", "file", f, "err", err)
			continue
		}
		if keys[org] == "" {
			key, _, err := query.CreateKey(ctx, pool, org, "dev")
			if err != nil {
				return err
			}
			keys[org] = key
		}
		reports = append(reports, report{name: name, url: base + "/" + kind + "/" + id, org: org})
	}

	if err := waitProjected(ctx, s, pool, cfg.Projector.Consumer); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nThe example reports (dev keys were created for their organizations):")
	for _, r := range reports {
		fmt.Fprintf(stdout, "\n# %s\ncurl -s -H 'Authorization: Bearer %s' %s\n", r.name, keys[r.org], r.url)
	}
	fmt.Fprintln(stdout, "\nServing on", strings.TrimSuffix(base, "/call-report"), "— Ctrl-C to stop.")
	return nil
}

// exampleTarget reads which report an example produces, and its org.
func exampleTarget(dir fs.FS, expectedPath, streamPath string) (kind, id, org string, err error) {
	b, err := fs.ReadFile(dir, expectedPath)
	if err != nil {
		return "", "", "", err
	}
	var head struct{ JobID, CallID string }
	if err := json.Unmarshal(b, &head); err != nil {
		return "", "", "", err
	}
	kind, id = "jobs", head.JobID
	if head.CallID != "" {
		kind, id = "calls", head.CallID
	}
	s, err := fs.ReadFile(dir, streamPath)
	if err != nil {
		return "", "", "", err
	}
	var line struct {
		Event struct {
			OrgID string `json:"orgid"`
		} `json:"event"`
	}
	first, _, _ := strings.Cut(string(s), "\n")
	if err := json.Unmarshal([]byte(first), &line); err != nil || line.Event.OrgID == "" {
		return "", "", "", fmt.Errorf("no orgid on the first line of %s", streamPath)
	}
	return kind, id, line.Event.OrgID, nil
}

// waitProjected waits until the projector has committed the whole stream.
func waitProjected(ctx context.Context, s *stream.Streams, pool *pgxpool.Pool, consumer string) error {
	for {
		st, err := projector.Status(ctx, pool, s, consumer)
		if err == nil && st.Live.Position >= st.Stream.LastSeq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
