"""PostgreSQL schema: numbered migrations (applied in order at start and by ``riskhub migrate``;
never edit a released one, append) and the SQL of the store's two batched writes."""

from __future__ import annotations

from riskhub.model import OUTCOME_PROCESSED


# The whole write transaction in one round trip (it was seven: begin, lock, two inserts, notify,
# newest check, commit). Writers of a world serialize on the advisory lock before the outbox id
# is drawn (see store/postgres.py). Migration 1 stored payloads as jsonb, migration 2 as bytea.
def _insert_snapshot_function(payload_type: str) -> str:
    returned, read_back = ("text", "s.payload::text") if payload_type == "jsonb" else ("bytea", "s.payload")
    return f"""
CREATE FUNCTION risk_insert_snapshot(
    p_lock integer, p_channel text,
    p_world_id text, p_version text, p_hash text, p_content_sha256 text, p_as_of timestamptz,
    p_created_at timestamptz, p_expires_at timestamptz, p_actor text, p_stage text,
    p_payload {payload_type}, p_event_id text, p_event_type text, p_correlation_id text, p_extra text
) RETURNS TABLE (
    created boolean, world_id text, version text, hash text, content_sha256 text,
    as_of timestamptz, created_at timestamptz, expires_at timestamptz, actor text, stage text,
    payload {returned}, newest_in_world boolean, newest_in_stage boolean
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock, hashtext(p_world_id));
    INSERT INTO risk_snapshots (world_id, version, hash, content_sha256, as_of, created_at,
                                expires_at, actor, stage, payload)
    VALUES (p_world_id, p_version, p_hash, p_content_sha256, p_as_of, p_created_at,
            p_expires_at, p_actor, p_stage, p_payload)
    ON CONFLICT (world_id, version) DO NOTHING;
    IF NOT FOUND THEN
        RETURN QUERY SELECT false, s.world_id, s.version, s.hash, s.content_sha256, s.as_of,
            s.created_at, s.expires_at, s.actor, s.stage, {read_back}, false, false
        FROM risk_snapshots s WHERE s.world_id = p_world_id AND s.version = p_version;
        RETURN;
    END IF;
    INSERT INTO risk_outbox (world_id, version, event_id, event_type, correlation_id, extra, created_at)
    VALUES (p_world_id, p_version, p_event_id, p_event_type, p_correlation_id, p_extra, p_created_at);
    PERFORM pg_notify(p_channel, '');
    RETURN QUERY SELECT true, p_world_id, p_version, p_hash, p_content_sha256, p_as_of,
        p_created_at, p_expires_at, p_actor, p_stage, NULL::{returned},
        NOT EXISTS (SELECT 1 FROM risk_snapshots s WHERE s.world_id = p_world_id
                    AND (s.as_of, s.created_at) > (p_as_of, p_created_at)),
        NOT EXISTS (SELECT 1 FROM risk_snapshots s WHERE s.world_id = p_world_id
                    AND s.stage = p_stage AND (s.as_of, s.created_at) > (p_as_of, p_created_at));
END
$fn$
"""


# Applied in order at start (and by `riskhub migrate`); never edit a released one, append.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE risk_snapshots (
                world_id text NOT NULL,
                version text NOT NULL,
                hash text NOT NULL,
                content_sha256 text NOT NULL,
                as_of timestamptz NOT NULL,
                created_at timestamptz NOT NULL,
                expires_at timestamptz NOT NULL,
                actor text NOT NULL,
                stage text,
                payload jsonb NOT NULL,
                PRIMARY KEY (world_id, version)
            )""",
            "CREATE INDEX risk_snapshots_latest ON risk_snapshots (world_id, as_of DESC, created_at DESC)",
            "CREATE INDEX risk_snapshots_stage ON risk_snapshots"
            " (world_id, stage, as_of DESC, created_at DESC)",
            "CREATE INDEX risk_snapshots_actor ON risk_snapshots"
            " (world_id, actor, as_of DESC, created_at DESC)",
            """CREATE TABLE risk_outbox (
                id bigserial PRIMARY KEY,
                world_id text NOT NULL,
                version text NOT NULL,
                event_id text NOT NULL,
                event_type text NOT NULL,
                correlation_id text,
                extra text NOT NULL,
                status text NOT NULL DEFAULT 'pending',
                attempts integer NOT NULL DEFAULT 0,
                last_error text,
                created_at timestamptz NOT NULL,
                published_at timestamptz
            )""",
            "CREATE INDEX risk_outbox_pending ON risk_outbox (id) WHERE status = 'pending'",
            "CREATE INDEX risk_outbox_pending_world ON risk_outbox (world_id, id) WHERE status = 'pending'",
            """CREATE TABLE risk_processed (
                dedupe_key text PRIMARY KEY,
                outcome text NOT NULL,
                processed_at timestamptz NOT NULL DEFAULT now()
            )""",
            """CREATE TABLE risk_worker_results (
                dedupe_key text NOT NULL,
                worker text NOT NULL,
                result jsonb NOT NULL,
                PRIMARY KEY (dedupe_key, worker)
            )""",
            _insert_snapshot_function("jsonb"),
        ],
    ),
    (
        # Payloads and worker rows as the exact bytes the hub wrote: jsonb refused valid JSON
        # (a string holding \u0000 was a 503) and parsed 14 KB per insert, rendered it per read.
        # NOT compatible with processes of the previous version (they read payload::text): stop
        # them all before the first new process starts (docs/runbook.md, "Upgrades").
        2,
        [
            "ALTER TABLE risk_snapshots ALTER COLUMN payload TYPE bytea"
            " USING convert_to(payload::text, 'UTF8')",
            "ALTER TABLE risk_worker_results ALTER COLUMN result TYPE text USING result::text",
            "DROP FUNCTION risk_insert_snapshot(integer, text, text, text, text, text, timestamptz,"
            " timestamptz, timestamptz, text, text, jsonb, text, text, text, text)",
            _insert_snapshot_function("bytea"),
        ],
    ),
    (
        # Payloads uncompressed: pglz per insert and per relay read cost more than the disk it
        # saves (relay/raw 0.46 -> 0.57, make bench BENCH_ARGS="--config kafka --only relay").
        3,
        ["ALTER TABLE risk_snapshots ALTER COLUMN payload SET STORAGE EXTERNAL"],
    ),
    (
        # Risk analytics: why a key was dead-lettered (the results API says), and outbox rows
        # that carry their own data (a limit breach) instead of referencing a snapshot's.
        4,
        [
            "ALTER TABLE risk_processed ADD COLUMN error text",
            "ALTER TABLE risk_outbox ADD COLUMN data bytea",
        ],
    ),
    (
        # Retracted versions stay stored and listed, never served as latest.
        5,
        [
            """CREATE TABLE risk_retractions (
                world_id text NOT NULL,
                version text NOT NULL,
                reason text NOT NULL,
                retracted_at timestamptz NOT NULL,
                PRIMARY KEY (world_id, version)
            )""",
        ],
    ),
]

# Appended to a query on risk_snapshots: leave out retracted versions.
NOT_RETRACTED = (
    " AND NOT EXISTS (SELECT 1 FROM risk_retractions x"
    " WHERE x.world_id = risk_snapshots.world_id AND x.version = risk_snapshots.version)"
)


# Keys not yet processed get their outcome, and only those get their worker rows; returns them.
RECORD_OUTCOMES = f"""
WITH recorded AS (
    INSERT INTO risk_processed (dedupe_key, outcome, error)
    SELECT * FROM unnest($1::text[], $2::text[], $6::text[])
    ON CONFLICT (dedupe_key) DO UPDATE SET outcome = excluded.outcome, processed_at = now(),
        error = excluded.error
    WHERE risk_processed.outcome <> '{OUTCOME_PROCESSED}'
    RETURNING dedupe_key
), worker_rows AS (
    INSERT INTO risk_worker_results (dedupe_key, worker, result)
    SELECT r.dedupe_key, r.worker, r.result
    FROM unnest($3::text[], $4::text[], $5::text[]) AS r(dedupe_key, worker, result)
    WHERE r.dedupe_key IN (SELECT dedupe_key FROM recorded)
    ON CONFLICT (dedupe_key, worker) DO UPDATE SET result = excluded.result
)
SELECT dedupe_key FROM recorded
"""


# The status page's one query: per world and stage the newest $2 snapshots, each joined to its
# outcome and the risk worker's ($1) row by its dedupe key; sigma read from the row's JSON.
STATUS_POINTS = (
    """
WITH ranked AS (
    SELECT world_id, stage, version, hash, actor, as_of, created_at, expires_at,
           row_number() OVER (PARTITION BY world_id, stage ORDER BY as_of DESC, created_at DESC) AS n
    FROM risk_snapshots WHERE TRUE"""
    + NOT_RETRACTED
    + """
)
SELECT k.world_id, k.stage, k.n::int, k.version, k.as_of, k.created_at, k.expires_at, p.outcome,
       (r.result::jsonb #>> '{figures,sigma}')::float8,
       CASE WHEN k.n = 1 THEN jsonb_build_object('figures', r.result::jsonb -> 'figures',
           'worst_stress', r.result::jsonb -> 'worst_stress', 'blocking', r.result::jsonb -> 'blocking',
           'breaches', jsonb_array_length(r.result::jsonb -> 'breaches'))::text END
FROM ranked k
LEFT JOIN risk_processed p
       ON p.dedupe_key = k.world_id || '|' || k.version || '|' || k.hash || '|' || k.actor || '|'
                         || coalesce(k.stage, '')
LEFT JOIN risk_worker_results r ON r.dedupe_key = p.dedupe_key AND r.worker = $1
WHERE k.n <= $2
ORDER BY k.world_id, k.stage, k.n
"""
)
