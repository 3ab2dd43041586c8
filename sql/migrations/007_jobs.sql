-- Jobs, plural (SPEC version 3): retries, and jobs that appear after the first start.

-- A fire may now be tried more than once: each attempt is a run of its own, with trigger 'retry'
-- and the fire's instant. (job, scheduled_for, attempt) is what is claimed once across replicas.
-- retried: a failed attempt that was followed by another; it does not count for the failure
-- streak (only a fire's last attempt does).
ALTER TABLE foojob_runs
    DROP CONSTRAINT foojob_runs_trigger_check,
    ADD CONSTRAINT foojob_runs_trigger_check CHECK (trigger IN ('schedule', 'manual', 'catch-up', 'retry')),
    ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    ADD COLUMN retried BOOLEAN NOT NULL DEFAULT false,
    DROP CONSTRAINT foojob_runs_one_per_fire,
    ADD CONSTRAINT foojob_runs_one_per_fire UNIQUE (job, scheduled_for, attempt);

-- Attempts still to make: written with the failed attempt before them (same transaction), taken
-- (deleted) by the one replica that makes the attempt, deleted by a pause. They live here, not in
-- a process's memory, so a restart or a replica's death loses none.
CREATE TABLE foojob_retries (
    job           TEXT NOT NULL,
    scheduled_for TIMESTAMPTZ NOT NULL,
    attempt       INTEGER NOT NULL CHECK (attempt >= 2),
    due_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job, scheduled_for, attempt)
);

-- When a job was first seen: a job added by a deploy missed nothing before it existed (no gap
-- report for its first start). NULL for the jobs that existed before this migration.
ALTER TABLE foojob_job_state ADD COLUMN first_seen_at TIMESTAMPTZ;
ALTER TABLE foojob_job_state ALTER COLUMN first_seen_at SET DEFAULT now();
