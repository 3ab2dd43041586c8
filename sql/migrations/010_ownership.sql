-- One owner per fire (bot/standby.py): the replicas that do not own a fire stand by, each with one
-- statement that waits for a whole window of the others' fires — one transaction however many
-- fires it covers, where a check per fire would cost one each. It returns as soon as one of them is
-- still unclaimed GRACE after its instant and nothing holds it up (its owner died or froze before
-- claiming it), or at UNTIL with the fires still held up by a run of their job in progress.
-- READ COMMITTED: each statement of the loop sees what committed before it.
--   jobs, instants, versions: the fires, in order of instant (the schedule version each was armed with).
--   Back: (job, scheduled_for, status): 'overdue', to run now; 'missed', due at its instant but
--   not to run now (the job was paused, or its schedule changed, since): to report missed; 'held',
--   still held up by a run of its job at UNTIL.
CREATE FUNCTION foojob_standby(jobs TEXT[], instants TIMESTAMPTZ[], versions BIGINT[],
                               grace INTERVAL, until TIMESTAMPTZ)
RETURNS TABLE (job TEXT, scheduled_for TIMESTAMPTZ, status TEXT)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n INTEGER := coalesce(array_length(instants, 1), 0);
    i INTEGER := 1;
    held_jobs TEXT[] := '{}';
    held_at TIMESTAMPTZ[] := '{}';
    held_versions BIGINT[] := '{}';
    due_jobs TEXT[];
    due_at TIMESTAMPTZ[];
    due_status TEXT[];
    wake TIMESTAMPTZ;
BEGIN
    LOOP
        -- The fires whose grace is over join those being checked.
        WHILE i <= n AND instants[i] + grace <= clock_timestamp() LOOP
            held_jobs := held_jobs || jobs[i];
            held_at := held_at || instants[i];
            held_versions := held_versions || versions[i];
            i := i + 1;
        END LOOP;
        IF cardinality(held_at) > 0 THEN
            -- Each fire checked: claimed (a run), reported missed, or no fire at its instant (paused
            -- or skipped then, armed under a schedule replaced before it) — done with; paused or its
            -- schedule changed since its instant — missed; held up (a run of its job is in progress:
            -- the fire waits for it, its owner runs it after) — checked again; otherwise overdue.
            SELECT coalesce(array_agg(c.job ORDER BY c.at, c.job) FILTER (WHERE NOT c.locked OR c.gone), '{}'),
                   coalesce(array_agg(c.at ORDER BY c.at, c.job) FILTER (WHERE NOT c.locked OR c.gone), '{}'),
                   coalesce(array_agg(CASE WHEN c.gone THEN 'missed' ELSE 'overdue' END ORDER BY c.at, c.job)
                            FILTER (WHERE NOT c.locked OR c.gone), '{}'),
                   coalesce(array_agg(c.job ORDER BY c.at, c.job) FILTER (WHERE c.locked AND NOT c.gone), '{}'),
                   coalesce(array_agg(c.at ORDER BY c.at, c.job) FILTER (WHERE c.locked AND NOT c.gone), '{}'),
                   coalesce(array_agg(c.version ORDER BY c.at, c.job) FILTER (WHERE c.locked AND NOT c.gone), '{}')
            INTO due_jobs, due_at, due_status, held_jobs, held_at, held_versions
            FROM (
                SELECT f.job, f.at, f.version, EXISTS (
                    SELECT 1 FROM pg_locks
                    WHERE locktype = 'advisory' AND granted AND classid = 7263520 AND objsubid = 2
                      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                      AND objid::bigint = (hashtext(f.job)::bigint & 4294967295)) AS locked,
                       -- Due at its instant, but no longer to run: paused since, or its schedule
                       -- changed since (a run now would start after the change was answered).
                       coalesce(st.paused AND (st.resume_at IS NULL OR st.resume_at > clock_timestamp()), false)
                       OR coalesce(st.cron IS NOT NULL AND st.schedule_version <> f.version
                                   AND st.schedule_set_at > f.at, false) AS gone
                FROM unnest(held_jobs, held_at, held_versions) AS f (job, at, version)
                LEFT JOIN foojob_job_state st ON st.job = f.job
                WHERE NOT EXISTS (SELECT 1 FROM foojob_runs r WHERE r.job = f.job AND r.scheduled_for = f.at)
                  AND NOT EXISTS (SELECT 1 FROM foojob_missed m WHERE m.job = f.job AND m.scheduled_for = f.at)
                  AND st.skip_next IS DISTINCT FROM f.at
                  -- Skipped at its instant, even if another skip or an unskip came since: the
                  -- last skip or unskip before it says.
                  AND NOT coalesce((SELECT e.action = 'skip' AND (e.detail ->> 'skipped')::timestamptz = f.at
                                    FROM foojob_control_events e
                                    WHERE e.job = f.job AND e.action IN ('skip', 'unskip') AND e.at <= f.at
                                    ORDER BY e.at DESC LIMIT 1), false)
                  -- Armed under a schedule replaced before its instant: not a fire at all.
                  AND NOT coalesce(st.cron IS NOT NULL AND st.schedule_version <> f.version
                                   AND (st.schedule_set_at IS NULL OR st.schedule_set_at <= f.at), false)
                  -- Paused at its instant (the last pause or resume before it says).
                  AND NOT coalesce((SELECT e.action = 'pause' AND (e.resume_at IS NULL OR e.resume_at > f.at)
                                    FROM foojob_control_events e
                                    WHERE e.job = f.job AND e.action IN ('pause', 'resume', 'auto-resume')
                                      AND e.at <= f.at
                                    ORDER BY e.at DESC LIMIT 1), false)
                  AND f.at > clock_timestamp() - interval '30 seconds'
            ) AS c;
            IF cardinality(due_at) > 0 OR clock_timestamp() >= until THEN
                RETURN QUERY SELECT d.job, d.at, d.status FROM unnest(due_jobs, due_at, due_status) AS d (job, at, status)
                             UNION ALL
                             SELECT h.job, h.at, 'held' FROM unnest(held_jobs, held_at) AS h (job, at);
                RETURN;
            END IF;
        END IF;
        IF i > n AND cardinality(held_at) = 0 OR clock_timestamp() >= until THEN
            RETURN;
        END IF;
        wake := until;
        IF i <= n THEN
            wake := least(wake, instants[i] + grace);
        END IF;
        IF cardinality(held_at) > 0 THEN
            wake := least(wake, clock_timestamp() + interval '250 milliseconds');
        END IF;
        PERFORM pg_sleep(greatest(0.005, extract(epoch FROM wake - clock_timestamp())));
    END LOOP;
END
$$;

-- A fire's locks and its claim in one round trip (bot/runner.py; the query claim_fire says what
-- it decides): the job's lock (a run of the job at a time), then its instant's, waiting for them at
-- most LOCK_WAIT (lock_timeout, put back to 0 once held). The claim is a statement of the function
-- after the locks are held: it sees everything committed until then (READ COMMITTED), which one
-- statement taking the locks itself would not (its snapshot is older than its locks).
CREATE FUNCTION foojob_claim_fire(p_job TEXT, p_trigger TEXT, p_at TIMESTAMPTZ, p_started TIMESTAMPTZ,
                                  p_by TEXT, p_version BIGINT, lock_wait TEXT)
RETURNS TABLE (paused BOOLEAN, skip_next TIMESTAMPTZ, cron TEXT, timezone TEXT, schedule_version BIGINT,
               id BIGINT, failures BIGINT, since TIMESTAMPTZ, started_at TIMESTAMPTZ)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    t0 TIMESTAMPTZ := clock_timestamp();
BEGIN
    PERFORM set_config('lock_timeout', lock_wait, true);
    PERFORM pg_advisory_xact_lock(7263520, hashtext(p_job));
    PERFORM pg_advisory_xact_lock(7263521, hashtext(p_job || ' ' || extract(epoch FROM p_at)::text));
    PERFORM set_config('lock_timeout', '0', true);
    -- The run starts once the locks are held: the caller's clock (the fire instants' clock, so that
    -- lag is measured on one clock) plus the time waited for them.
    p_started := p_started + (clock_timestamp() - t0);
    RETURN QUERY
    WITH state AS (
             SELECT s.paused AND (s.resume_at IS NULL OR s.resume_at > now()) AS paused, s.skip_next, s.cron,
                    s.timezone, s.schedule_version
             FROM foojob_job_state s WHERE s.job = p_job
         ),
         claim AS (
             INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, status, triggered_by)
             SELECT p_job, p_trigger, p_at, p_started, 'running', p_by
             WHERE NOT EXISTS (SELECT 1 FROM state WHERE state.paused OR state.skip_next = p_at
                                                      OR (p_version IS NOT NULL AND state.cron IS NOT NULL
                                                          AND state.schedule_version <> p_version))
               -- A fire of the schedule already reported missed (an outage, a stall) is not run late:
               -- the report took the instant's lock too, so one of the two wins.
               AND NOT (p_trigger = 'schedule' AND EXISTS (SELECT 1 FROM foojob_missed m
                                                           WHERE m.job = p_job AND m.scheduled_for = p_at))
             ON CONFLICT ON CONSTRAINT foojob_runs_one_per_fire DO NOTHING
             RETURNING foojob_runs.id
         ),
         streak AS (
             SELECT count(*) AS failures, min(r.started_at) AS since FROM foojob_runs r
             WHERE r.job = p_job AND r.status = 'failed' AND NOT r.retried
               AND r.id > coalesce((SELECT max(w.id) FROM foojob_runs w
                                    WHERE w.job = p_job AND w.status = 'succeeded'), 0)
         )
    SELECT st.paused, st.skip_next, st.cron, st.timezone, st.schedule_version, c.id,
           CASE WHEN c.id IS NOT NULL THEN (SELECT streak.failures FROM streak) END,
           CASE WHEN c.id IS NOT NULL THEN (SELECT streak.since FROM streak) END,
           p_started
    FROM (SELECT 1) AS one LEFT JOIN state st ON true LEFT JOIN claim c ON true;
END
$$;
