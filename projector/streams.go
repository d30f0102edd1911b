package projector

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/callreport/callreport/schema"
)

// Streams names the JetStream objects of the projection.
type Streams struct {
	Stream        string // CALL_EVENTS
	DLQStream     string // CALL_EVENTS_DLQ
	Consumer      string // durable pull consumer of the projector
	SubjectPrefix string // callevents
	DLQPrefix     string // callevents_dlq
}

// DefaultStreams are the contract's names.
func DefaultStreams() Streams {
	return Streams{
		Stream:        schema.DefaultStream,
		DLQStream:     schema.DefaultDLQStream,
		Consumer:      "callreport-projector",
		SubjectPrefix: schema.SubjectPrefix,
		DLQPrefix:     schema.DLQSubjectPrefix,
	}
}

// EnsureStreams creates the event stream and the dead-letter stream if they
// are missing, as the contract describes them: file storage, limits
// retention (the stream is the system of record), a two-minute duplicate
// window. Existing streams are left as the operator configured them.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, s Streams) error {
	for _, cfg := range []jetstream.StreamConfig{{
		Name:        s.Stream,
		Description: "Call events (callreport contract v1); the system of record of the reports",
		Subjects:    []string{s.SubjectPrefix + ".>"},
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
		_, err := js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			_, err = js.CreateStream(ctx, cfg)
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
