package query

import (
	"encoding/json"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// docCache keeps the reports last served, by kind, organization and id,
// with their etag, and the reports found missing. An entry is served from
// memory, without a statement, while it is current: nothing that could
// have changed it has been heard of since it was read. Otherwise the
// request passes the cached etag to its statement, which then leaves the
// report unassembled when it is still the same (as for an If-None-Match):
// a stale entry costs the index lookup, and is replaced.
//
// Current means that three counters read before the entry's statement
// still hold their values:
//   - the position generation (gens.position), which moves whenever the
//     projection position moves: an answer from memory is never older
//     than its X-Projection-Position header says, and ?minPosition=N waits
//     for a generation whose position is N or more, read after the commit
//     of N;
//   - the report's stripe, one of docStripes counters that the
//     notification naming the report moves as soon as it arrives, so that
//     a report changed by the projector is read again at once rather than
//     at the next read of the positions (up to freshEvery later), and a
//     notification makes only the reports it names (and their stripes)
//     stale;
//   - the epoch, which moves at a notification that names no report
//     ({"all":true}: a batch too large to name them, an erasure, a
//     generation switch) and whenever the connection that hears the
//     notifications is lost or made again.
//
// Counters only move forward, and each is read before the statement: a
// change committed after the read moves one of them after it, so the
// entry is stale from then on; a change committed before it is in what
// the statement read. On a hot standby the generation moves at every read
// of the positions (there are no notifications), so nothing is served
// from memory for more than freshEvery.
type docCache struct {
	mu    sync.RWMutex
	m     map[docKey]cachedDoc
	bytes int

	seed    maphash.Seed
	epoch   atomic.Uint64
	stripes [docStripes]atomic.Uint64
	// hearing: the notifications are heard (a connection LISTENs); no
	// entry is current without.
	hearing atomic.Bool
}

type docKey struct {
	kind    byte // 'c'all or 'j'ob
	org, id string
}

// cachedDoc is a report with its etag, or (doc nil) a report not found;
// pieces, where doc was read in pieces, are where the chunks of its
// execution path are in it.
type cachedDoc struct {
	etag   string
	doc    []byte
	pieces []docPiece
	mark   docMark
}

// docMark is the three counters an entry was read under.
type docMark struct{ gen, stripe, epoch uint64 }

const (
	// Bounds of docCache; past either it starts over.
	docCacheEntries = 20000
	docCacheBytes   = 64 << 20
	// docStripes: a notification naming a report makes the entries of
	// about 1/docStripes of the reports stale, that one's included.
	docStripes = 4096
)

func newDocCache() *docCache {
	return &docCache{m: map[docKey]cachedDoc{}, seed: maphash.MakeSeed()}
}

func (d *docCache) stripe(kind byte, id string) *atomic.Uint64 {
	var h maphash.Hash
	h.SetSeed(d.seed)
	h.WriteByte(kind)
	h.WriteString(id)
	return &d.stripes[h.Sum64()%docStripes]
}

// mark is the counters of k now, with gen, the position generation the
// request's headers were set from; read it before the statement.
func (d *docCache) mark(k docKey, gen uint64) docMark {
	return docMark{gen: gen, stripe: d.stripe(k.kind, k.id).Load(), epoch: d.epoch.Load()}
}

// get is the entry of k, and whether it is current under m.
func (d *docCache) get(k docKey, m docMark) (e cachedDoc, ok, current bool) {
	d.mu.RLock()
	e, ok = d.m[k]
	d.mu.RUnlock()
	return e, ok, ok && e.mark == m && d.hearing.Load()
}

// put keeps e, unless the epoch moved since its mark was read: the entries
// of before an epoch are dropped with it (a replay rewrites reports under
// the same etag).
func (d *docCache) put(k docKey, e cachedDoc) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e.mark.epoch != d.epoch.Load() {
		return
	}
	if old, ok := d.m[k]; ok {
		d.bytes -= len(old.doc)
	}
	if len(d.m) >= docCacheEntries || d.bytes+len(e.doc) > docCacheBytes {
		clear(d.m)
		d.bytes = 0
	}
	d.m[k] = e
	d.bytes += len(e.doc)
}

// notified takes the payload of a notification of the projector
// (projector/writer.go): {"calls":{id:version},"jobs":{...}}, or
// {"all":true}.
func (d *docCache) notified(payload string) {
	var n notification
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.All {
		d.newEpoch()
		return
	}
	for id := range n.Calls {
		d.stripe('c', id).Add(1)
	}
	for id := range n.Jobs {
		d.stripe('j', id).Add(1)
	}
}

// heard says whether notifications are heard from now on: the connection
// that hears them LISTENs (true), or was lost (false). Either way those of
// before may have been missed.
func (d *docCache) heard(listening bool) {
	d.hearing.Store(listening)
	d.newEpoch()
}

// newEpoch moves the epoch and drops every entry.
func (d *docCache) newEpoch() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.epoch.Add(1)
	clear(d.m)
	d.bytes = 0
}
