"""foojob: a batch job on a cron schedule, controlled from Slack, HTTP and a CLI."""

__version__ = "0.1.0"
