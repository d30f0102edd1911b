package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema"
)

func init() {
	register("export", "write one organization's call or job reports to a file (NDJSON or CSV)", runExport)
}

func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl export --org ORG [--jobs] [--from T] [--to T] [--format ndjson|csv] FILE\n\n"+
			"Writes the organization's call reports (job reports with --jobs) created in\n"+
			"[--from, --to) (RFC 3339), oldest first: one report per line exactly as the\n"+
			"API serves it, or a CSV table of their scalar fields (docs/api.md, \"Export\").\n"+
			"FILE must not exist; it appears whole when the export is done. - writes to\n"+
			"stdout.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionDatabase)
	org := fs.String("org", "", "organization whose reports are written")
	jobs := fs.Bool("jobs", false, "export job reports instead of call reports")
	from := fs.String("from", "", "earliest createdAt, inclusive (RFC 3339)")
	to := fs.String("to", "", "latest createdAt, exclusive (RFC 3339)")
	format := fs.String("format", "ndjson", "ndjson or csv")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *org == "" {
		fs.Usage()
		return errUsage
	}
	if !schema.ValidID(*org) {
		fmt.Fprintf(stderr, "reportctl export: --org %s is not a valid organization id\n", strconv.Quote(*org))
		return errUsage
	}
	opts := query.ExportOptions{Org: *org, Jobs: *jobs}
	for _, t := range []struct {
		flag string
		v    string
		dst  **time.Time
	}{{"from", *from, &opts.From}, {"to", *to, &opts.To}} {
		if t.v == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, t.v)
		if err != nil {
			fmt.Fprintf(stderr, "reportctl export: --%s %s is not an RFC 3339 time (2025-12-16T11:15:00Z)\n", t.flag, strconv.Quote(t.v))
			return errUsage
		}
		*t.dst = &at
	}
	switch *format {
	case "ndjson":
	case "csv":
		opts.CSV = true
	default:
		fmt.Fprintf(stderr, "reportctl export: --format %s: ndjson or csv\n", strconv.Quote(*format))
		return errUsage
	}
	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	file := fs.Arg(0)
	out, finish, err := createWhole(file, stdout)
	if err != nil {
		return err
	}
	defer finish(false)
	total, err := query.ExportCount(ctx, pool, opts)
	if err != nil {
		return fmt.Errorf("count the reports: %w", err)
	}
	bar := progress.New(stderr, "export")
	opts.Progress = func(n int) {
		if n < int(total) { // Finish draws the last
			bar.Update(uint64(n), uint64(total))
		}
	}
	began := time.Now()
	n, err := query.Export(ctx, pool, out, opts)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := finish(true); err != nil {
		return err
	}
	bar.Finish(uint64(n), uint64(n))
	what := "call reports"
	if *jobs {
		what = "job reports"
	}
	fmt.Fprintf(stdout, "exported %s %s to %s (%s)\n", count(uint64(n)), what, cli.Printable(file), time.Since(began).Round(time.Millisecond))
	return nil
}

// createWhole opens a temporary file beside name; finish(true) moves it to
// name, so that an interrupted export leaves no partial file looking like
// a whole one, and finish(false) removes it. An existing name is refused.
// "-" is stdout.
func createWhole(name string, stdout io.Writer) (io.Writer, func(ok bool) error, error) {
	if name == "-" {
		return stdout, func(bool) error { return nil }, nil
	}
	if _, err := os.Lstat(name); err == nil {
		return nil, nil, fmt.Errorf("%s exists: the export writes a new file", cli.Printable(name))
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*.partial")
	if err != nil {
		return nil, nil, err
	}
	done := false
	return tmp, func(ok bool) error {
		if done {
			return nil
		}
		done = true
		if !ok {
			tmp.Close()
			return os.Remove(tmp.Name())
		}
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			return err
		}
		if err := tmp.Close(); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		// Link, not rename: a file created meanwhile under name is not
		// overwritten.
		if err := os.Link(tmp.Name(), name); err != nil {
			os.Remove(tmp.Name())
			return err
		}
		return os.Remove(tmp.Name())
	}, nil
}
