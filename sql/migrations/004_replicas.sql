-- Which service processes are up: each writes a heartbeat every couple of seconds. Catch-up at
-- start-up runs a missed fire only if no other process was up at its instant (then it was theirs:
-- run, skipped while paused, or coalesced — not missed).
CREATE TABLE foojob_replicas (
    name       TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    last_seen  TIMESTAMPTZ NOT NULL
);
