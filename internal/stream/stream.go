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
}

// DefaultNames are the contract's names.
func DefaultNames() Names {
	return Names{
		Stream:        schema.DefaultStream,
		DLQStream:     schema.DefaultDLQStream,
		SubjectPrefix: schema.SubjectPrefix,
		DLQPrefix:     schema.DLQSubjectPrefix,
	}
}

// NamesOf are the names a configuration gives.
func NamesOf(c config.NATS) Names {
	return Names{Stream: c.Stream, DLQStream: c.DLQStream, SubjectPrefix: c.SubjectPrefix, DLQPrefix: c.DLQPrefix}
}

// Filter is the subject filter of every event.
func (n Names) Filter() string { return n.SubjectPrefix + ".>" }

// ContractSubject is a stored subject as the contract names it
// (callevents.<orgid>.…), whatever prefix the stream is configured with.
func (n Names) ContractSubject(stored string) string {
	if rest, ok := strings.CutPrefix(stored, n.SubjectPrefix+"."); ok {
		return schema.SubjectPrefix + "." + rest
	}
	return stored
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
	js jetstream.JetStream
}

// New returns the streams of n reached through nc.
func New(nc *nats.Conn, n Names, opts ...jetstream.JetStreamOpt) (*Streams, error) {
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
// (the stream is the system of record), a two-minute duplicate window.
// Existing streams are left as the operator configured them.
func (s *Streams) Ensure(ctx context.Context) error {
	for _, cfg := range []jetstream.StreamConfig{{
		Name:        s.Stream,
		Description: "Call events (callreport contract v1); the system of record of the reports",
		Subjects:    []string{s.Filter()},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  schema.DuplicateWindow,
	}, {
		Name:        s.DLQStream,
		Description: "Call events the projector rejected, with the reason in headers",
		Subjects:    []string{s.DLQPrefix + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  schema.DuplicateWindow,
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

// Events is the event stream.
func (s *Streams) Events(ctx context.Context) (jetstream.Stream, error) {
	st, err := s.js.Stream(ctx, s.Stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", s.Stream, err)
	}
	return st, nil
}

// Connect connects to the configured NATS servers and keeps reconnecting
// for as long as the process runs, logging each disconnection. name tells
// the server who the client is.
func Connect(c config.NATS, name string, log *slog.Logger) (*nats.Conn, error) {
	nc, err := nats.Connect(strings.Join(c.URLs(), ","),
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
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.URL, err)
	}
	return nc, nil
}
