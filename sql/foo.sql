-- Queries of the foo job (jobs/foo.py).

-- name: upsert_foo
INSERT INTO foo (id, col_timestamp)
VALUES ($1, now())
ON CONFLICT (id) DO UPDATE SET col_timestamp = EXCLUDED.col_timestamp
RETURNING id, col_timestamp;
