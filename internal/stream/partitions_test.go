package stream_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/callreport/callreport/internal/stream"
)

func partitionedNames(p int) stream.Names {
	return stream.Names{Stream: "EV", DLQStream: "EV_DLQ", SubjectPrefix: "ev", DLQPrefix: "ev_dlq", Partitions: p}
}

// TestEnsurePartitions: the stream is made with the partitions of the
// configuration, and a process configured with another number is refused
// with both numbers and what to do.
func TestEnsurePartitions(t *testing.T) {
	s := runServer(t, &server.Options{JetStream: true, StoreDir: t.TempDir()})
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := context.Background()

	four, err := stream.New(nc, partitionedNames(4))
	if err != nil {
		t.Fatal(err)
	}
	if err := four.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if err := four.Ensure(ctx); err != nil {
		t.Fatalf("Ensure again: %v", err)
	}
	// The server stores a contract subject with its partition token.
	if _, err := four.JetStream().Publish(ctx, "ev.org-a.call.c1.created", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	st, err := four.JetStream().Stream(ctx, "EV")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tok := strings.Split(raw.Subject, "."); len(tok) != 6 || tok[0] != "ev" || len(tok[1]) != 1 || tok[1] < "0" || tok[1] > "3" {
		t.Fatalf("stored subject %q, want ev.<0-3>.org-a.call.c1.created", raw.Subject)
	}
	if got := four.ContractSubject(raw.Subject); got != "callevents.org-a.call.c1.created" {
		t.Errorf("ContractSubject(%q) = %q", raw.Subject, got)
	}

	for _, p := range []int{1, 2} {
		other, err := stream.New(nc, partitionedNames(p))
		if err != nil {
			t.Fatal(err)
		}
		err = other.Ensure(ctx)
		if !errors.Is(err, stream.ErrPartitions) || !strings.Contains(err.Error(), "4 partition(s)") ||
			!strings.Contains(err.Error(), "reportctl repartition") {
			t.Errorf("Ensure with %d partitions on a stream of 4: %v", p, err)
		}
	}
}

// TestPartitionsNeedServer: a server older than 2.10 has no partition()
// transform; a partitioned configuration is refused at start, naming the
// version needed. It runs against the machine's nats-server when that is
// older (CALLREPORT_TEST_OLD_NATS_URL, or nats://127.0.0.1:4222).
func TestPartitionsNeedServer(t *testing.T) {
	url := os.Getenv("CALLREPORT_TEST_OLD_NATS_URL")
	if url == "" {
		url = nats.DefaultURL
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Skipf("no NATS server at %s: %v", url, err)
	}
	defer nc.Close()
	v := nc.ConnectedServerVersion()
	if !(strings.HasPrefix(v, "2.9.") || strings.HasPrefix(v, "2.8.") || strings.HasPrefix(v, "2.7.")) {
		t.Skipf("the server at %s is %s, new enough for partitions", url, v)
	}
	names := partitionedNames(2)
	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	names.Stream, names.SubjectPrefix = "EV_OLD_SERVER_"+suffix, "ev_old_server_"+suffix
	s, err := stream.New(nc, names)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Ensure(context.Background())
	if !errors.Is(err, stream.ErrPartitions) || !strings.Contains(err.Error(), "need nats-server 2.10.0 or newer") ||
		!strings.Contains(err.Error(), v) {
		t.Fatalf("Ensure with 2 partitions on nats-server %s: %v", v, err)
	}
	if _, err := s.JetStream().Stream(context.Background(), names.Stream); err == nil {
		_ = s.JetStream().DeleteStream(context.Background(), names.Stream)
		t.Fatal("the stream was created anyway")
	}
}
