package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pg"
)

func init() {
	register("analysts", "Postgres logins of analysts, who read the report tables: create, rotate, list, drop", runAnalysts)
}

const analystsUsage = `Usage:
  reportctl analysts create NAME     a login role that reads the report tables; prints its password, once
  reportctl analysts rotate NAME     give it a new password; prints it, once
  reportctl analysts list            the analysts' login roles
  reportctl analysts drop NAME [--yes]

An analyst is a login role of the group role --group (callreport_analyst,
made by deploy/postgres/roles.sql, given its rights by grants.sql): it reads
jobs, call_attempts and their child tables, nothing else. Run these with the
DATABASE_URL of a role that may create roles (the DBA's). The password is
printed on stdout only, never logged; Postgres receives a SCRAM verifier,
never the password, so its statement log does not hold it either.

Flags (and the database flags):
`

func runAnalysts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("reportctl analysts", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, analystsUsage)
		fs.PrintDefaults()
	}
	cfg := config.Register(fs, config.SectionAll)
	group := fs.String("group", "callreport_analyst", "the group role of the analysts")
	yes := fs.Bool("yes", false, "drop without asking (drop)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	usage := func(format string, args ...any) error {
		fmt.Fprintf(stderr, "reportctl analysts: "+format+"\n\n", args...)
		fs.Usage()
		return errUsage
	}
	if len(pos) == 0 {
		fs.Usage()
		return errUsage
	}
	sub, pos := pos[0], pos[1:]
	want := map[string]int{"create": 1, "rotate": 1, "drop": 1, "list": 0}
	n, ok := want[sub]
	switch {
	case !ok:
		return usage("unknown subcommand %q", sub)
	case len(pos) != n:
		return usage("%s: want %d argument(s)", sub, n)
	case !pg.RoleName.MatchString(*group):
		return usage("--group %s is not a role name", strconv.Quote(*group))
	case n == 1 && !pg.RoleName.MatchString(pos[0]):
		return usage("%s is not a role name: lower-case letters, digits and _, at most 63", strconv.Quote(pos[0]))
	}

	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch sub {
	case "list":
		return listAnalysts(ctx, pool, *group, stdout)
	case "drop":
		if err := pg.CheckAnalyst(ctx, pool, *group, pos[0]); err != nil {
			return err
		}
		if err := cli.Confirm(stderr, *yes, "drop the login role "+pos[0]); err != nil {
			return err
		}
		if err := pg.DropAnalyst(ctx, pool, *group, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "dropped analyst %s\n", pos[0])
		return nil
	}

	name := pos[0]
	var password string
	if sub == "create" {
		password, err = pg.CreateAnalyst(ctx, pool, *group, name)
	} else {
		password, err = pg.RotateAnalyst(ctx, pool, *group, name)
	}
	if err != nil {
		return err
	}
	// The one secret reportctl prints: on stdout, once, for the caller.
	fmt.Fprintln(stdout, password)
	fmt.Fprintf(stderr, "analyst %s: the password above is shown only this once\n", name)
	return nil
}

func listAnalysts(ctx context.Context, pool *pgxpool.Pool, group string, w io.Writer) error {
	list, err := pg.ListAnalysts(ctx, pool, group)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ANALYST\tLOGIN")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%v\n", cli.Printable(a.Name), a.CanLogin)
	}
	return tw.Flush()
}
