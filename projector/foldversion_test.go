package projector

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/schema/schematest"
)

// TestFoldVersionMismatch: a projector refuses to run live on reports built
// by another fold version and says to rebuild; with RebuildOnMismatch it
// rebuilds first and then runs live on a generation of its own version.
func TestFoldVersionMismatch(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ex := schematest.Examples(t)[1]
	last := h.publish(ex.Lines[:1])
	// Reports built by "another version": the first event, projected, with
	// the live generation's version changed under it. (An empty
	// generation is taken by whatever version keeps it.)
	func() {
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		done := make(chan error, 1)
		go func() { done <- New(h.pool, h.s, h.cfg).Run(pctx) }()
		h.waitPosition(last)
		stop()
		<-done
	}()
	last = h.publish(ex.Lines[1:])
	if _, err := h.pool.Exec(ctx, `UPDATE callreport.generations SET fold_version = $1 WHERE state = 'live'`, fold.Version+1); err != nil {
		t.Fatal(err)
	}

	select {
	case err := <-h.start(h.cfg):
		if !errors.Is(err, ErrFoldVersion) || !strings.Contains(err.Error(), "reportctl rebuild") {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Run did not refuse")
	}

	cfg := h.cfg
	cfg.RebuildOnMismatch = true
	h.start(cfg)
	h.waitPosition(last)
	var live, version int
	err := h.pool.QueryRow(ctx, `SELECT generation, fold_version FROM callreport.generations WHERE state = 'live'`).Scan(&live, &version)
	if err != nil || live != 2 || version != fold.Version {
		t.Fatalf("live generation %d fold version %d (%v), want 2 and %d", live, version, err, fold.Version)
	}
	if got := h.report(ex.Kind, ex.ID); !schematest.JSONEqual(t, got, ex.Expected) {
		t.Fatalf("report after the rebuild differs:\n%s", got)
	}
}
