package query

import (
	"context"
	"fmt"
	"strconv"

	"github.com/callreport/callreport/query/store"
)

// piecesFrom is the size of a kept call report from which it is read again
// in pieces: a call with some thousands of execution-path entries, whose
// events change its head, its rest or one chunk of 100 entries at a time.
// Reading only those and patching the copy kept costs the index lookups
// and some 10 KB, where reading it whole costs assembling, sending and
// copying up to the megabyte of a call at the contract's bound, each time
// it changes (docs/performance.md, "Fat call"). Smaller reports are read
// whole, in one row.
const piecesFrom = 64 << 10

// docPiece is a chunk of a call's execution path (call_path_chunks) within
// a kept report: its number, its version (the xmin of its row: a change
// rewrites the row, so a version names one text of the chunk) and where
// its text is in the report.
type docPiece struct {
	chunk      int64
	version    string
	start, end int
}

// callReportPieces reads the report of call id again in pieces, naming the
// chunks of kept's, and assembles it: head, chunks separated by commas,
// rest (migration 00015), the chunks still the same copied from kept.
func (s *Server) callReportPieces(ctx context.Context, id, org string, known []string, kept *cachedDoc) (docRead, error) {
	have := make([]string, len(kept.pieces))
	held := make(map[int64]docPiece, len(kept.pieces))
	for i, p := range kept.pieces {
		have[i] = strconv.FormatInt(p.chunk, 10) + ":" + p.version
		held[p.chunk] = p
	}
	if known == nil {
		known = []string{}
	}
	rows, err := s.q.CallReportPieces(ctx, s.pool, store.CallReportPiecesParams{KnownEtags: known, CallID: id, OrgID: org, Have: have})
	if err != nil {
		return docRead{}, err
	}
	if len(rows) == 0 {
		return docRead{}, errCallNotFound
	}
	read := docRead{etag: rows[0].Etag}
	if rows[0].Held {
		return read, nil // the etag is known: left unassembled
	}
	size := 0
	for _, r := range rows {
		if r.Held {
			p := held[r.Chunk]
			size += p.end - p.start
		}
		size += len(r.Piece) + 1
	}
	doc := make([]byte, 0, size)
	first := true
	for _, r := range rows {
		if r.Part != 1 {
			doc = append(doc, r.Piece...)
			continue
		}
		if !first {
			doc = append(doc, ',')
		}
		first = false
		start := len(doc)
		if r.Held {
			p, ok := held[r.Chunk]
			if !ok || p.version != r.Version {
				return docRead{}, fmt.Errorf("chunk %d of call %q came as held at version %s, which is not kept", r.Chunk, id, r.Version)
			}
			doc = append(doc, kept.doc[p.start:p.end]...)
		} else {
			doc = append(doc, r.Piece...)
		}
		read.pieces = append(read.pieces, docPiece{chunk: r.Chunk, version: r.Version, start: start, end: len(doc)})
	}
	read.doc = doc
	return read, nil
}
