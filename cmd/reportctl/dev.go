package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/callreport/callreport/cmd/internal/config"
	"github.com/callreport/callreport/projector"
	"github.com/callreport/callreport/query"
)

func init() {
	register("dev", "run the whole service locally: migrate, projector, query API, example data", runDev)
}

// runDev is the quick start: one process runs the projector and the query
// API on the local defaults, starting an embedded JetStream server when none
// answers, loads the contract's example streams and prints a curl command
// for each example report.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs)
	dataDir := fs.String("data-dir", "data", "where an embedded NATS server keeps its store")
	examples := fs.String("examples", "", "folder of *.events.ndjson files to load (default: the contract's examples in ../shared/contract/examples)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Migrate = true
	log, err := cfg.Logger(stderr)
	if err != nil {
		return err
	}

	if !natsAnswers(cfg.NATSURL) {
		ns, url, err := startEmbeddedNATS(filepath.Join(*dataDir, "nats"), cfg.NATSURL)
		if err != nil {
			return fmt.Errorf("no NATS server at %s, and starting an embedded one failed: %w", cfg.NATSURL, err)
		}
		defer ns.Shutdown()
		log.Info("no NATS server answered; started an embedded JetStream server", "url", url, "store", ns.StoreDir())
		cfg.NATSURL = url
	}

	pool, err := cfg.OpenDB(ctx, 8)
	if err != nil {
		return err
	}
	defer pool.Close()
	nc, err := cfg.ConnectNATS("callreport-dev", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	p, err := projector.New(pool, nc, projector.Config{Streams: cfg.Streams(), Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.HTTPAddr, err)
	}
	base := "http://" + ln.Addr().String() + "/call-report"

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Run(ctx) })
	g.Go(func() error { return query.New(pool, query.Config{Logger: log}).Serve(ctx, ln) })
	g.Go(func() error {
		if err := loadExamples(ctx, cfg, nc, *examples, base, stdout, stderr); err != nil {
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

// natsAnswers reports whether something accepts connections at url.
func natsAnswers(natsURL string) bool {
	nc, err := nats.Connect(natsURL, nats.Timeout(time.Second))
	if err != nil {
		return false
	}
	nc.Close()
	return true
}

// startEmbeddedNATS runs a JetStream server on the address of wantURL (so
// that other tools with the same NATS_URL reach it) with its store in dir.
func startEmbeddedNATS(dir, wantURL string) (*server.Server, string, error) {
	opts := &server.Options{Host: "127.0.0.1", Port: 4222, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true}
	if u, err := url.Parse(wantURL); err == nil && u.Host != "" {
		if h := u.Hostname(); h != "" {
			opts.Host = h
		}
		if p, err := strconv.Atoi(u.Port()); err == nil {
			opts.Port = p
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, "", err
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, "", errors.New("embedded NATS server not ready after 10s")
	}
	return ns, ns.ClientURL(), nil
}

// contractExamples finds the contract's examples folder.
func contractExamples() (string, error) {
	var candidates []string
	if d := os.Getenv("CALLREPORT_CONTRACT_DIR"); d != "" {
		candidates = append(candidates, filepath.Join(d, "examples"))
	}
	candidates = append(candidates, "../shared/contract/examples", "shared/contract/examples")
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			return c, nil
		}
	}
	return "", fmt.Errorf("contract examples not found in %s: pass -examples DIR", strings.Join(candidates, ", "))
}

// loadExamples publishes every example stream, issues a dev key per
// organization, waits for each example's report and prints how to get it.
func loadExamples(ctx context.Context, cfg *config.Config, nc *nats.Conn, dir, base string, stdout, stderr io.Writer) error {
	if dir == "" {
		var err error
		if dir, err = contractExamples(); err != nil {
			return err
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.events.ndjson"))
	if len(files) == 0 {
		return fmt.Errorf("no *.events.ndjson in %s", dir)
	}
	sort.Strings(files)
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := projector.EnsureStreams(ctx, js, cfg.Streams()); err != nil {
		return err
	}

	pool, err := cfg.OpenDB(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	keys := map[string]string{} // org → key
	type report struct{ name, url, org string }
	var reports []report
	for _, f := range files {
		st, err := publishFile(ctx, js, cfg.SubjectPrefix, f, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "published %s: %d events, %d of them dropped by JetStream as duplicates\n", filepath.Base(f), st.published, st.duplicates)
		name := strings.TrimSuffix(filepath.Base(f), ".events.ndjson")
		kind, id, org, err := exampleTarget(filepath.Join(dir, name+".expected.json"), f)
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

	if err := waitProjected(ctx, js, pool, cfg); err != nil {
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
func exampleTarget(expectedPath, streamPath string) (kind, id, org string, err error) {
	b, err := os.ReadFile(expectedPath)
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
	s, err := os.ReadFile(streamPath)
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
func waitProjected(ctx context.Context, js jetstream.JetStream, pool *pgxpool.Pool, cfg *config.Config) error {
	for {
		st, err := projector.Status(ctx, pool, js, cfg.Streams())
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
