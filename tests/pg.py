"""A throwaway embedded PostgreSQL (pgserver), for the tests and the benchmark."""

from __future__ import annotations

import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def embedded_postgres(prefix: str) -> Iterator[str]:
    """Yield the URI of a private server, deleted afterwards.

    Not under pytest's tmp_path: pytest deletes all but the newest three of those, which another
    pytest run on the machine could do to a server still in use.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        import pgserver

        server = pgserver.get_server(home / "data", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(home, ignore_errors=True)
