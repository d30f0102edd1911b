package query

import "sync"

// docCache keeps the reports last served, by organization and id, with
// their etag. A request passes the cached etag to its statement, which
// then leaves the report unassembled when it is still current (as for an
// If-None-Match): a hot report costs the index lookup, not the assembly of
// its pieces. The statement stays the one source of truth; a stale entry
// only costs the assembly, and is replaced.
type docCache struct {
	mu    sync.RWMutex
	m     map[docKey]cachedDoc
	bytes int
}

type docKey struct {
	kind    byte // 'c'all or 'j'ob
	org, id string
}

type cachedDoc struct {
	etag string
	doc  []byte
}

// Bounds of docCache; past either it starts over.
const (
	docCacheEntries = 20000
	docCacheBytes   = 64 << 20
)

func newDocCache() *docCache { return &docCache{m: map[docKey]cachedDoc{}} }

func (d *docCache) get(k docKey) (cachedDoc, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	e, ok := d.m[k]
	return e, ok
}

func (d *docCache) put(k docKey, e cachedDoc) {
	d.mu.Lock()
	defer d.mu.Unlock()
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
