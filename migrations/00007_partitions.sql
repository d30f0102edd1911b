-- +goose Up

-- Identical projector processes divide the stream's partitions among
-- themselves with no configuration per process: each partition has a lease
-- (owner, epoch, expiry) that its owner renews; a lease that expires is
-- taken by another process, which raises the epoch. Every batch checks,
-- inside its transaction, that its process still holds the lease at its
-- epoch: an owner that lost a partition (paused, cut off) cannot commit to
-- it once another took over.

CREATE TABLE partition_leases (
    consumer   text NOT NULL,
    partition  integer NOT NULL,
    owner      text,
    epoch      bigint NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL DEFAULT '-infinity',
    PRIMARY KEY (consumer, partition)
);
COMMENT ON TABLE partition_leases IS 'Which projector process projects which partition of the stream; the process renews its leases, another takes an expired one.';
COMMENT ON COLUMN partition_leases.consumer IS 'The projector''s consumer name (CALLREPORT_CONSUMER); each partition has the durable consumer <consumer>-p<partition>.';
COMMENT ON COLUMN partition_leases.owner IS 'Instance id of the process holding the lease; NULL when released.';
COMMENT ON COLUMN partition_leases.epoch IS 'Raised by every new owner; a batch commits only under the epoch its process took.';
COMMENT ON COLUMN partition_leases.expires_at IS 'The lease is the owner''s until then.';

CREATE TABLE projector_members (
    consumer text NOT NULL,
    instance text NOT NULL,
    seen_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, instance)
);
COMMENT ON TABLE projector_members IS 'The projector processes alive (seen within a lease''s length): the partitions are shared among them.';

-- The durable consumers whose positions say how fresh the live reports
-- are: the live generation's consumer, or with partitions one per
-- partition (<consumer>-p<n>). The reports are complete through the least
-- of their positions' through.
-- +goose StatementBegin
CREATE FUNCTION callreport_live_consumers() RETURNS SETOF text LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN n.parts > 1 THEN g.consumer || '-p' || p ELSE g.consumer END
    FROM generations g
    CROSS JOIN LATERAL (SELECT count(*)::int AS parts FROM partition_leases l WHERE l.consumer = g.consumer) n
    CROSS JOIN LATERAL generate_series(0, greatest(n.parts, 1) - 1) p
    WHERE g.state = 'live'
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION callreport_live_consumers();
DROP TABLE projector_members;
DROP TABLE partition_leases;
