"""foojob: a batch job on a cron schedule, controlled from Slack, HTTP and a CLI."""

# The one place the version is written: pyproject.toml reads it from here (so a checkout that is
# not installed, as on a Procfile platform, knows it too); `foojob --version` prints it.
__version__ = "0.1.0"
