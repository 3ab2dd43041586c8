-- Fires that did not run and were reported (once, by whichever replica claimed the report first):
-- a fire given up, a stalled service, or a time when no replica was up (reason 'down', keyed by
-- the first fire of the gap).
CREATE TABLE foojob_missed (
    job           TEXT NOT NULL,
    scheduled_for TIMESTAMPTZ NOT NULL,
    reason        TEXT NOT NULL,
    reported_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    fires         INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (job, scheduled_for)
);

-- A clean stop is recorded (not deleted): the start after a time when no replica was up knows
-- when the gap began. A stopped replica counts as up until stopped_at only.
ALTER TABLE foojob_replicas ADD COLUMN stopped_at TIMESTAMPTZ;

-- The failure streak is read at every claim: the last success of a job, fast.
CREATE INDEX foojob_runs_job_succeeded ON foojob_runs (job, id DESC) WHERE status = 'succeeded';
