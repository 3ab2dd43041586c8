-- The job's own table, as in the original Go service. IF NOT EXISTS: a database that the Go
-- service used already has it, with its row, and foojob takes it over as it is.
CREATE TABLE IF NOT EXISTS foo (
    id INTEGER NOT NULL PRIMARY KEY,
    col_timestamp TIMESTAMP WITH TIME ZONE NOT NULL
);

-- One row a job: the control state every replica reads at fire time.
CREATE TABLE foojob_job_state (
    job          TEXT PRIMARY KEY,
    paused       BOOLEAN NOT NULL DEFAULT false,
    paused_by    TEXT,
    paused_at    TIMESTAMPTZ,
    pause_reason TEXT,
    resume_at    TIMESTAMPTZ,
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Every run, written in the same transaction as the job's work.
CREATE TABLE foojob_runs (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job           TEXT NOT NULL,
    trigger       TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual', 'catch-up')),
    scheduled_for TIMESTAMPTZ,
    started_at    TIMESTAMPTZ NOT NULL,
    finished_at   TIMESTAMPTZ,
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    result        JSONB,
    error         TEXT,
    triggered_by  TEXT,
    CHECK ((trigger = 'manual') = (scheduled_for IS NULL)),
    -- A fire (job, instant) is claimed once, whichever replica gets there first.
    CONSTRAINT foojob_runs_one_per_fire UNIQUE (job, scheduled_for)
);
CREATE INDEX foojob_runs_job_newest ON foojob_runs (job, id DESC);

-- Audit trail of pause and resume, whoever did it and from where.
CREATE TABLE foojob_control_events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job       TEXT NOT NULL,
    action    TEXT NOT NULL CHECK (action IN ('pause', 'resume', 'auto-resume')),
    actor     TEXT,
    reason    TEXT,
    resume_at TIMESTAMPTZ,
    at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
