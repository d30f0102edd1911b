package projector

import (
	"context"
	"fmt"
	"math/big"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/callreport/callreport/projector/fold"
	"github.com/callreport/callreport/projector/store"
	"github.com/callreport/callreport/schema"
)

// The rows a batch writes go by COPY or by statements of column arrays
// (writeTables), which sqlc cannot check: each table the projector writes
// is described here, column for column in the order written,
// and TestTableColumns holds these lists against the tables themselves, so
// that a renamed or added column fails a test rather than a batch.

// table is one table the projector writes.
type table struct {
	name string
	key  []string // primary key columns
	// cols are the columns written, the key first; the others keep their
	// defaults (updated_at) or stay NULL (report, of fold version 1).
	cols []string
	// additive tables hold sums: a row written adds to the one stored.
	additive bool
}

var (
	callStatesTable = table{"call_states", []string{"call_id"}, []string{"call_id", "org_id", "job_id", "state"}, false}
	jobStatesTable  = table{"job_states", []string{"job_id"}, []string{"job_id", "org_id", "state"}, false}
	attemptsTable   = table{"call_attempts", []string{"call_id"}, []string{"call_id", "org_id", "job_id", "attempt",
		"program_id", "program_execution_id", "contact_id", "direction", "from_number", "to_number", "status", "outcome",
		"outcome_reason", "created_at", "dialed_at", "answered_at", "terminated_at", "duration_ms", "flow_id", "flow_name",
		"flow_version", "flow_started_at", "flow_completed_at", "node_count", "total_cost", "timeline_count", "last_event_at",
		"etag", "version", "doc_head", "flow_open", "flow_close", "billing_close"}, false}
	jobsTable = table{"jobs", []string{"job_id"}, []string{"job_id", "org_id", "status", "final_outcome", "attempt_count",
		"max_attempts", "program_id", "program_execution_id", "contact_id", "failure_reason", "first_event_at",
		"last_event_at", "etag", "version", "head"}, false}
	pathTable = table{"call_path_entries", []string{"call_id", "execution_index"}, []string{"call_id", "execution_index",
		"org_id", "job_id", "node_id", "node_type", "node_label", "output_path", "entered_at", "entered", "exited", "fragment"}, false}
	varsTable = table{"call_variables", []string{"call_id", "name"}, []string{"call_id", "name", "org_id", "job_id",
		"value", "stamp", "fragment"}, false}
	billingTable = table{"call_billing_lines", []string{"call_id", "node_id"}, []string{"call_id", "node_id", "org_id",
		"job_id", "node_type", "duration_ms", "cost", "cost_per_unit", "unit", "min_duration_ms", "rated_at", "stamp", "fragment"}, false}
	timelineTable = table{"call_timeline_events", []string{"call_id", "event_id"}, []string{"call_id", "event_id", "org_id",
		"job_id", "type", "occurred_at", "data", "stamp", "fragment"}, false}
)

// writtenTables are every table the projector writes.
var writtenTables = []table{callStatesTable, jobStatesTable, attemptsTable, jobsTable, pathTable, varsTable, billingTable,
	timelineTable, rollupsTable, callNodesTable, funnelsTable, funnelExitsTable}

// stage is the name of the table's staging table, a temporary table of
// the same columns that holds the rows to merge into existing ones.
func (t table) stage() string { return "stage_" + t.name }

// mergeSQL merges the staging table into the table: new keys are inserted,
// existing ones updated in place (which lets Postgres keep the row on its
// page, its indexes untouched, when no indexed column changed).
func (t table) mergeSQL() string {
	cols := strings.Join(t.cols, ", ")
	// The staging table is emptied in the same statement: a transaction
	// may write a table twice (a replay retracts, then folds again).
	return fmt.Sprintf("WITH merged AS (INSERT INTO %s (%s) SELECT %s FROM %s %s) DELETE FROM %s",
		t.name, cols, cols, t.stage(), t.onConflict(), t.stage())
}

// upsertSQL writes rows given as one array a column ($1 the first
// column's values, and so on), of the types given by column, as mergeSQL
// merges them: one statement whatever the rows, fresh or not, which a
// batch sends with the others (writeTables, through upserts).
func (t table) upsertSQL(types map[string]string) string {
	arrays := make([]string, len(t.cols))
	for i, c := range t.cols {
		arrays[i] = fmt.Sprintf("$%d::%s[]", i+1, types[c])
	}
	return fmt.Sprintf("INSERT INTO %s (%s) SELECT * FROM unnest(%s) %s",
		t.name, strings.Join(t.cols, ", "), strings.Join(arrays, ", "), t.onConflict())
}

// onConflict is what a row whose key the table holds does: it replaces
// the stored one, or adds to it in an additive table.
func (t table) onConflict() string {
	var set []string
	for _, c := range t.cols[len(t.key):] {
		if t.additive {
			set = append(set, fmt.Sprintf("%s = %s.%s + EXCLUDED.%s", c, t.name, c, c))
		} else {
			set = append(set, fmt.Sprintf("%s = EXCLUDED.%s", c, c))
		}
	}
	if t.hasUpdatedAt() {
		set = append(set, "updated_at = now()")
	}
	return fmt.Sprintf("ON CONFLICT (%s) DO UPDATE SET %s", strings.Join(t.key, ", "), strings.Join(set, ", "))
}

func (t table) hasUpdatedAt() bool {
	switch t.name {
	case "call_states", "job_states", "call_attempts", "jobs":
		return true
	}
	return false
}

// rows are rows to write to one table: fresh ones, whose keys the table
// does not hold, go straight in; the others are merged through staging.
type rows struct {
	fresh, merge [][]any
}

func (r *rows) add(fresh bool, row []any) {
	if fresh {
		r.fresh = append(r.fresh, row)
	} else {
		r.merge = append(r.merge, row)
	}
}

// stageSQL creates the table's staging table if this connection has none:
// temporary, so of this connection only, and emptied at each commit.
func (t table) stageSQL() string {
	return fmt.Sprintf("CREATE TEMP TABLE IF NOT EXISTS %s (LIKE %s INCLUDING DEFAULTS) ON COMMIT DELETE ROWS", t.stage(), t.name)
}

// upsertMax is the most rows of a table that writeTables writes by
// upsertSQL; more go by COPY, which is faster in bulk but takes round
// trips of its own, two or three a table. A variable for TestWritePaths.
var upsertMax = 2000

// writeTables writes each table's rows in tx. A table of up to upsertMax
// rows is written by one statement of column arrays, all such tables'
// statements sent together, in one round trip (a live batch writes a few
// hundred rows to each of ten tables, where the round trips cost more
// than the rows); a table of more rows by COPY: straight in for keys the
// table does not hold, through its staging table for the others.
func writeTables(ctx context.Context, tx pgx.Tx, tables []table, rs []rows) error {
	var few, many []int
	for i := range tables {
		switch n := len(rs[i].fresh) + len(rs[i].merge); {
		case n == 0:
		case n <= upsertMax:
			few = append(few, i)
		default:
			many = append(many, i)
		}
	}
	b := &pgx.Batch{}
	if len(few) > 0 {
		statements, err := upserts(ctx, tx)
		if err != nil {
			return err
		}
		for _, i := range few {
			b.Queue(statements[tables[i].name], rs[i].columns(len(tables[i].cols))...)
		}
	}
	// The staging tables with them: created in the transaction, a
	// staging table goes when it rolls back.
	for _, i := range many {
		if len(rs[i].merge) > 0 {
			b.Queue(tables[i].stageSQL())
		}
	}
	if b.Len() > 0 {
		br := tx.SendBatch(ctx, b)
		for _, i := range few {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("write %s: %w", tables[i].name, err)
			}
		}
		if err := br.Close(); err != nil {
			return fmt.Errorf("create the staging tables: %w", err)
		}
	}
	for _, i := range many {
		if err := tables[i].write(ctx, tx, rs[i]); err != nil {
			return err
		}
	}
	return nil
}

// upserts are the upsertSQL statements of the written tables, by table,
// made once a process from the types of their columns in the catalog: the
// migrations make every generation's tables alike.
func upserts(ctx context.Context, tx pgx.Tx) (map[string]string, error) {
	knownUpserts.Lock()
	defer knownUpserts.Unlock()
	if knownUpserts.byTable != nil {
		return knownUpserts.byTable, nil
	}
	names := make([]string, len(writtenTables))
	for i, t := range writtenTables {
		names[i] = t.name
	}
	found, err := store.New().ColumnTypes(ctx, tx, names)
	if err != nil {
		return nil, fmt.Errorf("read the types of the tables' columns: %w", err)
	}
	types := map[string]map[string]string{}
	for _, c := range found {
		if types[c.TableName] == nil {
			types[c.TableName] = map[string]string{}
		}
		types[c.TableName][c.ColumnName] = c.Type
	}
	byTable := make(map[string]string, len(writtenTables))
	for _, t := range writtenTables {
		for _, c := range t.cols {
			if types[t.name][c] == "" {
				return nil, fmt.Errorf("read the types of the tables' columns: %s.%s not found", t.name, c)
			}
		}
		byTable[t.name] = t.upsertSQL(types[t.name])
	}
	knownUpserts.byTable = byTable
	return byTable, nil
}

var knownUpserts struct {
	sync.Mutex
	byTable map[string]string
}

// columns are the rows as upsertSQL takes them: for each of the n
// columns, its values in a slice.
func (r rows) columns(n int) []any {
	cols := make([]any, n)
	for c := range cols {
		vals := make([]any, 0, len(r.fresh)+len(r.merge))
		for _, row := range r.fresh {
			vals = append(vals, row[c])
		}
		for _, row := range r.merge {
			vals = append(vals, row[c])
		}
		cols[c] = vals
	}
	return cols
}

// write writes r to t in tx; its staging table exists if r has rows to
// merge.
func (t table) write(ctx context.Context, tx pgx.Tx, r rows) error {
	if len(r.fresh) > 0 {
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.name}, t.cols, pgx.CopyFromRows(r.fresh)); err != nil {
			return fmt.Errorf("copy into %s: %w", t.name, err)
		}
	}
	if len(r.merge) == 0 {
		return nil
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.stage()}, t.cols, pgx.CopyFromRows(r.merge)); err != nil {
		return fmt.Errorf("copy into %s: %w", t.stage(), err)
	}
	if _, err := tx.Exec(ctx, t.mergeSQL()); err != nil {
		return fmt.Errorf("merge into %s: %w", t.name, err)
	}
	return nil
}

// The rows of each table, in the order of its columns.

func callStateRow(id string, c *fold.Call, state []byte) []any {
	return []any{id, c.OrgID, nullable(c.JobID), state}
}

func jobStateRow(id string, j *fold.Job, state []byte) []any {
	return []any{id, j.OrgID, state}
}

func attemptRow(r *fold.CallRow) ([]any, error) {
	total, err := numeric(r.TotalCost)
	if err != nil {
		return nil, fmt.Errorf("call %s: total cost: %w", r.CallID, err)
	}
	return []any{r.CallID, r.OrgID, r.JobID, r.Attempt, r.ProgramID, r.ProgramExecutionID, r.ContactID, r.Direction,
		r.From, r.To, r.Status, r.Outcome, r.OutcomeReason, r.CreatedAt, r.DialedAt, r.AnsweredAt, r.TerminatedAt,
		r.DurationMs, r.FlowID, r.FlowName, r.FlowVersion, r.FlowStartedAt, r.FlowCompletedAt, int32(r.NodeCount),
		total, int32(r.TimelineCount), r.LastEventAt, r.ETag, int64(r.Version), text(r.Pieces.Head),
		text(r.Pieces.FlowOpen), text(r.Pieces.FlowClose), text(r.Pieces.BillingClose)}, nil
}

func jobRow(r *fold.JobRow) []any {
	return []any{r.JobID, r.OrgID, r.Status, r.FinalOutcome, int32(r.AttemptCount), r.MaxAttempts, r.ProgramID,
		r.ProgramExecutionID, r.ContactID, r.FailureReason, r.FirstEventAt, r.LastEventAt, r.ETag, int64(r.Version), text(r.Head)}
}

func pathRow(r fold.PathRow) []any {
	return []any{r.CallID, r.ExecutionIndex, r.OrgID, r.JobID, r.NodeID, r.NodeType, r.NodeLabel, r.OutputPath,
		r.EnteredAt, r.Entered, r.Exited, text(r.Fragment)}
}

func varRow(r fold.VarRow) []any {
	return []any{r.CallID, r.Name, r.OrgID, r.JobID, []byte(r.Value), r.Stamp, text(r.Fragment)}
}

func billingRow(r fold.BillingRow) ([]any, error) {
	c, err := numeric(&r.Cost)
	if err != nil {
		return nil, fmt.Errorf("billing line %s of call %s: cost: %w", r.NodeID, r.CallID, err)
	}
	u, err := numeric(&r.CostPerUnit)
	if err != nil {
		return nil, fmt.Errorf("billing line %s of call %s: cost per unit: %w", r.NodeID, r.CallID, err)
	}
	return []any{r.CallID, r.NodeID, r.OrgID, r.JobID, r.NodeType, r.DurationMs, c, u, r.Unit,
		r.MinDurationMs, r.RatedAt, r.Stamp, text(r.Fragment)}, nil
}

func timelineRow(r fold.TimelineRow) []any {
	return []any{r.CallID, r.EventID, r.OrgID, r.JobID, r.Type, r.OccurredAt, []byte(r.Data), r.Stamp, text(r.Fragment)}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// text is a fragment as a text column takes it, without a copy; nil is
// NULL.
func text(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}

// numeric is an exact decimal as a numeric column takes it; nil is NULL.
// A number Postgres numeric cannot hold (the decoder bounds them, unless
// told not to) is refused here, as Postgres would refuse it: encoding it
// for COPY would break the connection instead.
func numeric(n *schema.Number) (pgtype.Numeric, error) {
	var v pgtype.Numeric
	if n == nil {
		return v, nil
	}
	if err := v.Scan(string(*n)); err != nil {
		return v, unwritable{fmt.Errorf("%.40s is not a number Postgres takes: %w", *n, err)}
	}
	// numeric holds up to 131072 digits before the point, 16383 after.
	digits := len(new(big.Int).Abs(v.Int).String())
	if int(v.Exp)+digits > 131072 || v.Exp < -16383 {
		return v, unwritable{fmt.Errorf("%.40s… is out of the range of Postgres numeric", *n)}
	}
	return v, nil
}

// unwritable is a value this side knows Postgres cannot store: a data
// error, as Postgres's own.
type unwritable struct{ error }

func (u unwritable) Unwrap() error { return u.error }
