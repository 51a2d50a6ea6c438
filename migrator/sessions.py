"""Connections of migrator's own beside the ones Django gives the project.

The run lock, a backup's snapshot, the look at who blocks a migration and a scratch
database's administration each need a session of their own, opened while the command's
connection may be in a transaction.
"""

from django.db.backends.base.base import BaseDatabaseWrapper


def own_session(connection: BaseDatabaseWrapper) -> BaseDatabaseWrapper:
    """A new connection to ``connection``'s database, never from its psycopg pool
    (``OPTIONS["pool"]``): a command holding one of the pool's connections would wait for
    another, and a pool of one never gives it."""
    session = connection.copy()
    options = session.settings_dict.get("OPTIONS") or {}
    if "pool" in options:
        session.settings_dict["OPTIONS"] = {k: v for k, v in options.items() if k != "pool"}
    return session
