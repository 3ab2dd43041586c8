-- The effective schedule of each job lives here, beside its pause state, so that the one row a
-- fire reads already says whether this instant is still scheduled (no extra round trip).
--   cron, timezone        the effective schedule (NULL until a service first starts: then the
--                         configured one is in force)
--   schedule_source       'config' (FOOJOB_CRON / FOOJOB_TIMEZONE) or 'runtime' (set from Slack,
--                         HTTP or the CLI)
--   schedule_set_by/_at   who made it effective, and when (NULL by: the first start's config)
--   configured_*          the last configured schedule a service started with: a start with a
--                         different one is a deploy, and the configured schedule takes over
--   schedule_version      bumped on every change; a fire armed under an older version re-checks
--   skip_next             the one fire instant to skip (shown while it is in the future)
ALTER TABLE foojob_job_state
    ADD COLUMN cron                TEXT,
    ADD COLUMN timezone            TEXT,
    ADD COLUMN schedule_source     TEXT CHECK (schedule_source IN ('config', 'runtime')),
    ADD COLUMN schedule_set_by     TEXT,
    ADD COLUMN schedule_set_at     TIMESTAMPTZ,
    ADD COLUMN configured_cron     TEXT,
    ADD COLUMN configured_timezone TEXT,
    ADD COLUMN schedule_version    BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN skip_next           TIMESTAMPTZ;

-- The audit trail takes schedule changes and skips too; detail holds old -> new, or the instant.
ALTER TABLE foojob_control_events
    DROP CONSTRAINT foojob_control_events_action_check,
    ADD CONSTRAINT foojob_control_events_action_check CHECK (action IN (
        'pause', 'resume', 'auto-resume', 'schedule-set', 'schedule-reset', 'schedule-deploy', 'skip', 'unskip')),
    ADD COLUMN detail JSONB;
CREATE INDEX foojob_control_events_job_at ON foojob_control_events (job, at);
