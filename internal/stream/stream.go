// Package stream owns the JetStream side of the projection: the event
// stream and the dead-letter stream (their names, their setup), connecting
// to NATS, publishing events, dead-lettering the rejected ones, reading
// messages back by subject, retrying and purging dead letters, and measuring
// a consumer's lag. The projector and reportctl use it; the query process
// never does.
package stream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/schema"
)

// Names names the JetStream objects of the projection. The contract's names
// are the defaults; operators (and tests) may change them.
type Names struct {
	Stream        string // CALL_EVENTS
	DLQStream     string // CALL_EVENTS_DLQ
	SubjectPrefix string // callevents
	DLQPrefix     string // callevents_dlq
	// Partitions is how many partitions the event stream divides its
	// events into (1: none). With more, the stream stores each event under
	// <prefix>.<partition>.<orgid>.…, the partition of its id token.
	Partitions int
}

// DefaultNames are the contract's names.
func DefaultNames() Names {
	return Names{
		Stream:        schema.DefaultStream,
		DLQStream:     schema.DefaultDLQStream,
		SubjectPrefix: schema.SubjectPrefix,
		DLQPrefix:     schema.DLQSubjectPrefix,
		Partitions:    1,
	}
}

// NamesOf are the names a configuration gives.
func NamesOf(c config.NATS) Names {
	return Names{Stream: c.Stream, DLQStream: c.DLQStream, SubjectPrefix: c.SubjectPrefix, DLQPrefix: c.DLQPrefix,
		Partitions: max(c.Partitions, 1)}
}

// Partitioned reports whether the stream divides its events into
// partitions.
func (n Names) Partitioned() bool { return n.Partitions > 1 }

// Filter is the subject filter of every event.
func (n Names) Filter() string { return n.SubjectPrefix + ".>" }

// PartitionFilter is the subject filter of the events of partition p.
func (n Names) PartitionFilter(p int) string {
	if !n.Partitioned() {
		return n.Filter()
	}
	return n.SubjectPrefix + "." + strconv.Itoa(p) + ".>"
}

// StoredFilter is a filter on contract subjects (callevents.<orgid>.…,
// wildcards allowed) as it matches the stored subjects: under the
// configured prefix, with any partition.
func (n Names) StoredFilter(contract string) string {
	if rest, ok := strings.CutPrefix(contract, schema.SubjectPrefix+"."); ok {
		if n.Partitioned() {
			return n.SubjectPrefix + ".*." + rest
		}
		return n.SubjectPrefix + "." + rest
	}
	return contract
}

// ContractSubject is a stored subject as the contract names it
// (callevents.<orgid>.…), whatever prefix the stream is configured with
// and without the partition token.
func (n Names) ContractSubject(stored string) string {
	rest, ok := strings.CutPrefix(stored, n.SubjectPrefix+".")
	if !ok {
		return stored
	}
	if n.Partitioned() {
		if _, after, ok := strings.Cut(rest, "."); ok {
			rest = after
		}
	}
	return schema.SubjectPrefix + "." + rest
}

// PartitionOf is the partition of a stored subject, 0 without partitions.
func (n Names) PartitionOf(stored string) int {
	if !n.Partitioned() {
		return 0
	}
	rest, _ := strings.CutPrefix(stored, n.SubjectPrefix+".")
	tok, _, _ := strings.Cut(rest, ".")
	p, _ := strconv.Atoi(tok)
	return p
}

// accepted is the subject filter the event stream takes messages on.
// Partitioned, only subjects of the contract's shape: a partition is a
// function of the id token, and a subject without one would belong to no
// partition (its publisher gets no stream rather than a dead letter).
func (n Names) accepted() string {
	if n.Partitioned() {
		return n.SubjectPrefix + ".*.*.*.*"
	}
	return n.Filter()
}

// transform is the stream's subject transform: the partition of the id
// token (the call id, or the job id of job.*) inserted as a token after
// the prefix, by the server.
func (n Names) transform() *jetstream.SubjectTransformConfig {
	if !n.Partitioned() {
		return nil
	}
	return &jetstream.SubjectTransformConfig{
		Source:      n.SubjectPrefix + ".*.*.*.*",
		Destination: fmt.Sprintf("%s.{{partition(%d,3)}}.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}.{{wildcard(4)}}", n.SubjectPrefix, n.Partitions),
	}
}

// MinPartitionServer is the first nats-server version whose streams take
// subject transforms with partition().
const MinPartitionServer = "2.10.0"

// ErrPartitions is returned when the stream and the configuration disagree
// on the partitions.
var ErrPartitions = errors.New("partitions")

// versionAtLeast reports whether a server version (2.9.10) is major.minor
// or newer.
func versionAtLeast(version string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(version, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// partitionsOf reads the partitions a stream was created with.
func partitionsOf(cfg jetstream.StreamConfig) int {
	t := cfg.SubjectTransform
	if t == nil {
		return 1
	}
	var parts, token int
	if i := strings.Index(t.Destination, "{{partition("); i >= 0 {
		if _, err := fmt.Sscanf(t.Destination[i:], "{{partition(%d,%d)}}", &parts, &token); err == nil && parts > 0 {
			return parts
		}
	}
	return 1
}

// StoredSubject is the subject a contract subject is published on here.
func (n Names) StoredSubject(contract string) string {
	if rest, ok := strings.CutPrefix(contract, schema.SubjectPrefix+"."); ok {
		return n.SubjectPrefix + "." + rest
	}
	return contract
}

// Streams is the event stream and the dead-letter stream on one JetStream.
type Streams struct {
	Names
	// DLQLimits bound the dead-letter stream Ensure creates, and the one
	// ApplyDLQLimits updates.
	DLQLimits DLQLimits
	// Replicas is the number of copies of each stream Ensure creates, on a
	// JetStream cluster (0 or 1: one).
	Replicas int
	// OnDLQDiscard, when set, is told how many old dead letters the
	// dead-letter stream discarded to store new ones.
	OnDLQDiscard func(n uint64)
	js           jetstream.JetStream
}

// DLQLimits bound the dead-letter stream, which then discards its oldest
// messages: a producer that sends garbage for days fills it, not the disk.
// Zero means no bound.
type DLQLimits struct {
	MaxAge   time.Duration
	MaxBytes int64
}

// DLQLimitsOf are the limits a configuration gives.
func DLQLimitsOf(c config.NATS) DLQLimits {
	return DLQLimits{MaxAge: c.DLQMaxAge, MaxBytes: c.DLQMaxBytes}
}

// New returns the streams of n reached through nc.
func New(nc *nats.Conn, n Names, opts ...jetstream.JetStreamOpt) (*Streams, error) {
	n.Partitions = max(n.Partitions, 1)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Streams{Names: n, js: js}, nil
}

// JetStream is the JetStream context the streams live in.
func (s *Streams) JetStream() jetstream.JetStream { return s.js }

// Conn is the NATS connection.
func (s *Streams) Conn() *nats.Conn { return s.js.Conn() }

// Ensure creates the event stream and the dead-letter stream if they are
// missing, as the contract describes them: file storage, limits retention
// (the stream is the system of record), a two-minute duplicate window; the
// dead-letter stream with DLQLimits, discarding the oldest when full.
// Existing streams are left as the operator configured them (see
// ApplyDLQLimits).
func (s *Streams) Ensure(ctx context.Context) error {
	if s.Partitioned() && !versionAtLeast(s.js.Conn().ConnectedServerVersion(), 2, 10) {
		return fmt.Errorf("%w: %d partitions need nats-server %s or newer (subject transforms with partition()); the server is %s",
			ErrPartitions, s.Partitions, MinPartitionServer, s.js.Conn().ConnectedServerVersion())
	}
	if st, err := s.js.Stream(ctx, s.Stream); err == nil {
		if got := partitionsOf(st.CachedInfo().Config); got != s.Partitions {
			return fmt.Errorf("%w: stream %s divides its events into %d partition(s), CALLREPORT_PARTITIONS says %d: "+
				"run `reportctl repartition` to move to %d (docs/scaling.md), or set CALLREPORT_PARTITIONS=%d",
				ErrPartitions, s.Stream, got, s.Partitions, s.Partitions, got)
		}
	}
	for _, cfg := range []jetstream.StreamConfig{{
		Name:             s.Stream,
		Description:      "Call events (callreport contract v1); the system of record of the reports",
		Subjects:         []string{s.accepted()},
		Storage:          jetstream.FileStorage,
		Retention:        jetstream.LimitsPolicy,
		Duplicates:       schema.DuplicateWindow,
		SubjectTransform: s.transform(),
		Replicas:         max(s.Replicas, 1),
	}, {
		Name:        s.DLQStream,
		Description: "Call events the projector rejected, with the reason in headers",
		Subjects:    []string{s.DLQPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  dlqDuplicates(s.DLQLimits),
		MaxAge:      s.DLQLimits.MaxAge,
		MaxBytes:    maxBytes(s.DLQLimits.MaxBytes),
		Discard:     jetstream.DiscardOld,
		Replicas:    max(s.Replicas, 1),
	}} {
		_, err := s.js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = s.js.CreateStream(ctx, cfg)
			if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
				err = nil // created meanwhile by another process
			}
		}
		if err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// ApplyDLQLimits sets DLQLimits on the existing dead-letter stream when it
// has others (deployed before the limits existed, or configured anew). The
// projector does it at start: it is the process the limits are configured
// for, where reportctl may run with another environment.
func (s *Streams) ApplyDLQLimits(ctx context.Context) error {
	st, err := s.js.Stream(ctx, s.DLQStream)
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", s.DLQStream, err)
	}
	cfg := st.CachedInfo().Config
	want := maxBytes(s.DLQLimits.MaxBytes)
	if cfg.MaxAge == s.DLQLimits.MaxAge && cfg.MaxBytes == want && cfg.Discard == jetstream.DiscardOld {
		return nil
	}
	cfg.MaxAge, cfg.MaxBytes, cfg.Discard = s.DLQLimits.MaxAge, want, jetstream.DiscardOld
	// The duplicate window may not exceed MaxAge.
	if cfg.MaxAge > 0 && cfg.Duplicates > cfg.MaxAge {
		cfg.Duplicates = cfg.MaxAge
	}
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("set the limits of dead-letter stream %s: %w", s.DLQStream, err)
	}
	return nil
}

// maxBytes is JetStream's MaxBytes for a bound: -1 for none.
func maxBytes(n int64) int64 {
	if n <= 0 {
		return -1
	}
	return n
}

// dlqDuplicates is the duplicate window of the dead-letter stream: the
// contract's, unless MaxAge is shorter (JetStream refuses a longer one).
func dlqDuplicates(l DLQLimits) time.Duration {
	if l.MaxAge > 0 && l.MaxAge < schema.DuplicateWindow {
		return l.MaxAge
	}
	return schema.DuplicateWindow
}

// ConsumerFilter is the subject filter to give a consumer of the events
// that filter names: none when the stream takes exactly those subjects
// and stores them as sent (no subject transform), for then the consumer
// takes every message either way, and nats-server 2.9 counts a filtered
// consumer's pending messages subject by subject at each consumer info:
// 0.75 s of its CPU, and as long, on a stream of 1.4 million subjects
// (100,000 calls), against 0.3 ms unfiltered.
func (s *Streams) ConsumerFilter(ctx context.Context, filter string) (string, error) {
	st, err := s.Events(ctx)
	if err != nil {
		return filter, err
	}
	if cfg := st.CachedInfo().Config; len(cfg.Subjects) == 1 && cfg.Subjects[0] == filter && cfg.SubjectTransform == nil {
		return "", nil
	}
	return filter, nil
}

// Events is the event stream.
func (s *Streams) Events(ctx context.Context) (jetstream.Stream, error) {
	st, err := s.js.Stream(ctx, s.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.Stream, err)
	}
	return st, nil
}

// Connect connects to the configured NATS servers, authenticated and over
// TLS as configured, and keeps reconnecting for as long as the process
// runs, logging each disconnection. name tells the server who the client
// is.
func Connect(c config.NATS, name string, log *slog.Logger) (*nats.Conn, error) {
	opts, err := Options(c)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil when the connection is closed on purpose
				log.Warn("NATS disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
		}),
	)
	nc, err := nats.Connect(strings.Join(c.URLs(), ","), opts...)
	if err != nil {
		// c.URL prints redacted; the client's error may quote a URL it
		// could not parse, password and all.
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.URL, config.Scrub(err))
	}
	return nc, nil
}

// Options are the NATS client options of the configured credentials and
// TLS files; every process that connects uses them.
func Options(c config.NATS) ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.Creds != "":
		if _, err := os.Stat(c.Creds); err != nil {
			return nil, fmt.Errorf("NATS credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(c.Creds))
	case c.NKey != "":
		o, err := nats.NkeyOptionFromSeed(c.NKey)
		if err != nil {
			// The error names the file, never the seed.
			return nil, fmt.Errorf("NATS NKey seed file %s: %w", c.NKey, err)
		}
		opts = append(opts, o)
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}

// Open connects to the configured NATS as client name and returns the
// configured streams. close closes the connection without the "NATS
// disconnected" warning a deliberate close would log.
func Open(c config.NATS, name string, log *slog.Logger) (s *Streams, close func(), err error) {
	nc, err := Connect(c, name, log)
	if err != nil {
		return nil, nil, err
	}
	close = func() {
		nc.SetDisconnectErrHandler(nil)
		nc.Close()
	}
	if s, err = New(nc, NamesOf(c)); err != nil {
		close()
		return nil, nil, err
	}
	s.DLQLimits = DLQLimitsOf(c)
	s.Replicas = c.Replicas
	return s, close, nil
}
