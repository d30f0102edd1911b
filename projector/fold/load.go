package fold

import (
	"fmt"

	"github.com/callreport/callreport/schema"
)

// What a batch must have in hand before it folds: the states of the calls
// and jobs its events name, and the entries its events would set. The
// projector loads them from the tables; everything else about a call is in
// its counts.

// PathKey, VarKey, LineKey and EventKey name an entry of a call.
type (
	PathKey struct {
		Call  string
		Index int64
	}
	VarKey struct {
		Call string
		Name string
	}
	LineKey struct {
		Call string
		Node string
	}
	EventKey struct {
		Call string
		ID   string
	}
)

// Touched is what a batch of events needs loaded.
type Touched struct {
	Calls    []string
	Jobs     []string // named by the events; the jobs of the calls come with the calls
	Path     []PathKey
	Vars     []VarKey
	Billing  []LineKey
	Timeline []EventKey
}

// TouchedBy lists what the events of a batch need, each once.
func TouchedBy(events []*schema.Event) Touched {
	var t Touched
	seen := map[any]bool{}
	add := func(k any) bool {
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	}
	for _, ev := range events {
		if ev == nil || ev.Data == nil {
			continue
		}
		if id := ev.CallID; id != "" && add("c:"+id) {
			t.Calls = append(t.Calls, id)
		}
		if id := ev.JobID; id != "" && add("j:"+id) {
			t.Jobs = append(t.Jobs, id)
		}
		switch d := ev.Data.(type) {
		case *schema.FlowNodeEnteredData:
			if k := (PathKey{ev.CallID, d.ExecutionIndex}); add(k) {
				t.Path = append(t.Path, k)
			}
		case *schema.FlowNodeExitedData:
			if k := (PathKey{ev.CallID, d.ExecutionIndex}); add(k) {
				t.Path = append(t.Path, k)
			}
		case *schema.FlowVariablesData:
			for name := range d.Variables {
				if k := (VarKey{ev.CallID, name}); add(k) {
					t.Vars = append(t.Vars, k)
				}
			}
		case *schema.BillingNodeCostData:
			if k := (LineKey{ev.CallID, d.NodeID}); add(k) {
				t.Billing = append(t.Billing, k)
			}
		case *schema.CallEventData:
			if k := (EventKey{ev.CallID, ev.ID}); add(k) {
				t.Timeline = append(t.Timeline, k)
			}
		}
	}
	return t
}

// StoredPath is a stored execution-path entry.
type StoredPath struct {
	Entered, Exited []byte // stamp keys; Exited nil until the node exits
	Node            Node
	OutputPath      *string
	Size            int // length of its fragment
}

// LoadPath puts a stored path entry in hand.
func (c *Call) LoadPath(idx int64, p StoredPath) error {
	s, err := ParseKey(p.Entered)
	if err != nil {
		return fmt.Errorf("path entry %d: %w", idx, err)
	}
	e := &PathEntry{entry: entry{Size: p.Size, Stored: true}, Entered: &Reg[Node]{S: s, V: p.Node}}
	if p.Exited != nil {
		x, err := ParseKey(p.Exited)
		if err != nil || p.OutputPath == nil {
			return fmt.Errorf("path entry %d: exit %v", idx, err)
		}
		e.Exited = &Reg[string]{S: x, V: *p.OutputPath}
	}
	if c.Path == nil {
		c.Path = map[int64]*PathEntry{}
	}
	c.Path[idx] = e
	return nil
}

// LoadVar puts a stored variable in hand: its stamp and fragment size are
// what a later write needs of it.
func (c *Call) LoadVar(name string, stamp []byte, size int) error {
	s, err := ParseKey(stamp)
	if err != nil {
		return fmt.Errorf("variable %q: %w", name, err)
	}
	if c.Vars == nil {
		c.Vars = map[string]*Var{}
	}
	c.Vars[name] = &Var{entry: entry{Size: size, Stored: true}, S: s}
	return nil
}

// LoadLine puts a stored billing line in hand: its stamp, cost and fragment
// size are what a later write needs of it.
func (c *Call) LoadLine(node string, stamp []byte, cost schema.Number, size int) error {
	s, err := ParseKey(stamp)
	if err != nil {
		return fmt.Errorf("billing line %q: %w", node, err)
	}
	if c.Billing == nil {
		c.Billing = map[string]*Line{}
	}
	c.Billing[node] = &Line{entry: entry{Size: size, Stored: true}, S: s, V: schema.BillingNodeCostData{NodeID: node, Cost: cost}}
	return nil
}

// LoadEvent puts a stored timeline entry in hand.
func (c *Call) LoadEvent(id string, stamp []byte, size int) error {
	s, err := ParseKey(stamp)
	if err != nil {
		return fmt.Errorf("timeline entry %q: %w", id, err)
	}
	if c.Timeline == nil {
		c.Timeline = map[string]*Event{}
	}
	c.Timeline[id] = &Event{entry: entry{Size: size, Stored: true}, S: s}
	return nil
}

// Stored marks everything in hand as written, keeping it in hand.
func (s *Set) Stored() {
	for _, c := range s.Calls {
		c.Stored = true
		for _, e := range c.Path {
			e.Stored = true
		}
		for _, e := range c.Vars {
			e.Stored = true
		}
		for _, e := range c.Billing {
			e.Stored = true
		}
		for _, e := range c.Timeline {
			e.Stored = true
		}
	}
	for _, j := range s.Jobs {
		j.Stored = true
	}
	s.ClearChanged()
}
