package main

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/projector"
)

// TestGenerations lists the generations, switches back to a retired one
// while events keep coming (it is caught up with what it missed, and the
// live projector goes on on it), and drops the other.
func TestGenerations(t *testing.T) {
	s := startService(t)
	ctx := context.Background()
	s.WaitPosition(s.simulate(60, 21))
	if _, err := s.reportctl(ctx, "rebuild", "--yes"); err != nil {
		t.Fatal(err)
	}
	// Generation 2 is live; 1 is retired and misses what comes next.
	s.WaitPosition(s.simulate(60, 22))
	onTwo := s.checksum()

	out, err := s.reportctl(ctx, "generations", "list")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reportctl generations list:\n%s", out)
	for _, want := range []string{
		`(?m)^GENERATION +STATE +FOLD VERSION +FROM +SCHEMA +CREATED +SWITCHED +RETIRED$`,
		`(?m)^1 +retired +\d+ +seq 1 +callreport_gen_1 `,
		`(?m)^2 +live +\d+ +seq 1 +public `,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("generations list does not match %s", want)
		}
	}

	if _, err := s.reportctl(ctx, "generations", "switch", "1"); !errors.Is(err, cli.ErrNotConfirmed) {
		t.Fatalf("switch without --yes: %v", err)
	}
	out, err = s.reportctl(ctx, "generations", "switch", "1", "--yes")
	if err != nil || out != "generation 1 is live\n" {
		t.Fatalf("switch 1: %v %q", err, out)
	}
	// Caught up: it digests like the generation it replaced, position
	// included, and the live projector goes on on it.
	if back := s.checksum(); back.Total != onTwo.Total {
		t.Fatalf("generation 1 after the switch digests differently from generation 2:\n%+v\n%+v", back, onTwo)
	}
	last := s.simulate(20, 23)
	s.WaitPosition(last)
	out, err = s.reportctl(ctx, "generations", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var gens []projector.Generation
	if err := json.Unmarshal([]byte(out), &gens); err != nil {
		t.Fatalf("generations list --json: %v\n%s", err, out)
	}
	if len(gens) != 2 || gens[0].State != "live" || gens[0].Schema != "public" || gens[1].State != "retired" || gens[1].Schema != "callreport_gen_2" {
		t.Fatalf("after switching back: %+v", gens)
	}
	if d := s.checksum(); d.Total == onTwo.Total {
		t.Fatal("events after the switch did not reach the reports")
	}
	if n, err := s.Streams.JetStream().Consumer(ctx, s.NATS.Stream, s.NATS.Consumer+"-gen1"); err == nil {
		t.Errorf("the catch-up consumer %s is left", n.CachedInfo().Name)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"generations", "switch", "1", "--yes"}, "live already"},
		{[]string{"generations", "drop", "1", "--yes"}, "only a retired generation"},
		{[]string{"generations", "switch", "9", "--yes"}, "no such generation"},
	} {
		if _, err := s.reportctl(ctx, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if _, err := s.reportctl(ctx, "generations", "drop", "2"); !errors.Is(err, cli.ErrNotConfirmed) {
		t.Fatalf("drop without --yes: %v", err)
	}
	out, err = s.reportctl(ctx, "generations", "drop", "2", "--yes")
	if err != nil || out != "dropped generation 2\n" {
		t.Fatalf("drop 2: %v %q", err, out)
	}
	var schemas int
	_ = s.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'callreport_gen_2'`).Scan(&schemas)
	if schemas != 0 {
		t.Error("the tables of generation 2 are still there")
	}
	if _, err := s.reportctl(ctx, "generations", "switch", "2", "--yes"); err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Errorf("switch to a dropped generation: %v", err)
	}
}

func TestGenerationsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"generations"},
		{"generations", "frobnicate"},
		{"generations", "switch"},
		{"generations", "switch", "x"},
		{"generations", "switch", "0"},
		{"generations", "drop", "1", "2"},
		{"generations", "list", "1"},
		{"generations", "list", "--yes"},
		{"generations", "drop", "1", "--allow-partial"},
	} {
		var out, errOut lockedBuffer
		if err := run(context.Background(), args, &out, &errOut); !errors.Is(err, errUsage) || !strings.Contains(errOut.String(), "Usage:") {
			t.Errorf("%q: %v\n%s", args, err, errOut.String())
		}
	}
}
