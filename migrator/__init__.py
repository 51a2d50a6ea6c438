"""Deploy-time Django migrations with a lock, integrity checks, backups and an audit log."""

import logging

__version__ = "0.1.0"

# Records go where the project's LOGGING sends them; with none configured, Python's
# last-resort handler would print warnings to stderr above a command's one-line error.
logging.getLogger(__name__).addHandler(logging.NullHandler())
