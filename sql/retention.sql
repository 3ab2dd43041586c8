-- Queries of retention (bot/retention.py): what is older than FOOJOB_KEEP_RUNS goes, in batches.
-- Advisory lock key (7263522, 1): one pruner at a time across every process on the database.
-- Each delete takes at most $2 rows, oldest ids first, in a statement of its own (its own short
-- transaction): the caller repeats it until a batch comes back short. Every delete returns how
-- many rows it removed. The ids are picked first, as an array (`= ANY (ARRAY(…))`, not `IN (…)`),
-- so that the rows go by primary key: with IN, the planner may scan the whole table for each
-- batch. The old rows are found by the primary key from the oldest id, up to a batch; when there
-- are none, by a scan of the table (about 40 ms at 300,000 rows, once an hour): no index on age.

-- name: retention_lock
-- Session-level, not tied to a transaction: held across the batches, which commit one by one.
SELECT pg_try_advisory_lock(7263522, 1);

-- name: retention_unlock
SELECT pg_advisory_unlock(7263522, 1);

-- name: retention_cutoff
-- The database's clock, shared by every replica; fixed once per prune so that it ends.
SELECT now() - $1::interval;

-- name: prune_runs
-- Only runs that came before the job's last success. So, whatever their age, these stay: the
-- newest run of each job (/status shows it as the last run; start-up asks whether the job has
-- ever run), its last success (the last-success metric), and the failures since (the streak a run
-- counts to alert once per streak and to announce the recovery).
WITH gone AS (
    DELETE FROM foojob_runs WHERE id = ANY (ARRAY(
        SELECT r.id FROM foojob_runs r
        WHERE r.started_at < $1
          AND EXISTS (SELECT 1 FROM foojob_runs n WHERE n.job = r.job AND n.status = 'succeeded' AND n.id > r.id)
        ORDER BY r.id
        LIMIT $2
    ))
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: prune_messages
-- Delivered messages, and those set aside for good; a message still to deliver never goes. The
-- test is repeated outside the subquery so that it holds on the row version actually deleted.
WITH gone AS (
    DELETE FROM foojob_outbox WHERE id = ANY (ARRAY(
        SELECT id FROM foojob_outbox
        WHERE created_at < $1 AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL)
        ORDER BY id
        LIMIT $2
    )) AND (delivered_at IS NOT NULL OR failed_at IS NOT NULL)
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: prune_events
WITH gone AS (
    DELETE FROM foojob_control_events WHERE id = ANY (ARRAY(
        SELECT id FROM foojob_control_events WHERE at < $1 ORDER BY id LIMIT $2
    ))
    RETURNING 1
)
SELECT count(*) FROM gone;

-- name: prune_missed
-- Reports of missed fires (bot/watch.py); no id of their own: the row's ctid picks the batch.
WITH gone AS (
    DELETE FROM foojob_missed WHERE ctid = ANY (ARRAY(
        SELECT ctid FROM foojob_missed WHERE reported_at < $1 LIMIT $2
    )) AND reported_at < $1
    RETURNING 1
)
SELECT count(*) FROM gone;
