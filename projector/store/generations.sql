-- Queries of reportctl generations (projector/generations.go), apart from
-- queries.sql. The functions they call are those of migrations/00002.

-- name: GenerationGet :one
SELECT generation, schema_name, fold_version, state, consumer, from_seq, since, created_at, switched_at, retired_at
FROM callreport.generations WHERE generation = @generation;

-- name: GenerationReopen :execrows
-- A retired generation becomes the one being built again, by consumer, so
-- that Rebuild catches it up and switches to it. No row when it is not
-- retired any more, or when another generation is building (the unique
-- index generations_one_building refuses it).
UPDATE callreport.generations SET state = 'building', consumer = @consumer
WHERE generation = @generation AND state = 'retired';

-- name: PositionMax :one
-- The highest position of the generation whose tables the search path
-- reaches first: how far the stream is folded into them.
SELECT coalesce(max(stream_seq), 0)::bigint FROM projector_positions;

-- name: PositionDelete :exec
DELETE FROM projector_positions WHERE consumer = @consumer;
