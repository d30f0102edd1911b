package projector

import (
	"encoding/json"
	"fmt"
	"maps"
	"testing"
)

// TestNotifications: the reports a batch wrote go to the query processes
// with their versions, each notification within NOTIFY's 8,000 bytes, as
// many as it takes up to maxNotifications; more say {"all":true}.
func TestNotifications(t *testing.T) {
	got := notifications(versions{Calls: map[string]uint64{"c2": 9, "c1": 7}, Jobs: map[string]uint64{"j1": 9}})
	if want := `{"calls":{"c1":7,"c2":9},"jobs":{"j1":9}}`; len(got) != 1 || got[0] != want {
		t.Errorf("notifications %q, want [%s]", got, want)
	}
	if got := notifications(versions{Jobs: map[string]uint64{"j\"1": 12}}); len(got) != 1 || got[0] != `{"jobs":{"j\"1":12}}` {
		t.Errorf("a job alone: %q", got)
	}
	if got := notifications(versions{Calls: map[string]uint64{}}); len(got) != 1 || got[0] != `{}` {
		t.Errorf("nothing written: %q, want [{}]", got)
	}

	for _, n := range []int{150, 151, 2000, 8000} {
		many := versions{Calls: map[string]uint64{}, Jobs: map[string]uint64{}}
		for i := range n {
			many.Calls[fmt.Sprintf("call-%036d", i)] = uint64(i) * 1_000_003
			if i%3 == 0 {
				many.Jobs[fmt.Sprintf("job-%d", i)] = uint64(i)
			}
		}
		payloads := notifications(many)
		back := versions{Calls: map[string]uint64{}, Jobs: map[string]uint64{}}
		for _, p := range payloads {
			if len(p) > maxNotification {
				t.Fatalf("%d calls: a payload of %d bytes", n, len(p))
			}
			var v versions
			if err := json.Unmarshal([]byte(p), &v); err != nil {
				t.Fatalf("%d calls: %v in %.40s…", n, err, p)
			}
			maps.Copy(back.Calls, v.Calls)
			maps.Copy(back.Jobs, v.Jobs)
		}
		if !maps.Equal(back.Calls, many.Calls) || !maps.Equal(back.Jobs, many.Jobs) {
			t.Errorf("%d calls: %d payloads name %d calls and %d jobs, want %d and %d", n, len(payloads),
				len(back.Calls), len(back.Jobs), len(many.Calls), len(many.Jobs))
		}
		// Full payloads: no more than one per maxNotification bytes named.
		if size := len(n2s(payloads)); len(payloads) > size/(maxNotification-100)+1 {
			t.Errorf("%d calls in %d payloads of %d bytes in all", n, len(payloads), size)
		}
	}

	many := versions{Calls: map[string]uint64{}}
	for i := 0; i < 20_000; i++ {
		many.Calls[fmt.Sprintf("call-%036d", i)] = 1
	}
	if got := notifications(many); len(got) != 1 || got[0] != `{"all":true}` {
		t.Errorf("20,000 calls: %d payloads, want [{\"all\":true}]", len(got))
	}
}

func n2s(payloads []string) string {
	var s string
	for _, p := range payloads {
		s += p
	}
	return s
}
