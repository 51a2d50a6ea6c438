"""The PostgreSQL server the suite runs against: DATABASE_URL when set, else one from pgserver."""

import os
import tempfile
from pathlib import Path

SERVER_URL_VARIABLE = "MIGRATOR_TEST_PG_URL"


def server_url() -> str:
    """A URL for the server, starting one once per test session (children inherit it)."""
    url = os.environ.get(SERVER_URL_VARIABLE) or os.environ.get("DATABASE_URL")
    if url:
        return url
    import pgserver

    # "delete": stopped, then its directory removed, when this process exits. Removing the
    # directory from an atexit hook of our own ran first and left the server running.
    pgdata = tempfile.mkdtemp(prefix="migrator-pg-")
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    url = server.get_uri()
    os.environ[SERVER_URL_VARIABLE] = url
    return url


def pgserver_bin_dir() -> str | None:
    """The server's PostgreSQL client binaries (pg_dump, pg_restore, psql), if known.

    ``MIGRATOR_TEST_PG_BIN_DIR`` when set (a server from ``DATABASE_URL``), else the pgserver
    package's.
    """
    if os.environ.get("MIGRATOR_TEST_PG_BIN_DIR"):
        return os.environ["MIGRATOR_TEST_PG_BIN_DIR"]
    from importlib.util import find_spec

    spec = find_spec("pgserver")
    if spec is None or spec.origin is None:
        return None
    return str(Path(spec.origin).parent / "pginstall" / "bin")
