-- Messages for Slack, written in the same transaction as what they report (a run, a pause), and
-- delivered in order by whichever replica gets the head of the queue.
CREATE TABLE foojob_outbox (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at    TIMESTAMPTZ,
    failed_at       TIMESTAMPTZ,
    last_error      TEXT
);
CREATE INDEX foojob_outbox_pending ON foojob_outbox (id) WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Slack allows a webhook about one message a second, with short bursts: a token bucket shared by
-- every replica (delivery is serialised by the lock on the head of the queue anyway).
CREATE TABLE foojob_outbox_pace (
    destination TEXT PRIMARY KEY,
    tokens      DOUBLE PRECISION NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
