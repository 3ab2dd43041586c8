-- Queries of the migration runner (bot/db.py).

-- name: migrations_lock
-- Replicas starting together take turns; the key is arbitrary but fixed.
SELECT pg_advisory_lock(7263520, 1);

-- name: migrations_unlock
SELECT pg_advisory_unlock(7263520, 1);

-- name: migrations_table
CREATE TABLE IF NOT EXISTS foojob_schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- name: migrations_applied
SELECT version FROM foojob_schema_migrations ORDER BY version;

-- name: migrations_record
INSERT INTO foojob_schema_migrations (version, name) VALUES ($1, $2);
