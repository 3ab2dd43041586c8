-- Slack, as teams use it (SPEC version 3): messages through the Web API to a channel, a card per
-- run edited in place, and backlogs that fold their successes.
--   channel   NULL: the incoming webhook; else the channel ID the Web API posts to
--   method    'post' a new message, 'update' the run's card (chat.update: after the post, with its
--             ts), 'reply' in the card's thread
--   card      the card a message is (a post) or edits or replies to: 'run:<id>'
--   ts        Slack's ts of a delivered post: what an update or a reply needs
--   job, kind the job it is about; kind 'success' marks a run's plain success, which a backlog may
--             fold into one line (failures, alerts and announcements never fold)
ALTER TABLE foojob_outbox
    ADD COLUMN channel TEXT,
    ADD COLUMN method  TEXT NOT NULL DEFAULT 'post' CHECK (method IN ('post', 'update', 'reply')),
    ADD COLUMN card    TEXT,
    ADD COLUMN ts      TEXT,
    ADD COLUMN job     TEXT,
    ADD COLUMN kind    TEXT;
CREATE INDEX foojob_outbox_card ON foojob_outbox (card) WHERE card IS NOT NULL;
