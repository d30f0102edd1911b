package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/callreport/callreport/internal/cli"
	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/query"
	"github.com/callreport/callreport/schema"
)

func init() {
	register("keys", "manage the API keys of the report API: create, list, revoke", runKeys)
}

const keysUsage = `Usage:
  reportctl keys create --org ORG [--name NAME]   print a new key of ORG (shown once)
  reportctl keys list                             list every key
  reportctl keys revoke KEYID                     revoke a key

Each takes the database flags; run 'reportctl keys <subcommand> -h' for them.
`

func runKeys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, keysUsage)
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := flag.NewFlagSet("reportctl keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config.Register(fs, config.SectionAll)
	var org, name string
	wantArgs := 0
	switch sub {
	case "create":
		fs.StringVar(&org, "org", "", "organization the key reads the reports of (required)")
		fs.StringVar(&name, "name", "", "free text to tell keys apart")
	case "list":
	case "revoke":
		wantArgs = 1
	default:
		fmt.Fprintf(stderr, "reportctl keys: unknown subcommand %q\n\n%s", sub, keysUsage)
		return errUsage
	}
	pos, err := cli.ParseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != wantArgs {
		fmt.Fprintf(stderr, "reportctl keys %s: want %d argument(s), got %d\n\n%s", sub, wantArgs, len(pos), keysUsage)
		return errUsage
	}
	if sub == "create" && org == "" {
		fmt.Fprintf(stderr, "reportctl keys create: --org is required\n\n%s", keysUsage)
		return errUsage
	}
	if sub == "create" && !schema.ValidID(org) {
		fmt.Fprintf(stderr, "reportctl keys create: --org %s is not a valid organization id\n", strconv.Quote(org))
		return errUsage
	}
	if sub == "revoke" && !schema.ValidID(pos[0]) {
		fmt.Fprintf(stderr, "reportctl keys revoke: %s is not a key id (see reportctl keys list)\n", strconv.Quote(pos[0]))
		return errUsage
	}

	pool, err := openDB(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	switch sub {
	case "create":
		key, id, err := query.CreateKey(ctx, pool, org, name)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, key)
		fmt.Fprintf(stderr, "created key %s for organization %s; it is shown only this once\n", id, org)
	case "list":
		keys, err := query.ListKeys(ctx, pool)
		if err != nil {
			return err
		}
		writeKeys(stdout, keys)
	case "revoke":
		if err := query.RevokeKey(ctx, pool, pos[0]); err != nil {
			if errors.Is(err, query.ErrKeyNotFound) {
				return fmt.Errorf("no key with id %q (see reportctl keys list)", pos[0])
			}
			return err
		}
		fmt.Fprintf(stderr, "revoked key %s; running query servers refuse it within a second\n", pos[0])
	}
	return nil
}

func writeKeys(w io.Writer, keys []query.Key) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY ID\tORG\tNAME\tCREATED\tREVOKED")
	stamp := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	for _, k := range keys {
		revoked := "-"
		if k.Revoked() {
			revoked = stamp(k.RevokedAt)
		}
		name := k.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cli.Printable(k.ID), cli.Printable(k.OrgID), cli.Printable(name), stamp(k.CreatedAt), revoked)
	}
	tw.Flush()
}
