-- Queries of the core (bot/runner.py, bot/control.py), loaded once by name.
-- Advisory lock keys: (7263520, hashtext(job)) guards "one run of a job at a time" across
-- every process on the database; the lock is tied to the run's transaction.

-- name: lock_fire
-- A retry (claim_retry) takes the job's lock (a run of the job at a time), then the lock of its own
-- instant (job, $2), waiting for them at most $3 (lock_timeout, for this statement only: it is put
-- back to 0 once they are held, so the job's own statements wait as long as they need). The
-- instant's lock is held from before the fire reads the skip until it commits: see try_lock_fire.
-- Left to right: the job's lock first, as a manual run takes it. (set_config is volatile, so each
-- CTE is evaluated once, in the order the query reads them.)
WITH waiting AS (SELECT set_config('lock_timeout', $3, true)),
     locked AS (
         SELECT pg_advisory_xact_lock(7263520, hashtext($1)),
                pg_advisory_xact_lock(7263521, hashtext($1 || ' ' || extract(epoch FROM $2::timestamptz)::text))
         FROM waiting
     )
SELECT set_config('lock_timeout', '0', true) FROM locked;

-- name: claim_fire
-- A fire's locks, then the job's row and the claim if the fire is to run — not paused, its instant
-- not skipped, and armed under the schedule version in force ($6; NULL: not a fire of the
-- schedule, or one armed before versions) — in one round trip (the function: migration 010).
-- ON CONFLICT DO NOTHING on (job, scheduled_for): a fire another replica already ran returns no
-- id. The failure streak is read only for a claimed fire (the run's message depends on it);
-- started_at is $4 plus the time waited for the locks.
SELECT * FROM foojob_claim_fire($1, $2, $3, $4, $5, $6, $7);

-- name: job_is_running
SELECT EXISTS (
    SELECT 1 FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = 7263520 AND objsubid = 2
      AND objid::bigint = (hashtext($1)::bigint & 4294967295)
);

-- name: claim_run
-- A fire armed under an older schedule version whose instant the new schedule still has (claim_fire
-- left that to bot.schedules.fires_at). ON CONFLICT DO NOTHING on (job, scheduled_for): a fire another replica already ran (or is
-- running: the insert waits for its transaction) returns no row. Times come from the process's
-- clock, as the fire instants do, so that lag and duration are measured on one clock.
-- Also returns the job's failure streak so far (failures since its last success, and when the
-- first of them started), read in the same round trip: the run's message depends on it.
WITH streak AS (
    SELECT count(*) AS failures, min(started_at) AS since FROM foojob_runs
    WHERE job = $1 AND status = 'failed' AND NOT retried
      AND id > coalesce((SELECT max(id) FROM foojob_runs WHERE job = $1 AND status = 'succeeded'), 0)
)
INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, status, triggered_by)
VALUES ($1, $2, $3, $4, 'running', $5)
ON CONFLICT ON CONSTRAINT foojob_runs_one_per_fire DO NOTHING
RETURNING id, (SELECT failures FROM streak) AS failures, (SELECT since FROM streak) AS since;

-- name: claim_manual_run
-- A manual run takes the job's lock and makes its claim in one round trip. locked = false: a run
-- of the job is in progress somewhere. (The lock CTE calls a volatile function, so it is
-- evaluated once, before the insert that reads it.)
WITH lock AS (SELECT pg_try_advisory_xact_lock(7263520, hashtext($1)) AS locked),
     claim AS (
         INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, status, triggered_by)
         SELECT $1, 'manual', NULL, $2, 'running', $3 FROM lock WHERE locked
         RETURNING id
     ),
     streak AS (  -- as in claim_run
         SELECT count(*) AS failures, min(started_at) AS since FROM foojob_runs
         WHERE job = $1 AND status = 'failed' AND NOT retried
           AND id > coalesce((SELECT max(id) FROM foojob_runs WHERE job = $1 AND status = 'succeeded'), 0)
     )
SELECT (SELECT locked FROM lock) AS locked, (SELECT id FROM claim) AS id,
       (SELECT failures FROM streak) AS failures, (SELECT since FROM streak) AS since;

-- name: claim_retry
-- A retry of a failed fire ($2), attempt $3, once the fire's locks are held (lock_fire): the pending
-- retry is taken (deleted) and the attempt claimed, in one statement. Only one replica takes it:
-- the others, waiting for the locks, find it gone. A paused job's retry is taken and not made (a
-- pause cancels pending retries). The failure streak as in claim_fire.
WITH state AS (
         SELECT paused AND (resume_at IS NULL OR resume_at > now()) AS paused
         FROM foojob_job_state WHERE job = $1
     ),
     taken AS (
         DELETE FROM foojob_retries WHERE job = $1 AND scheduled_for = $2 AND attempt = $3 RETURNING attempt
     ),
     claim AS (
         INSERT INTO foojob_runs (job, trigger, scheduled_for, started_at, status, attempt)
         SELECT $1, 'retry', $2, $4, 'running', attempt FROM taken
         WHERE NOT EXISTS (SELECT 1 FROM state WHERE paused)
         ON CONFLICT ON CONSTRAINT foojob_runs_one_per_fire DO NOTHING
         RETURNING id
     )
SELECT coalesce((SELECT paused FROM state), false) AS paused, c.id,
       CASE WHEN c.id IS NOT NULL THEN (
           SELECT count(*) FROM foojob_runs
           WHERE job = $1 AND status = 'failed' AND NOT retried
             AND id > coalesce((SELECT max(id) FROM foojob_runs WHERE job = $1 AND status = 'succeeded'), 0)
       ) END AS failures,
       CASE WHEN c.id IS NOT NULL THEN (
           SELECT min(started_at) FROM foojob_runs
           WHERE job = $1 AND status = 'failed' AND NOT retried
             AND id > coalesce((SELECT max(id) FROM foojob_runs WHERE job = $1 AND status = 'succeeded'), 0)
       ) END AS since
FROM (SELECT 1) AS one LEFT JOIN claim c ON true;

-- name: finish_run_retry
-- A failed attempt that will be tried again: its record (retried: not a failure of the streak)
-- and the next attempt, due at $6, in one statement; every replica hears of it at COMMIT.
WITH done AS (
    UPDATE foojob_runs SET status = $2, result = $3, error = $4, finished_at = $5, retried = true
    WHERE id = $1 RETURNING job, scheduled_for, attempt
),
queued AS (
    INSERT INTO foojob_retries (job, scheduled_for, attempt, due_at)
    SELECT job, scheduled_for, attempt + 1, $6 FROM done
    ON CONFLICT DO NOTHING
    RETURNING job
)
SELECT pg_notify('foojob_retry', job) FROM queued;

-- name: job_paused
-- Whether the job is paused now (read before queuing a retry: a pause made while the attempt ran
-- cancels the next one too).
SELECT coalesce((SELECT paused AND (resume_at IS NULL OR resume_at > now()) FROM foojob_job_state WHERE job = $1),
                false);

-- name: pending_retries
-- The attempts still to make, of one job ($1) or of all (NULL), soonest first.
SELECT job, scheduled_for, attempt, due_at FROM foojob_retries
WHERE $1::text IS NULL OR job = $1
ORDER BY due_at;

-- name: cancel_retries
-- A pause cancels the job's pending retries: how many.
WITH gone AS (DELETE FROM foojob_retries WHERE job = $1 RETURNING 1) SELECT count(*) FROM gone;

-- name: savepoint_job
SAVEPOINT foojob_job;

-- name: rollback_job
ROLLBACK TO SAVEPOINT foojob_job;

-- name: restore_session
-- After an SQL job's statements, before the run is recorded in the same transaction: what the job
-- may have SET LOCAL that the recording depends on goes back to the session's own (a search_path
-- without foojob's tables, another role, a short statement_timeout). pg_catalog is searched first
-- whatever the search_path.
SELECT pg_catalog.set_config('role', 'none', true), pg_catalog.set_config(name, reset_val, true)
FROM pg_catalog.pg_settings WHERE name IN ('search_path', 'statement_timeout', 'lock_timeout');

-- name: finish_run
-- The run's record and its Slack messages ($6: an array of outbox rows as bot.notify.outbox_row
-- makes them, in order; null when nothing is posted) in one statement. (No NOTIFY: the process
-- that wrote the messages wakes its own dispatcher after COMMIT; a NOTIFY per run cost every
-- replica's LISTEN connection a wake-up for nothing.)
WITH done AS (
    UPDATE foojob_runs SET status = $2, result = $3, error = $4, finished_at = $5 WHERE id = $1 RETURNING id
)
INSERT INTO foojob_outbox (payload, channel, method, card, job, kind)
SELECT r.value -> 'payload', r.value ->> 'channel', coalesce(r.value ->> 'method', 'post'), r.value ->> 'card',
       r.value ->> 'job', r.value ->> 'kind'
FROM done, jsonb_array_elements(coalesce($6::jsonb, '[]'::jsonb)) WITH ORDINALITY AS r (value, n)
ORDER BY r.n;

-- name: last_run
SELECT * FROM foojob_runs WHERE job = $1 ORDER BY id DESC LIMIT 1;

-- name: runs
SELECT * FROM foojob_runs
WHERE ($1::text IS NULL OR job = $1)
ORDER BY id DESC
LIMIT $2;

-- name: job_state
-- A timed pause whose time has come reads as not paused, whether or not the automatic resume
-- has been written yet: the fire-time check never depends on a timer having run. The same row
-- carries the effective schedule, so a fire checks pause, schedule and skip in one read.
SELECT job,
       paused AND (resume_at IS NULL OR resume_at > now()) AS paused,
       paused_by, paused_at, pause_reason, resume_at,
       cron, timezone, schedule_source, schedule_set_by, schedule_set_at, schedule_version, skip_next,
       configured_cron, configured_timezone
FROM foojob_job_state WHERE job = $1;

-- name: jobs_on_record
-- Every job a process has recorded (a service that ran it, with its own FOOJOB_JOBS_DIR).
SELECT job FROM foojob_job_state ORDER BY job;

-- name: ensure_job_state
INSERT INTO foojob_job_state (job) VALUES ($1) ON CONFLICT (job) DO NOTHING;

-- name: lock_job_state
-- For a change of the schedule or the skip: one writer at a time per job, on any replica.
SELECT job,
       paused AND (resume_at IS NULL OR resume_at > now()) AS paused,
       paused_by, paused_at, pause_reason, resume_at,
       cron, timezone, schedule_source, schedule_set_by, schedule_set_at, schedule_version, skip_next,
       configured_cron, configured_timezone
FROM foojob_job_state WHERE job = $1 FOR UPDATE;

-- name: set_schedule
-- A new effective schedule; $6/$7 the configured schedule to remember (NULL: keep it). A change
-- of schedule forgets a skip: the skipped instant belonged to the schedule it replaces.
UPDATE foojob_job_state
SET cron = $2, timezone = $3, schedule_source = $4, schedule_set_by = $5,
    configured_cron = coalesce($6, configured_cron), configured_timezone = coalesce($7, configured_timezone),
    schedule_set_at = $8, schedule_version = schedule_version + 1, skip_next = NULL, updated_at = now()
WHERE job = $1;

-- name: remember_configured
-- The first start that sees this job: its configured schedule is the effective one, from the start.
UPDATE foojob_job_state
SET cron = $2, timezone = $3, schedule_source = 'config', schedule_set_by = NULL, schedule_set_at = $4,
    configured_cron = $2, configured_timezone = $3, schedule_version = schedule_version + 1, updated_at = now()
WHERE job = $1;

-- name: remember_configured_only
-- The first start after a schedule was set (from the CLI) before any service ran: that runtime
-- schedule stays; the configured one is remembered for the next deploy to compare with.
UPDATE foojob_job_state SET configured_cron = $2, configured_timezone = $3, updated_at = now() WHERE job = $1;

-- name: set_skip
UPDATE foojob_job_state SET skip_next = $2, updated_at = now() WHERE job = $1;

-- name: try_lock_fire
-- The lock a fire of (job, instant) holds from before it reads the skip until it commits (see
-- lock_fire): a skip that gets it first is seen by the fire; one that cannot get it knows that
-- fire is already under way, and skips the one after.
SELECT pg_try_advisory_xact_lock(7263521, hashtext($1 || ' ' || extract(epoch FROM $2::timestamptz)::text));

-- name: fire_claimed
SELECT EXISTS (SELECT 1 FROM foojob_runs WHERE job = $1 AND scheduled_for = $2);

-- name: schedule_changes_since
-- Schedule changes after $2, oldest first: which schedule was in force at a past instant.
SELECT at, detail FROM foojob_control_events
WHERE job = $1 AND action IN ('schedule-set', 'schedule-reset', 'schedule-deploy') AND at > $2
ORDER BY at, id;

-- name: pause_job
-- Pausing a paused job keeps the original pausedAt and takes the new who/why/until.
INSERT INTO foojob_job_state AS s (job, paused, paused_by, paused_at, pause_reason, resume_at, updated_at)
VALUES ($1, true, $2, now(), $3, $4, now())
ON CONFLICT (job) DO UPDATE SET
    paused = true,
    paused_by = EXCLUDED.paused_by,
    paused_at = CASE WHEN s.paused AND (s.resume_at IS NULL OR s.resume_at > now())
                     THEN s.paused_at ELSE EXCLUDED.paused_at END,
    pause_reason = EXCLUDED.pause_reason,
    resume_at = EXCLUDED.resume_at,
    updated_at = now()
RETURNING job, paused, paused_by, paused_at, pause_reason, resume_at,
          cron, timezone, schedule_source, schedule_set_by, schedule_set_at, schedule_version, skip_next;

-- name: resume_job
-- Returns the row only if it was paused, so the caller knows whether anything changed.
UPDATE foojob_job_state
SET paused = false, paused_by = NULL, paused_at = NULL, pause_reason = NULL, resume_at = NULL,
    updated_at = now()
WHERE job = $1 AND paused
RETURNING job;

-- name: expire_pause
-- The automatic end of a timed pause; only one replica gets the row back.
UPDATE foojob_job_state
SET paused = false, paused_by = NULL, paused_at = NULL, pause_reason = NULL, resume_at = NULL,
    updated_at = now()
WHERE job = $1 AND paused AND resume_at IS NOT NULL AND resume_at <= now()
RETURNING job;

-- name: record_control_event
INSERT INTO foojob_control_events (job, action, actor, reason, resume_at, detail) VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id;

-- name: control_events_after
-- A job's changes after event $2, oldest first: what a replica tells of changes made elsewhere.
SELECT id, job, action, actor, reason, resume_at, detail, at FROM foojob_control_events
WHERE job = $1 AND id > $2 ORDER BY id LIMIT 50;

-- name: control_events_last
SELECT coalesce(max(id), 0) FROM foojob_control_events;

-- name: ping
SELECT 1;

-- name: claim_request_key
-- A row comes back when the key is new, or its last use is older than the window ($2 seconds).
-- Keys a day old are of no more use: each claim sweeps them away.
WITH swept AS (DELETE FROM foojob_request_keys WHERE at < now() - interval '1 day')
INSERT INTO foojob_request_keys AS k (key, at) VALUES ($1, now())
ON CONFLICT (key) DO UPDATE SET at = now()
    WHERE k.at < now() - make_interval(secs => $2)
RETURNING key;

-- name: notify_control
SELECT pg_notify('foojob_control', $1);

-- name: notify_roles
-- Slack said a user group's members changed ($1: its ID) to one replica: every replica reads the
-- group again at its next check.
SELECT pg_notify('foojob_roles', $1);

-- name: outbox_add
-- One outbox row as bot.notify.outbox_row makes it.
INSERT INTO foojob_outbox (payload, channel, method, card, job, kind)
SELECT $1::jsonb -> 'payload', $1::jsonb ->> 'channel', coalesce($1::jsonb ->> 'method', 'post'),
       $1::jsonb ->> 'card', $1::jsonb ->> 'job', $1::jsonb ->> 'kind';

-- name: outbox_head
-- Only the oldest pending message of a destination (the webhook, or a channel) may go: order is
-- per destination, and a destination that waits (Slack's Retry-After, a retry's backoff) holds
-- only its own messages. Of the heads not held by another replica, the one due first (then the
-- oldest) comes back, with how long it still waits.
-- The pending test is repeated outside the subquery: if another replica delivers the row and
-- commits between this statement's snapshot and its lock, PostgreSQL re-checks the outer WHERE
-- on the new row version only, and without it would hand back a message already delivered.
-- pending: whether any message waits (true with no id: other replicas hold every head).
SELECT head.id, head.payload, head.attempts, head.wait_s, head.channel, head.method, head.card, head.job,
       head.kind, head.created_at, queue.pending
FROM (SELECT EXISTS (SELECT 1 FROM foojob_outbox WHERE delivered_at IS NULL AND failed_at IS NULL) AS pending) AS queue
LEFT JOIN LATERAL (
    SELECT id, payload, attempts, greatest(0, extract(epoch FROM next_attempt_at - clock_timestamp())) AS wait_s,
           channel, method, card, job, kind, created_at
    FROM foojob_outbox
    WHERE id IN (SELECT min(id) FROM foojob_outbox WHERE delivered_at IS NULL AND failed_at IS NULL GROUP BY channel)
      AND delivered_at IS NULL AND failed_at IS NULL
    ORDER BY next_attempt_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) AS head ON true;

-- name: outbox_take_token
-- Take one token from the bucket of destination $3 (the webhook, or a channel: Slack's pace is per
-- channel) ($1 tokens a second, $2 at most); no row back: none to take.
INSERT INTO foojob_outbox_pace AS p (destination, tokens, updated_at)
VALUES ($3, $2 - 1, clock_timestamp())
ON CONFLICT (destination) DO UPDATE SET
    tokens = least($2, p.tokens + extract(epoch FROM clock_timestamp() - p.updated_at) * $1) - 1,
    updated_at = clock_timestamp()
WHERE least($2, p.tokens + extract(epoch FROM clock_timestamp() - p.updated_at) * $1) >= 1
RETURNING tokens;

-- name: outbox_delivered
-- $2: Slack's ts of a post made through the Web API (what the card's edit and replies need).
-- Also says whether another message is pending, so that the dispatcher needs no second look.
UPDATE foojob_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL, ts = $2 WHERE id = $1
RETURNING EXISTS (SELECT 1 FROM foojob_outbox WHERE delivered_at IS NULL AND failed_at IS NULL AND id <> $1) AS more;

-- name: outbox_retry
-- clock_timestamp(), not now(): the delay counts from Slack's answer, not from the start of the
-- transaction that sent the POST.
UPDATE foojob_outbox
SET attempts = attempts + $4, next_attempt_at = clock_timestamp() + make_interval(secs => $2), last_error = $3
WHERE id = $1;

-- name: outbox_failed
UPDATE foojob_outbox SET failed_at = now(), attempts = attempts + 1, last_error = $2 WHERE id = $1;

-- name: outbox_depth
SELECT count(*) AS depth, extract(epoch FROM now() - min(created_at)) AS oldest_age_s
FROM foojob_outbox WHERE delivered_at IS NULL AND failed_at IS NULL;

-- name: job_has_run
SELECT EXISTS (SELECT 1 FROM foojob_runs WHERE job = $1);

-- name: replica_heartbeat
-- Every 10 s, on the LISTEN connection (bot/listener.py). Also forgets processes not seen for a day
-- (killed ones never say goodbye), and answers which replica up now speaks for all when the
-- database cannot be reached (the first by name): during an outage the replicas cannot agree, so
-- they agree beforehand. And this replica's place among those up (rank, from 0, of replicas): each
-- starts the fires due at one instant from another place in the list of jobs (bot/scheduler.py).
WITH forgotten AS (DELETE FROM foojob_replicas WHERE last_seen < now() - interval '1 day'),
     beat AS (
         -- A name is one process's: once it has said goodbye, a late heartbeat changes nothing.
         INSERT INTO foojob_replicas (name, started_at, last_seen, backend_pid) VALUES ($1, now(), now(), pg_backend_pid())
         ON CONFLICT (name) DO UPDATE SET last_seen = now(), backend_pid = pg_backend_pid()
         WHERE foojob_replicas.stopped_at IS NULL
     ),
     up AS (
         SELECT name FROM foojob_replicas
         WHERE stopped_at IS NULL AND last_seen > now() - make_interval(secs => $2) AND name <> $1
         UNION ALL SELECT $1
     )
SELECT (SELECT min(name) FROM up) AS speaker,
       (SELECT count(*) FROM up WHERE name < $1) AS rank,
       (SELECT count(*) FROM up) AS replicas,
       -- A message left pending (its replica died before delivering it): worth waking the dispatcher.
       EXISTS (SELECT 1 FROM foojob_outbox WHERE delivered_at IS NULL AND failed_at IS NULL) AS outbox_pending;

-- name: standby_watch
-- A standby's window of the other replicas' fires (bot/standby.py; the function: migration 010).
-- In a transaction after no_statement_timeout: the wait is long on purpose (asyncpg's timeout bounds it).
SELECT job, scheduled_for, status FROM foojob_standby($1::text[], $2::timestamptz[], $3::bigint[], $4, $5);

-- name: no_statement_timeout
SELECT set_config('statement_timeout', '0', true);

-- name: replica_gone
-- Kept, with the time it stopped: the next start knows when a gap with no replica up began.
UPDATE foojob_replicas SET stopped_at = now(), last_seen = now() WHERE name = $1;

-- name: last_sign_of_life
-- When the last process other than $1 was last known up (or the last run started, if that is
-- later: replicas not seen for a day are forgotten). NULL: nothing ever ran here. Only processes
-- that started more than $3 seconds ago count: those starting now, with this one, were not up
-- during the gap (each of them computes the same gap, and its report and its run are claimed
-- once). A process that still beats counts from its last heartbeat, not as "up now": it may have
-- crashed since, or stopped firing to drain its run (fires it did run are not missed anyway).
-- A job first seen after that, that no service has ever fired (a deploy added it, in this start or
-- a replica's starting with it; a run-now from the CLI does not count), missed nothing: NULL.
WITH job AS (SELECT first_seen_at FROM foojob_job_state WHERE job = $2),
     life AS (
         SELECT greatest((SELECT max(coalesce(stopped_at, last_seen)) FROM foojob_replicas
                          WHERE name <> $1 AND started_at < now() - make_interval(secs => $3)),
                         (SELECT max(started_at) FROM foojob_runs WHERE job = $2)) AS since
     )
SELECT CASE WHEN (SELECT first_seen_at FROM job) > since
                 AND NOT EXISTS (SELECT 1 FROM foojob_runs WHERE job = $2 AND trigger <> 'manual')
            THEN NULL ELSE since END
FROM life;

-- name: another_alive
-- Whether a replica other than $1 is alive: not stopped, beaten within $2 seconds, and its LISTEN
-- connection still there (a process killed a moment ago still has a fresh heartbeat, but its
-- connection went with it).
SELECT EXISTS (SELECT 1 FROM foojob_replicas r JOIN pg_stat_activity a ON a.pid = r.backend_pid
               WHERE r.name <> $1 AND r.stopped_at IS NULL AND r.last_seen > now() - make_interval(secs => $2)
                 AND a.datname = current_database());

-- name: report_missed
-- Claim the report of a missed fire (once across replicas): only if no run claimed that instant,
-- none is under way (its instant's lock is free), and the job is neither skipping it nor paused
-- since before it (a pause that came after it does not make it any less missed).
INSERT INTO foojob_missed (job, scheduled_for, reason, fires)
SELECT $1, $2, $3, $4
WHERE NOT EXISTS (SELECT 1 FROM foojob_runs WHERE job = $1 AND scheduled_for = $2)
  AND NOT EXISTS (SELECT 1 FROM foojob_job_state
                  WHERE job = $1 AND (skip_next = $2 OR (paused AND (resume_at IS NULL OR resume_at > now())
                                                         AND coalesce(paused_at <= $2, true))))
  AND pg_try_advisory_xact_lock(7263521, hashtext($1 || ' ' || extract(epoch FROM $2::timestamptz)::text))
ON CONFLICT (job, scheduled_for) DO NOTHING
RETURNING job;

-- name: lock_outage_fires
-- The instants of job $1 among $2 whose lock this transaction takes: not a fire being run now (a
-- standby taking it over holds its instant's lock). A statement of its own, before
-- claim_outage_fires, so that the claim's snapshot sees a run that committed meanwhile.
SELECT at FROM unnest($2::timestamptz[]) AS at
WHERE pg_try_advisory_xact_lock(7263521, hashtext($1 || ' ' || extract(epoch FROM at)::text));

-- name: claim_outage_fires
-- The fires of job $1 that no replica ran while the database was unreachable ($2, their locks held:
-- lock_outage_fires), each claimed once across replicas (every replica saw the outage; whichever
-- claims a fire first reports it). Back: the fires this call claimed.
INSERT INTO foojob_missed (job, scheduled_for, reason, fires)
SELECT $1, at, 'outage', 1 FROM unnest($2::timestamptz[]) AS at
WHERE NOT EXISTS (SELECT 1 FROM foojob_runs WHERE job = $1 AND scheduled_for = at)
ON CONFLICT (job, scheduled_for) DO NOTHING
RETURNING scheduled_for;

-- name: runs_between
-- The fire instants in ($2, $3] that have a run: the rest of a schedule's fires were missed.
SELECT scheduled_for FROM foojob_runs WHERE job = $1 AND scheduled_for > $2 AND scheduled_for <= $3;

-- name: job_health
-- For the metrics: the last success, and the failures since.
SELECT (SELECT max(finished_at) FROM foojob_runs WHERE job = $1 AND status = 'succeeded') AS last_success,
       (SELECT count(*) FROM foojob_runs WHERE job = $1 AND status = 'failed' AND NOT retried
          AND id > coalesce((SELECT max(id) FROM foojob_runs WHERE job = $1 AND status = 'succeeded'), 0))
       AS failures;

-- name: outbox_card_ts
-- The ts of the message that carries a card now: its post, or the new message its result became
-- when Slack would not edit it (NULL: not posted, or set aside for good).
SELECT ts FROM foojob_outbox WHERE card = $1 AND method IN ('post', 'update') AND ts IS NOT NULL
ORDER BY id DESC LIMIT 1;

-- name: outbox_job_waiting
-- A backlog's head ($1) and what of its job ($2) waits after it, in order: what may fold into it
-- (bot.outbox.fold_plan decides). Only the head's own destination: a job whose channel changed
-- meanwhile has its other messages on another queue.
SELECT id, method, card, kind, created_at FROM foojob_outbox
WHERE job = $2 AND id >= $1 AND delivered_at IS NULL AND failed_at IS NULL
  AND channel IS NOT DISTINCT FROM (SELECT channel FROM foojob_outbox WHERE id = $1)
ORDER BY id;

-- name: outbox_folded_before
-- What earlier attempts at this head ($1) folded into it already (they count in its line).
SELECT count(*) FILTER (WHERE method = 'post') AS runs, max(created_at) AS until FROM foojob_outbox
WHERE last_error = 'folded into message ' || $1::bigint;

-- name: outbox_fold
-- Set aside rows $2 as folded into the head $1 (its line says them), and rows $3 as replies folded
-- with it. Only rows still waiting: none is marked that another replica delivered.
WITH folded AS (
    UPDATE foojob_outbox SET delivered_at = now(), last_error = 'folded into message ' || $1::bigint
    WHERE id = ANY($2::bigint[]) AND delivered_at IS NULL AND failed_at IS NULL
    RETURNING 1
), replies AS (
    UPDATE foojob_outbox SET delivered_at = now(), last_error = 'a reply folded with message ' || $1::bigint
    WHERE id = ANY($3::bigint[]) AND delivered_at IS NULL AND failed_at IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM folded) AS folded, (SELECT count(*) FROM replies) AS replies;

-- name: outbox_payload
SELECT payload FROM foojob_outbox WHERE id = $1;

-- name: outbox_backlog
-- How many messages wait, and the age (s) of the oldest: whether a backlog folds its successes.
SELECT count(*) AS depth, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest_s
FROM foojob_outbox WHERE delivered_at IS NULL AND failed_at IS NULL;

-- name: outbox_set_payload
UPDATE foojob_outbox SET payload = $2 WHERE id = $1;

-- name: outbox_pace_wait
-- The head's destination has no token left: it waits its turn (not an attempt), and the other
-- destinations' heads go first meanwhile.
UPDATE foojob_outbox SET next_attempt_at = clock_timestamp() + make_interval(secs => $2) WHERE id = $1;

-- name: channel_problem
-- The latest message a channel refused for good in the last hour (the bot is not in it, it does
-- not exist, it is archived): /healthz says so.
SELECT channel, last_error FROM foojob_outbox
WHERE channel IS NOT NULL AND failed_at > now() - interval '1 hour'
  AND last_error ~ '(not_in_channel|channel_not_found|is_archived)'
ORDER BY id DESC LIMIT 1;

-- name: orphan_cards
-- Cards still saying "running" (posted 2 s into a run) whose run never committed and was not
-- edited since: their replica died mid-run (the run's transaction went with it). The caller checks
-- that no run of the job is in progress (job_is_running) before it edits one.
SELECT o.card, o.job, o.created_at FROM foojob_outbox o
WHERE o.method = 'post' AND o.card LIKE 'run:%' AND o.delivered_at IS NOT NULL
  AND o.created_at > now() - interval '1 day' AND o.payload ->> 'text' LIKE '%running since%'
  AND NOT EXISTS (SELECT 1 FROM foojob_outbox u WHERE u.card = o.card AND u.id > o.id)
  AND NOT EXISTS (SELECT 1 FROM foojob_runs r WHERE r.id = substr(o.card, 5)::bigint)
ORDER BY o.id;
