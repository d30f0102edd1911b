package projector

import (
	"encoding/json"
	"fmt"
	"testing"
)

// TestNotification: the reports a batch wrote go to the query processes
// with their versions, within NOTIFY's 8,000 bytes; too many to name say
// {"all":true}.
func TestNotification(t *testing.T) {
	got := notification(versions{Calls: map[string]uint64{"c2": 9, "c1": 7}, Jobs: map[string]uint64{"j1": 9}})
	if want := `{"calls":{"c1":7,"c2":9},"jobs":{"j1":9}}`; got != want {
		t.Errorf("notification %s, want %s", got, want)
	}
	if got := notification(versions{Calls: map[string]uint64{}}); got != `{}` {
		t.Errorf("nothing written: %s, want {}", got)
	}
	many := versions{Calls: map[string]uint64{}}
	for i := 0; len(notification(many)) < maxNotification-100; i++ {
		many.Calls[fmt.Sprintf("call-%036d", i)] = uint64(i)
	}
	if n := notification(many); n == `{"all":true}` || len(n) > 8000 {
		t.Errorf("%d calls: %d bytes, %.20s…", len(many.Calls), len(n), n)
	} else {
		var back versions
		if err := json.Unmarshal([]byte(n), &back); err != nil || len(back.Calls) != len(many.Calls) {
			t.Errorf("does not read back: %v, %d calls", err, len(back.Calls))
		}
	}
	for i := 0; i < 10; i++ {
		many.Calls[fmt.Sprintf("more-%036d", i)] = 1
	}
	if n := notification(many); n != `{"all":true}` {
		t.Errorf("%d calls: %d bytes, want {\"all\":true}", len(many.Calls), len(n))
	}
}
