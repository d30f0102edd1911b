-- +goose Up

-- Personal data on request and by policy. An erasure removes a call's or a
-- job's rows from every generation and its events from the streams; what
-- is kept is the record below, which holds no personal data, so that a
-- rebuild never brings them back and an event arriving later for an erased
-- id is dropped. Organizations' policies say how long their calls are kept
-- and which flow variables are never stored.

CREATE TABLE erasures (
    erasure_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('call', 'job', 'contact', 'retention')),
    subject    text NOT NULL,
    reason     text NOT NULL DEFAULT '',
    erased_at  timestamptz NOT NULL DEFAULT now(),
    calls      integer NOT NULL DEFAULT 0,
    jobs       integer NOT NULL DEFAULT 0
);
COMMENT ON TABLE erasures IS 'Each erasure carried out: what was asked (a call, a job, a contact, or a retention run) and when; the erased ids are in erased_ids. Holds no personal data: a contact erasure keeps only a hash of the contact id.';
COMMENT ON COLUMN erasures.subject IS 'The call or job id asked for, a SHA-256 of the contact id, or the retention cut-off.';
COMMENT ON COLUMN erasures.reason IS 'Free text the operator gave (a ticket number, say).';
COMMENT ON COLUMN erasures.calls IS 'Calls erased.';
COMMENT ON COLUMN erasures.jobs IS 'Jobs erased.';

CREATE TABLE erased_ids (
    kind       text NOT NULL CHECK (kind IN ('call', 'job')),
    id         text NOT NULL,
    org_id     text NOT NULL,
    erasure_id bigint NOT NULL REFERENCES erasures,
    PRIMARY KEY (kind, id)
);
COMMENT ON TABLE erased_ids IS 'Calls and jobs erased: the projector drops every event naming one of them (counted, not dead-lettered: it holds personal data), live and in rebuilds.';

CREATE TABLE org_policies (
    org_id         text PRIMARY KEY,
    retention_days integer CHECK (retention_days > 0),
    redact         text[] NOT NULL DEFAULT '{}',
    updated_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE org_policies IS 'What an organization asks of its data: how long calls are kept, which flow variables are never stored. reportctl orgs set-retention / set-redact.';
COMMENT ON COLUMN org_policies.retention_days IS 'Calls and jobs created longer ago than this are erased; NULL keeps them for ever.';
COMMENT ON COLUMN org_policies.redact IS 'Glob patterns (path.Match syntax: *, ?, [...]) of flow variable names the projector never stores.';

-- +goose Down
DROP TABLE org_policies;
DROP TABLE erased_ids;
DROP TABLE erasures;
