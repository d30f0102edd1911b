package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/progress"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/schema"
	"github.com/callreport/callreport/schema/examples"
)

func init() {
	register("publish", "publish event files (.ndjson fixtures) to the event stream", runPublish)
}

func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: reportctl publish [flags] FILE.ndjson...\n\n"+
			"Each line is {\"subject\": S, \"event\": {...}} (structured mode), {\"subject\": S, \"raw\": \"...\"},\n"+
			"or {\"subject\": S, \"headers\": {\"ce-specversion\": \"1.0\", ...}, \"data\": {...}} (binary mode);\n"+
			"\"headers\" may go with any body. Nats-Msg-Id is the event id (ce-id in binary mode),\n"+
			"so JetStream drops a line published twice.\n\nFlags:")
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errUsage
	}
	s, closeNATS, err := openStreams(cfg, "reportctl", stderr)
	if err != nil {
		return err
	}
	defer closeNATS()
	if err := s.Ensure(ctx); err != nil {
		return err
	}
	var total publishStats
	for _, path := range fs.Args() {
		st, err := publishFile(ctx, s, path, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %d published, %d duplicates, %d errors\n", path, st.published, st.duplicates, st.errors)
		total.published += st.published
		total.duplicates += st.duplicates
		total.errors += st.errors
	}
	if fs.NArg() > 1 {
		fmt.Fprintf(stdout, "total: %d published, %d duplicates, %d errors\n", total.published, total.duplicates, total.errors)
	}
	if total.errors > 0 {
		return fmt.Errorf("%d lines not published", total.errors)
	}
	return nil
}

// publishProgressMin is the size from which publishing a file shows its
// progress, by bytes read.
var publishProgressMin int64 = 4 << 20

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

type publishStats struct{ published, duplicates, errors int }

// publishFile publishes every line of path, a window of them in flight at a
// time, and reports each line it could not publish on errw.
func publishFile(ctx context.Context, s *stream.Streams, path string, errw io.Writer) (publishStats, error) {
	return publishFS(ctx, s, nil, path, errw)
}

// publishFS is publishFile on a file of fsys (the embedded examples), or of
// the file system when fsys is nil.
func publishFS(ctx context.Context, s *stream.Streams, fsys fs.FS, path string, errw io.Writer) (publishStats, error) {
	var st publishStats
	var f fs.File
	var err error
	if fsys == nil {
		f, err = os.Open(path)
	} else {
		f, err = fsys.Open(path)
	}
	if err != nil {
		return st, err
	}
	defer f.Close()
	in := &countingReader{r: f}
	var size uint64
	var bar *progress.Bar
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() >= publishProgressMin {
		size = uint64(fi.Size())
		bar = progress.New(errw, filepath.Base(path)+" bytes")
	}
	pub := s.NewPublisher(256, func(line int, err error) {
		fmt.Fprintf(errw, "%s:%d: %v\n", path, line, err)
	})
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 64<<10), 2*schema.MaxEventBytes)
	for n := 1; sc.Scan(); n++ {
		if len(strings.TrimSpace(sc.Text())) == 0 {
			continue
		}
		m, err := fixtureMsg(sc.Bytes())
		if err == nil {
			err = pub.Publish(ctx, m, n)
		}
		if err != nil {
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			st.errors++
			fmt.Fprintf(errw, "%s:%d: %v\n", path, n, err)
			continue
		}
		if bar != nil {
			bar.Update(in.n, size)
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	ps, err := pub.Close(ctx, 30*time.Second)
	st.published += ps.Stored + ps.Duplicates
	st.duplicates += ps.Duplicates
	st.errors += ps.Errors
	if err != nil && ps.Errors == 0 { // refusals are counted, the rest stops here
		return st, err
	}
	if bar != nil {
		bar.Finish(in.n, size)
	}
	return st, nil
}

// fixtureMsg turns one fixture line (the format of package examples) into
// the message to publish: the body as it is, the headers the line gives,
// and Nats-Msg-Id set from the event id when the event has one: the ce-id
// header of a binary-mode line, the "id" of a structured event.
func fixtureMsg(line []byte) (stream.Message, error) {
	subject, header, body, err := examples.ParseLine(line)
	if err != nil {
		return stream.Message{}, fmt.Errorf("not a fixture line: %w", err)
	}
	m := stream.Message{Subject: subject, Header: header, Data: body}
	if schema.BinaryMode(header) {
		for k, v := range header {
			if strings.EqualFold(k, "ce-id") && len(v) > 0 && v[0] != "" {
				m.ID = v[0]
			}
		}
		return m, nil
	}
	var head struct {
		ID any `json:"id"`
	}
	if json.Unmarshal(m.Data, &head) == nil {
		if id, ok := head.ID.(string); ok && id != "" {
			m.ID = id
		}
	}
	return m, nil
}
