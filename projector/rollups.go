package projector

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
	"github.com/callreport/callreport/schema"
)

// The rollups behind the statistics and the funnels are sums of what each
// call contributes. A batch takes, for every call it touches, the
// contribution the call had when loaded (before) and the one it has after
// folding, and adds the difference; so the rollups equal a count over the
// reports whatever the order and batching of the events.

var (
	rollupsTable = table{"call_rollups", []string{"org_id", "bucket", "outcome", "program_id", "flow_id", "direction", "part"},
		[]string{"org_id", "bucket", "outcome", "program_id", "flow_id", "direction", "part", "calls", "answered", "duration_ms", "total_cost"}, true}
	callNodesTable = table{"call_nodes", []string{"call_id", "node_id"}, []string{"call_id", "node_id", "org_id", "visits", "exits", "cost"}, false}
	funnelsTable   = table{"flow_funnels", []string{"org_id", "flow_id", "bucket", "node_id", "part"},
		[]string{"org_id", "flow_id", "bucket", "node_id", "part", "calls", "cost"}, true}
	funnelExitsTable = table{"flow_funnel_exits", []string{"org_id", "flow_id", "bucket", "node_id", "output_path", "part"},
		[]string{"org_id", "flow_id", "bucket", "node_id", "output_path", "part", "exits"}, true}
)

// before is what the calls of a batch contributed when loaded.
type before struct {
	rollup map[string]rollupAt
	funnel map[string]fold.FunnelKey // calls with a funnel key
	path   map[fold.PathKey][2]string
	cost   map[fold.LineKey]schema.Number
}

type rollupAt struct {
	k fold.RollupKey
	v fold.RollupValue
}

// snapshot takes what the loaded calls contribute, before the batch folds.
func snapshot(set *fold.Set) *before {
	b := &before{rollup: map[string]rollupAt{}, funnel: map[string]fold.FunnelKey{},
		path: map[fold.PathKey][2]string{}, cost: map[fold.LineKey]schema.Number{}}
	for id, c := range set.Calls {
		if k, v, ok := c.Rollup(); ok {
			b.rollup[id] = rollupAt{k, v}
		}
		if k, ok := c.Funnel(); ok {
			b.funnel[id] = k
		}
		for idx, e := range c.Path {
			node, out := e.Node()
			b.path[fold.PathKey{Call: id, Index: idx}] = [2]string{node, out}
		}
		for node, l := range c.Billing {
			b.cost[fold.LineKey{Call: id, Node: node}] = l.Cost()
		}
	}
	return b
}

// rollupSums adds contributions by key.
type rollupSums map[fold.RollupKey]fold.RollupValue

func (s rollupSums) add(k fold.RollupKey, v fold.RollupValue, sign int64) {
	t := s[k]
	t.Calls += sign * v.Calls
	t.Answered += sign * v.Answered
	t.DurationMs += sign * v.DurationMs
	cost := v.TotalCost
	if sign < 0 {
		cost = fold.Negate(cost)
	}
	t.TotalCost = fold.Sum(t.TotalCost, cost)
	s[k] = t
}

// rollupRows are the changes of call_rollups the changed calls make.
func (w *Writer) rollupRows(set *fold.Set, was *before, calls []string) (rows, error) {
	sums := rollupSums{}
	for _, id := range calls {
		old, hadOld := was.rollup[id]
		k, v, ok := set.Calls[id].Rollup()
		if hadOld && ok && old.k == k && old.v == v {
			continue
		}
		if hadOld {
			sums.add(old.k, old.v, -1)
		}
		if ok {
			sums.add(k, v, +1)
		}
	}
	return sums.rows(w.part, false)
}

// rows are the sums as rows of partition part, in key order; without
// zeros unless keepZeros.
func (s rollupSums) rows(part int32, keepZeros bool) (rows, error) {
	var r rows
	for _, k := range slices.SortedFunc(maps.Keys(s), compareRollupKeys) {
		v := s[k]
		if !keepZeros && v == (fold.RollupValue{TotalCost: v.TotalCost}) && (v.TotalCost == "" || v.TotalCost == "0") {
			continue
		}
		cost, err := numeric(ptr(fold.Sum(v.TotalCost)))
		if err != nil {
			return r, err
		}
		r.add(false, []any{k.OrgID, k.Bucket, k.Outcome, k.ProgramID, k.FlowID, k.Direction, part,
			v.Calls, v.Answered, v.DurationMs, cost})
	}
	return r, nil
}

func compareRollupKeys(a, b fold.RollupKey) int {
	return cmp.Or(strings.Compare(a.OrgID, b.OrgID), a.Bucket.Compare(b.Bucket), strings.Compare(a.Outcome, b.Outcome),
		strings.Compare(a.ProgramID, b.ProgramID), strings.Compare(a.FlowID, b.FlowID), strings.Compare(a.Direction, b.Direction))
}

func ptr[T any](v T) *T { return &v }

// callNode is one call's doings at one node (call_nodes).
type callNode struct {
	visits int64
	exits  map[string]int64
	cost   schema.Number // "" without a billing line
}

func (n callNode) clone() callNode {
	return callNode{visits: n.visits, exits: maps.Clone(n.exits), cost: n.cost}
}

type nodeKey struct{ call, node string }

// funnelAt is a node under a funnel key (a row of flow_funnels); exitAt
// one of its outputs (of flow_funnel_exits).
type funnelAt struct {
	fold.FunnelKey
	node string
}

type exitAt struct {
	funnelAt
	out string
}

// compareFunnels orders the rows of flow_funnels by their keys, as every
// writer writes them.
func compareFunnels(a, b funnelAt) int {
	return cmp.Or(strings.Compare(a.OrgID, b.OrgID), strings.Compare(a.FlowID, b.FlowID), a.Bucket.Compare(b.Bucket),
		strings.Compare(a.node, b.node))
}

func compareExits(a, b exitAt) int {
	return cmp.Or(compareFunnels(a.funnelAt, b.funnelAt), strings.Compare(a.out, b.out))
}

// funnelRows are the changes a batch makes to call_nodes and the funnels:
// the nodes whose entries or billing lines changed, and every node of a
// call whose funnel key (flow, bucket) changed.
func (w *Writer) funnelRows(ctx context.Context, tx pgx.Tx, set *fold.Set, was *before, calls []string) (nodes, funnels, exits rows, err error) {
	delta := map[nodeKey]*callNode{}
	at := func(call, node string) *callNode {
		k := nodeKey{call, node}
		if delta[k] == nil {
			delta[k] = &callNode{exits: map[string]int64{}}
		}
		return delta[k]
	}
	costs := map[nodeKey]schema.Number{} // a line's cost, absolute
	var moved []string                   // calls whose funnel key changed
	for _, id := range calls {
		c := set.Calls[id]
		for idx, e := range c.Path {
			if !e.Changed {
				continue
			}
			if old, ok := was.path[fold.PathKey{Call: id, Index: idx}]; ok {
				d := at(id, old[0])
				d.visits--
				if old[1] != "" {
					d.exits[old[1]]--
				}
			}
			node, out := e.Node()
			d := at(id, node)
			d.visits++
			if out != "" {
				d.exits[out]++
			}
		}
		for node, l := range c.Billing {
			if l.Changed {
				at(id, node)
				costs[nodeKey{id, node}] = l.Cost()
			}
		}
		oldKey, hadOld := was.funnel[id]
		newKey, hasNew := c.Funnel()
		if hadOld != hasNew || oldKey != newKey {
			moved = append(moved, id)
		}
	}
	if len(delta) == 0 && len(moved) == 0 {
		return nodes, funnels, exits, nil
	}

	// The rows as they were: of the touched nodes, and all of a moved call;
	// a call without a stored state has none.
	old := map[nodeKey]callNode{}
	p := store.CallNodesGetParams{}
	for k := range delta {
		if set.Calls[k.call].Stored {
			p.CallIds, p.NodeIds = append(p.CallIds, k.call), append(p.NodeIds, k.node)
		}
	}
	moved = slices.DeleteFunc(moved, func(id string) bool { return !set.Calls[id].Stored })
	keep := func(call, node string, visits int32, exits []byte, cost string) error {
		n, err := callNodeOf(visits, exits, cost)
		if err == nil {
			old[nodeKey{call, node}] = n
		}
		return err
	}
	err = together(ctx, tx,
		func(db store.DBTX) error {
			if len(p.CallIds) == 0 {
				return nil
			}
			got, err := w.q.CallNodesGet(ctx, db, p)
			if err != nil {
				return fmt.Errorf("load call nodes: %w", err)
			}
			for _, r := range got {
				if err := keep(r.CallID, r.NodeID, r.Visits, r.Exits, r.Cost); err != nil {
					return err
				}
			}
			return nil
		},
		func(db store.DBTX) error {
			if len(moved) == 0 {
				return nil
			}
			got, err := w.q.CallNodesOfCalls(ctx, db, moved)
			if err != nil {
				return fmt.Errorf("load call nodes: %w", err)
			}
			for _, r := range got {
				if err := keep(r.CallID, r.NodeID, r.Visits, r.Exits, r.Cost); err != nil {
					return err
				}
			}
			return nil
		})
	if err != nil {
		return nodes, funnels, exits, err
	}

	// The rows as they are now.
	now := map[nodeKey]callNode{}
	for k, n := range old {
		now[k] = n.clone()
	}
	for k, d := range delta {
		n := now[k].clone()
		if n.exits == nil {
			n.exits = map[string]int64{}
		}
		n.visits += d.visits
		for out, x := range d.exits {
			if n.exits[out] += x; n.exits[out] == 0 {
				delete(n.exits, out)
			}
		}
		if cost, ok := costs[k]; ok {
			n.cost = cost
		}
		now[k] = n
	}

	// What each row contributes, under the call's funnel key then and now.
	sums := newFunnelSums()
	for _, k := range slices.SortedFunc(maps.Keys(now), func(a, b nodeKey) int {
		return cmp.Or(strings.Compare(a.call, b.call), strings.Compare(a.node, b.node))
	}) {
		o, n := old[k], now[k]
		if oldKey, ok := was.funnel[k.call]; ok {
			sums.add(oldKey, k.node, o, -1)
		}
		if newKey, ok := set.Calls[k.call].Funnel(); ok {
			sums.add(newKey, k.node, n, +1)
		}
		exitsJSON, err := json.Marshal(n.exits)
		if err != nil {
			return nodes, funnels, exits, err
		}
		c, err := numeric(nullNumber(n.cost))
		if err != nil {
			return nodes, funnels, exits, err
		}
		nodes.add(false, []any{k.call, k.node, set.Calls[k.call].OrgID, int32(n.visits), exitsJSON, c})
	}
	funnels, exits, err = sums.rows(w.part, false)
	return nodes, funnels, exits, err
}

// funnelSums are changes of flow_funnels (calls reached, cost) and of
// flow_funnel_exits, by key.
type funnelSums struct {
	reached map[funnelAt]int64
	cost    map[funnelAt]schema.Number // every key added has one
	exits   map[exitAt]int64
}

func newFunnelSums() funnelSums {
	return funnelSums{reached: map[funnelAt]int64{}, cost: map[funnelAt]schema.Number{}, exits: map[exitAt]int64{}}
}

// add adds what node n of a call under key contributes, times sign.
func (s funnelSums) add(key fold.FunnelKey, node string, n callNode, sign int64) {
	f := funnelAt{key, node}
	if n.visits > 0 {
		s.reached[f] += sign
	}
	c := n.cost
	if sign < 0 {
		c = fold.Negate(c)
	}
	s.cost[f] = fold.Sum(s.cost[f], c)
	for out, x := range n.exits {
		s.exits[exitAt{f, out}] += sign * x
	}
}

// rows are the sums as rows of partition part, in key order; without
// zeros unless keepZeros.
func (s funnelSums) rows(part int32, keepZeros bool) (funnels, exits rows, err error) {
	for _, f := range slices.SortedFunc(maps.Keys(s.cost), compareFunnels) {
		c := fold.Sum(s.cost[f])
		if !keepZeros && s.reached[f] == 0 && c == "0" {
			continue
		}
		cn, err := numeric(&c)
		if err != nil {
			return funnels, exits, err
		}
		funnels.add(false, []any{f.OrgID, f.FlowID, f.Bucket, f.node, part, s.reached[f], cn})
	}
	for _, e := range slices.SortedFunc(maps.Keys(s.exits), compareExits) {
		if x := s.exits[e]; x != 0 || keepZeros {
			exits.add(false, []any{e.OrgID, e.FlowID, e.Bucket, e.node, e.out, part, x})
		}
	}
	return funnels, exits, nil
}

func nullNumber(n schema.Number) *schema.Number {
	if n == "" {
		return nil
	}
	return &n
}

func callNodeOf(visits int32, exits []byte, cost string) (callNode, error) {
	n := callNode{visits: int64(visits), cost: schema.Number(cost)}
	if err := json.Unmarshal(exits, &n.exits); err != nil {
		return n, fmt.Errorf("call node exits %s: %w", exits, err)
	}
	return n, nil
}

// retract takes out of the rollups what the calls contribute, before their
// rows are deleted (a replay folds them again, an erasure does not).
func (w *Writer) retract(ctx context.Context, tx pgx.Tx, callIDs []string) error {
	states, err := w.q.CallStatesGet(ctx, tx, callIDs)
	if err != nil {
		return fmt.Errorf("load call states: %w", err)
	}
	funnelOf := map[string]fold.FunnelKey{}
	sums := rollupSums{}
	for _, r := range states {
		c, err := fold.DecodeCall(r.State)
		if err != nil {
			return fmt.Errorf("decode state of call %s: %w", r.CallID, err)
		}
		if k, v, ok := c.Rollup(); ok {
			sums.add(k, v, -1)
		}
		if k, ok := c.Funnel(); ok {
			funnelOf[r.CallID] = k
		}
	}
	rollups, err := sums.rows(w.part, true)
	if err != nil {
		return err
	}
	nodes, err := w.q.CallNodesOfCalls(ctx, tx, callIDs)
	if err != nil {
		return fmt.Errorf("load call nodes: %w", err)
	}
	nodeSums := newFunnelSums()
	for _, r := range nodes {
		k, ok := funnelOf[r.CallID]
		if !ok {
			continue
		}
		n, err := callNodeOf(r.Visits, r.Exits, r.Cost)
		if err != nil {
			return err
		}
		nodeSums.add(k, r.NodeID, n, -1)
	}
	funnels, exits, err := nodeSums.rows(w.part, true)
	if err != nil {
		return err
	}
	return writeTables(ctx, tx, []table{rollupsTable, funnelsTable, funnelExitsTable}, []rows{rollups, funnels, exits})
}
