package pace

import (
	"testing"
	"time"

	"github.com/callreport/callreport/schema/simulate"
)

func TestDueAtIsSteady(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := DueAt(start, 2000, 2000).Sub(start); got != time.Second {
		t.Errorf("message 2000 at 2000/s is due after %v, want 1s", got)
	}
	if got := DueAt(start, 1, 3).Sub(start); got != 333333333*time.Nanosecond {
		t.Errorf("message 1 at 3/s is due after %v", got)
	}
}

func TestMessageKeepsTheEventID(t *testing.T) {
	m := Message(simulate.Message{Subject: "callevents.o.call.c.created", Data: []byte(`{}`), ID: "evt-1"})
	if m.ID != "evt-1" || m.Subject != "callevents.o.call.c.created" || string(m.Data) != "{}" {
		t.Errorf("Message = %+v", m)
	}
	if m := Message(simulate.Message{Subject: "s", ID: ""}); m.ID != "" {
		t.Errorf("a redelivery gets Nats-Msg-Id %q", m.ID)
	}
}
