-- +goose Up

-- How fresh the live reports are, for the query processes' headers
-- X-Projection-Position and X-Projection-Lag-Ms. It runs with its owner's
-- rights so that the query role needs none on the positions, the
-- generations or the leases; a function, unlike a table's grants, is not
-- swapped out by a rebuild.
-- +goose StatementBegin
CREATE FUNCTION callreport_projection_freshness(OUT pos bigint, OUT lag_ms bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT coalesce(min(coalesce(p.through, 0)), 0)::bigint,
           coalesce((extract(epoch FROM now() - min(p.oldest_pending)) * 1000)::bigint, 0)::bigint
    FROM callreport_live_consumers() AS c(consumer)
    LEFT JOIN projector_positions p ON p.consumer = c.consumer
$$;
-- +goose StatementEnd
COMMENT ON FUNCTION callreport_projection_freshness() IS 'The least through of the live consumers (callreport_live_consumers(); 0 for one without a position yet): X-Projection-Position. Milliseconds since the oldest event not applied yet was stored in the stream, 0 when caught up: X-Projection-Lag-Ms.';

-- +goose Down
DROP FUNCTION callreport_projection_freshness();
