package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/callreport/callreport/internal/analysts"
	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/pg"
	"github.com/callreport/callreport/schema"
)

func init() {
	register("analysts", "Postgres logins of analysts, who read one organization's rows in schema reporting: create, rotate, list, revoke", runAnalysts)
}

const analystsUsage = `Usage:
  reportctl analysts create --org ORG [--name NAME]   a login role that reads ORG's rows in schema reporting;
                                                     prints its connection URL, with its password, once
  reportctl analysts rotate NAME                     give it a new password; prints it, once
  reportctl analysts list                            the analysts' login roles and their organizations
  reportctl analysts revoke NAME [--yes]             end its sessions and drop its role (drop NAME: the same)

An analyst is a login role of the group role --group (callreport_analyst,
made by deploy/postgres/roles.sql, given its rights by grants.sql): it reads
the views of schema reporting (calls, jobs, path_entries, billing_lines,
timeline_events, call_rollups), which show it its organization's rows only,
and nothing else; every statement of it stops after --statement-timeout, and
it holds at most --connection-limit connections. Run these with the
DATABASE_URL of a role that may create roles and write analyst_orgs (the
DBA's). The URL printed by create is DATABASE_URL's server and database
with the new role and password: on stdout, alone on its line, never logged;
Postgres receives a SCRAM verifier, never the password, so its statement
log does not hold it either. Without --name the role is analyst_ and 8
random hex digits.

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
	org := fs.String("org", "", "the organization whose rows the analyst reads (create, required)")
	name := fs.String("name", "", "the analyst's login role (create)")
	timeout := fs.Duration("statement-timeout", time.Minute, "the analyst's statement timeout (create)")
	connLimit := fs.Int("connection-limit", 4, "the analyst's connections at most (create)")
	yes := fs.Bool("yes", false, "revoke without asking (revoke)")
	pos, err := cli.ParseInterspersed(fs, args)
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
	if sub == "drop" { // its name before analysts had organizations
		sub = "revoke"
	}
	if sub == "create" && len(pos) == 1 { // create NAME, as before --name
		if *name != "" && *name != pos[0] {
			return usage("create: two names, %s and --name %s", strconv.Quote(pos[0]), strconv.Quote(*name))
		}
		*name, pos = pos[0], nil
	}
	want := map[string]int{"create": 0, "rotate": 1, "revoke": 1, "list": 0}
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
	case sub == "create" && *org == "":
		return usage("create: --org ORG is required: an analyst reads one organization's rows (analysts create --org ORG [--name NAME])")
	case sub == "create" && !schema.ValidID(*org):
		return usage("create: --org %s is not a valid organization id", strconv.Quote(*org))
	case sub == "create" && *name != "" && !pg.RoleName.MatchString(*name):
		return usage("--name %s is not a role name: lower-case letters, digits and _, at most 63", strconv.Quote(*name))
	}

	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	switch sub {
	case "list":
		return listAnalysts(ctx, pool, *group, stdout)
	case "revoke":
		if err := pg.CheckAnalyst(ctx, pool, *group, pos[0]); err != nil {
			return err
		}
		if err := cli.Confirm(stderr, *yes, "revoke the analyst "+pos[0]+": end its sessions and drop its login role"); err != nil {
			return err
		}
		ended, err := analysts.Revoke(ctx, pool, *group, pos[0])
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "revoked analyst %s (%d open sessions ended)\n", pos[0], ended)
		return nil
	case "rotate":
		password, err := analysts.Rotate(ctx, pool, *group, pos[0])
		if err != nil {
			return err
		}
		// The one secret reportctl prints: on stdout, once, for the caller.
		fmt.Fprintln(stdout, password)
		fmt.Fprintf(stderr, "analyst %s: the password above is shown only this once\n", pos[0])
		return nil
	}

	if *name == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		*name = "analyst_" + hex.EncodeToString(b)
	}
	created, err := analysts.Create(ctx, pool, cfg.Database.URL.Value(), analysts.Spec{
		Group: *group, Name: *name, Org: *org, StatementTimeout: *timeout, ConnLimit: *connLimit})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "created analyst %s, reading organization %s (statement timeout %s, at most %d connections); its URL, below, holds its password and is shown only this once\n",
		created.Name, cli.Printable(*org), *timeout, *connLimit)
	fmt.Fprintln(stdout, created.URL)
	return nil
}

func listAnalysts(ctx context.Context, pool *pgxpool.Pool, group string, w io.Writer) error {
	list, err := analysts.List(ctx, pool, group)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ANALYST\tORG\tLOGIN\tCONNECTIONS\tSTATEMENT TIMEOUT")
	for _, a := range list {
		org, conns, timeout := cli.Printable(a.Org), strconv.Itoa(a.ConnLimit), a.StatementTimeout
		if org == "" {
			org = "-" // made before analysts had organizations: reads nothing
		}
		if a.ConnLimit < 0 {
			conns = "no limit"
		}
		if timeout == "" {
			timeout = "none"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", cli.Printable(a.Name), org, a.CanLogin, conns, cli.Printable(timeout))
	}
	return tw.Flush()
}
