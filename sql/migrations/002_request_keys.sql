-- Keys of requests that must take effect once even when they arrive twice (a double click on a
-- Slack button reaches any replica, twice). A key may be used again after its window.
CREATE TABLE foojob_request_keys (
    key TEXT PRIMARY KEY,
    at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
