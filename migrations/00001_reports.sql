-- +goose Up

-- API keys of the query process. A key belongs to one organization; only a
-- hash of it is stored.
CREATE TABLE api_keys (
    key_id     text PRIMARY KEY,
    org_id     text NOT NULL,
    name       text NOT NULL DEFAULT '',
    key_hash   bytea NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
COMMENT ON TABLE api_keys IS 'API keys of the report API: one organization each, stored as a SHA-256 hash. Managed with reportctl keys.';
COMMENT ON COLUMN api_keys.key_id IS 'Public identifier of the key (its first characters), shown by reportctl keys list.';
COMMENT ON COLUMN api_keys.org_id IS 'Organization whose reports the key reads.';
COMMENT ON COLUMN api_keys.name IS 'Free text to tell keys apart.';
COMMENT ON COLUMN api_keys.key_hash IS 'SHA-256 of the whole key; the key itself is shown once, at creation.';
COMMENT ON COLUMN api_keys.created_at IS 'When the key was created.';
COMMENT ON COLUMN api_keys.revoked_at IS 'When the key was revoked; NULL while it is valid.';

-- Where each projector consumer is in the stream. Written in the same
-- transaction as the reports of each batch.
CREATE TABLE projector_positions (
    consumer     text PRIMARY KEY,
    stream       text NOT NULL,
    stream_seq   bigint NOT NULL,
    fold_version integer NOT NULL,
    applied      bigint NOT NULL DEFAULT 0,
    rejected     bigint NOT NULL DEFAULT 0,
    skipped      bigint NOT NULL DEFAULT 0,
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE projector_positions IS 'Position of each projector consumer in the event stream, committed with the reports of each batch.';
COMMENT ON COLUMN projector_positions.consumer IS 'Durable JetStream consumer name.';
COMMENT ON COLUMN projector_positions.stream IS 'JetStream stream the consumer reads.';
COMMENT ON COLUMN projector_positions.stream_seq IS 'Highest stream sequence whose batch is committed.';
COMMENT ON COLUMN projector_positions.fold_version IS 'Version of the fold code that wrote the reports.';
COMMENT ON COLUMN projector_positions.applied IS 'Messages applied (counting redeliveries).';
COMMENT ON COLUMN projector_positions.rejected IS 'Messages sent to the dead-letter stream.';
COMMENT ON COLUMN projector_positions.skipped IS 'Messages of an event type this version does not know.';
COMMENT ON COLUMN projector_positions.updated_at IS 'When the last batch committed.';

-- Fold state: the last-writer-wins registers of every call and job seen,
-- including calls whose call.created has not arrived yet. Internal to the
-- projector; analysts read the tables below.
CREATE TABLE call_states (
    call_id    text PRIMARY KEY,
    org_id     text NOT NULL,
    job_id     text,
    state      json NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE call_states IS 'Projector-internal fold state of every call seen, also before its call.created. Not a stable interface.';
COMMENT ON COLUMN call_states.call_id IS 'Call id (UUID).';
COMMENT ON COLUMN call_states.org_id IS 'Owning organization: the orgid of the first projected event of the call.';
COMMENT ON COLUMN call_states.job_id IS 'Job the call belongs to, the first one an event named; NULL if none yet.';
COMMENT ON COLUMN call_states.state IS 'Last-writer-wins registers, each stamped with the (time, id) of the event that set it.';
COMMENT ON COLUMN call_states.updated_at IS 'When a batch last changed the state.';

CREATE TABLE job_states (
    job_id     text PRIMARY KEY,
    org_id     text NOT NULL,
    state      json NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE job_states IS 'Projector-internal fold state of every job seen. Not a stable interface.';
COMMENT ON COLUMN job_states.job_id IS 'Job id (UUID from POST /call-requests).';
COMMENT ON COLUMN job_states.org_id IS 'Owning organization: the orgid of the first projected event naming the job.';
COMMENT ON COLUMN job_states.state IS 'Last-writer-wins registers of the job events.';
COMMENT ON COLUMN job_states.updated_at IS 'When a batch last changed the state.';

-- One row per call attempt (a call whose call.created is projected).
CREATE TABLE call_attempts (
    call_id              text PRIMARY KEY,
    org_id               text NOT NULL,
    job_id               text,
    attempt              bigint NOT NULL,
    program_id           text,
    program_execution_id text,
    contact_id           text,
    direction            text NOT NULL,
    from_number          text NOT NULL,
    to_number            text NOT NULL,
    status               text NOT NULL,
    outcome              text NOT NULL,
    outcome_reason       text,
    created_at           timestamptz NOT NULL,
    dialed_at            timestamptz,
    answered_at          timestamptz,
    terminated_at        timestamptz,
    duration_ms          bigint,
    flow_id              text,
    flow_name            text,
    flow_version         bigint,
    flow_started_at      timestamptz,
    flow_completed_at    timestamptz,
    node_count           integer NOT NULL,
    total_cost           numeric,
    timeline_count       integer NOT NULL,
    last_event_at        timestamptz NOT NULL,
    report               json NOT NULL,
    etag                 text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_attempts_job_idx ON call_attempts (job_id, attempt, created_at, call_id) WHERE job_id IS NOT NULL;
CREATE INDEX call_attempts_org_created_idx ON call_attempts (org_id, created_at);
CREATE INDEX call_attempts_org_program_idx ON call_attempts (org_id, program_id, created_at) WHERE program_id IS NOT NULL;
CREATE INDEX call_attempts_org_flow_idx ON call_attempts (org_id, flow_id, flow_version) WHERE flow_id IS NOT NULL;
COMMENT ON TABLE call_attempts IS 'One row per call attempt whose call.created is projected: typed columns for SQL, and the CallAttemptReport served by GET /call-report/calls/{callId}.';
COMMENT ON COLUMN call_attempts.call_id IS 'Call id (UUID).';
COMMENT ON COLUMN call_attempts.org_id IS 'Owning organization.';
COMMENT ON COLUMN call_attempts.job_id IS 'Job (call request) the attempt belongs to; NULL for a call outside any job.';
COMMENT ON COLUMN call_attempts.attempt IS 'Attempt number, 1-based (call.created attempt).';
COMMENT ON COLUMN call_attempts.program_id IS 'Program, when the call was made by a program execution.';
COMMENT ON COLUMN call_attempts.program_execution_id IS 'Program execution, when the call was made by one.';
COMMENT ON COLUMN call_attempts.contact_id IS 'Contact called, when the call was made by a program execution.';
COMMENT ON COLUMN call_attempts.direction IS 'inbound or outbound.';
COMMENT ON COLUMN call_attempts.from_number IS 'Calling number (call.from).';
COMMENT ON COLUMN call_attempts.to_number IS 'Called number (call.to).';
COMMENT ON COLUMN call_attempts.status IS 'Latest call.status; initiated until one is known.';
COMMENT ON COLUMN call_attempts.outcome IS 'Latest call.outcome; pending until one is known.';
COMMENT ON COLUMN call_attempts.outcome_reason IS 'Reason of the winning call.outcome, when it has one.';
COMMENT ON COLUMN call_attempts.created_at IS 'Time of call.created (UTC, millisecond).';
COMMENT ON COLUMN call_attempts.dialed_at IS 'Time of call.dialed.';
COMMENT ON COLUMN call_attempts.answered_at IS 'Time of call.answered; NULL for an unanswered call.';
COMMENT ON COLUMN call_attempts.terminated_at IS 'Time of call.terminated.';
COMMENT ON COLUMN call_attempts.duration_ms IS 'Call duration from the latest call.status that gives one.';
COMMENT ON COLUMN call_attempts.flow_id IS 'Flow executed (flow.started); NULL when no flow ran.';
COMMENT ON COLUMN call_attempts.flow_name IS 'Name of the flow executed.';
COMMENT ON COLUMN call_attempts.flow_version IS 'Version of the flow executed.';
COMMENT ON COLUMN call_attempts.flow_started_at IS 'Time of flow.started.';
COMMENT ON COLUMN call_attempts.flow_completed_at IS 'Time of flow.completed.';
COMMENT ON COLUMN call_attempts.node_count IS 'Entries of the execution path (nodeExecutionCount); 0 without a flow.';
COMMENT ON COLUMN call_attempts.total_cost IS 'Exact decimal sum of the billing lines; NULL without billing.';
COMMENT ON COLUMN call_attempts.timeline_count IS 'Entries of the events timeline.';
COMMENT ON COLUMN call_attempts.last_event_at IS 'Latest time among the call''s projected events.';
COMMENT ON COLUMN call_attempts.report IS 'The CallAttemptReport document, exactly as the API serves it.';
COMMENT ON COLUMN call_attempts.etag IS 'Entity tag of the report (a hash of its bytes).';
COMMENT ON COLUMN call_attempts.updated_at IS 'When the projector last wrote the row.';

-- One row per job with a report.
CREATE TABLE jobs (
    job_id               text PRIMARY KEY,
    org_id               text NOT NULL,
    status               text NOT NULL,
    final_outcome        text,
    attempt_count        integer NOT NULL,
    max_attempts         bigint,
    program_id           text,
    program_execution_id text,
    contact_id           text,
    failure_reason       text,
    first_event_at       timestamptz NOT NULL,
    last_event_at        timestamptz NOT NULL,
    report               json NOT NULL,
    etag                 text NOT NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_org_first_idx ON jobs (org_id, first_event_at);
CREATE INDEX jobs_org_status_idx ON jobs (org_id, status);
COMMENT ON TABLE jobs IS 'One row per job (call request) with a report: typed columns for SQL, and the JobReport served by GET /call-report/jobs/{jobId}.';
COMMENT ON COLUMN jobs.job_id IS 'Job id (UUID from POST /call-requests).';
COMMENT ON COLUMN jobs.org_id IS 'Owning organization.';
COMMENT ON COLUMN jobs.status IS 'queued, active, completed or failed: the latest job event, else derived from the last attempt.';
COMMENT ON COLUMN jobs.final_outcome IS 'Outcome of the last attempt once it is not pending.';
COMMENT ON COLUMN jobs.attempt_count IS 'Number of call attempts.';
COMMENT ON COLUMN jobs.max_attempts IS 'maxAttempts of job.queued.';
COMMENT ON COLUMN jobs.program_id IS 'programId of job.queued.';
COMMENT ON COLUMN jobs.program_execution_id IS 'programExecutionId of job.queued.';
COMMENT ON COLUMN jobs.contact_id IS 'contactId of job.queued.';
COMMENT ON COLUMN jobs.failure_reason IS 'reason of the winning job.failed.';
COMMENT ON COLUMN jobs.first_event_at IS 'Earliest time among the job events and the attempts'' creation.';
COMMENT ON COLUMN jobs.last_event_at IS 'Latest time among the job events and the attempts'' events.';
COMMENT ON COLUMN jobs.report IS 'The JobReport document, exactly as the API serves it.';
COMMENT ON COLUMN jobs.etag IS 'Entity tag of the report (a hash of its bytes).';
COMMENT ON COLUMN jobs.updated_at IS 'When the projector last wrote the row.';

CREATE TABLE call_path_entries (
    call_id         text NOT NULL,
    execution_index bigint NOT NULL,
    org_id          text NOT NULL,
    job_id          text,
    node_id         text NOT NULL,
    node_type       text NOT NULL,
    node_label      text,
    output_path     text,
    entered_at      timestamptz NOT NULL,
    PRIMARY KEY (call_id, execution_index)
);
CREATE INDEX call_path_entries_org_node_idx ON call_path_entries (org_id, node_id);
COMMENT ON TABLE call_path_entries IS 'One row per execution-path entry (flow.node_entered) of a call attempt.';
COMMENT ON COLUMN call_path_entries.call_id IS 'Call attempt (call_attempts.call_id).';
COMMENT ON COLUMN call_path_entries.execution_index IS 'Position of the entry in the flow execution; a node run twice has two.';
COMMENT ON COLUMN call_path_entries.org_id IS 'Owning organization.';
COMMENT ON COLUMN call_path_entries.job_id IS 'Job of the call, if any.';
COMMENT ON COLUMN call_path_entries.node_id IS 'Node executed.';
COMMENT ON COLUMN call_path_entries.node_type IS 'Type of the node (dial, play, dtmf, ...).';
COMMENT ON COLUMN call_path_entries.node_label IS 'Label of the node, when given.';
COMMENT ON COLUMN call_path_entries.output_path IS 'Output taken (flow.node_exited); NULL until the node exits.';
COMMENT ON COLUMN call_path_entries.entered_at IS 'Time of flow.node_entered.';

CREATE TABLE call_billing_lines (
    call_id         text NOT NULL,
    node_id         text NOT NULL,
    org_id          text NOT NULL,
    job_id          text,
    node_type       text NOT NULL,
    duration_ms     bigint,
    cost            numeric NOT NULL,
    cost_per_unit   numeric NOT NULL,
    unit            text NOT NULL,
    min_duration_ms bigint,
    rated_at        timestamptz NOT NULL,
    PRIMARY KEY (call_id, node_id)
);
CREATE INDEX call_billing_lines_org_idx ON call_billing_lines (org_id, rated_at);
COMMENT ON TABLE call_billing_lines IS 'One row per billing line (billing.node_cost, the latest rating of each node) of a call attempt.';
COMMENT ON COLUMN call_billing_lines.call_id IS 'Call attempt (call_attempts.call_id).';
COMMENT ON COLUMN call_billing_lines.node_id IS 'Node billed.';
COMMENT ON COLUMN call_billing_lines.org_id IS 'Owning organization.';
COMMENT ON COLUMN call_billing_lines.job_id IS 'Job of the call, if any.';
COMMENT ON COLUMN call_billing_lines.node_type IS 'Type of the node billed.';
COMMENT ON COLUMN call_billing_lines.duration_ms IS 'Billed duration; NULL for flat lines.';
COMMENT ON COLUMN call_billing_lines.cost IS 'Cost of the line, exact decimal.';
COMMENT ON COLUMN call_billing_lines.cost_per_unit IS 'Price per unit, exact decimal.';
COMMENT ON COLUMN call_billing_lines.unit IS 'second, minute or flat.';
COMMENT ON COLUMN call_billing_lines.min_duration_ms IS 'Minimum billed duration; NULL when none.';
COMMENT ON COLUMN call_billing_lines.rated_at IS 'Time of the winning billing.node_cost event.';

CREATE TABLE call_timeline_events (
    call_id     text NOT NULL,
    event_id    text NOT NULL,
    org_id      text NOT NULL,
    job_id      text,
    type        text NOT NULL,
    occurred_at timestamptz NOT NULL,
    data        jsonb NOT NULL,
    PRIMARY KEY (call_id, event_id)
);
CREATE INDEX call_timeline_events_org_type_idx ON call_timeline_events (org_id, type, occurred_at);
COMMENT ON TABLE call_timeline_events IS 'One row per timeline entry (call.event) of a call attempt.';
COMMENT ON COLUMN call_timeline_events.call_id IS 'Call attempt (call_attempts.call_id).';
COMMENT ON COLUMN call_timeline_events.event_id IS 'CloudEvents id of the call.event; one row per id however often it was published.';
COMMENT ON COLUMN call_timeline_events.org_id IS 'Owning organization.';
COMMENT ON COLUMN call_timeline_events.job_id IS 'Job of the call, if any.';
COMMENT ON COLUMN call_timeline_events.type IS 'Kind of entry (dial, answer, play, hangup, ...).';
COMMENT ON COLUMN call_timeline_events.occurred_at IS 'Time of the entry.';
COMMENT ON COLUMN call_timeline_events.data IS 'The producer''s data, including nodeContext when applicable.';

-- +goose Down
DROP TABLE call_timeline_events;
DROP TABLE call_billing_lines;
DROP TABLE call_path_entries;
DROP TABLE jobs;
DROP TABLE call_attempts;
DROP TABLE job_states;
DROP TABLE call_states;
DROP TABLE projector_positions;
DROP TABLE api_keys;
