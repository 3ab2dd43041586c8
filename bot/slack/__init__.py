"""Slack: Block Kit messages (and, with the Slack control surface, the Bolt app)."""
