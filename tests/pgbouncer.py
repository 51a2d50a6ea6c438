"""A real PgBouncer in transaction pooling in front of the suite's PostgreSQL server.

Debian's ``pgbouncer`` package (``.ci/run`` installs it); the tests that need it skip,
saying so, where it is absent. PgBouncer refuses to run as root: as root, it is started
as the user that owns the server's socket directory (pgserver's ``pgserver`` user).
"""

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from tests.s3 import free_port

SKIP_REASON = "PgBouncer is not installed (Debian: apt-get install pgbouncer)"


def binary() -> str | None:
    found = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    return found if os.access(found, os.X_OK) else None


@dataclass
class PgBouncer:
    """One PgBouncer process; ``port`` is where clients connect (127.0.0.1)."""

    process: subprocess.Popen
    port: int
    directory: str
    log: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, server: dict, *, pool_mode: str = "transaction") -> "PgBouncer":
        """In front of ``server`` (a Django DATABASES entry), every database name passed on."""
        host = server.get("HOST") or server.get("OPTIONS", {}).get("host") or "localhost"
        target = f"host={host} port={server.get('PORT') or 5432} user={server['USER']}"
        if server.get("PASSWORD"):
            target += f" password={server['PASSWORD']}"
        port = free_port()
        directory = tempfile.mkdtemp(prefix="migrator-pgbouncer-")
        os.chmod(directory, 0o755)  # noqa: S103 - read by the unprivileged user below
        config = Path(directory, "pgbouncer.ini")
        config.write_text(
            f"[databases]\n* = {target}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\n"
            f"listen_port = {port}\nunix_socket_dir =\nauth_type = any\n"
            f"pool_mode = {pool_mode}\nmax_client_conn = 200\ndefault_pool_size = 20\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
        )
        config.chmod(0o600 if server.get("PASSWORD") else 0o644)
        argv = [binary(), str(config)]
        if os.geteuid() == 0:
            owner = pwd.getpwuid(os.stat(host).st_uid).pw_name if host.startswith("/") else None
            argv[1:1] = ["-u", owner or "nobody"]
            if owner and server.get("PASSWORD"):
                shutil.chown(config, owner)
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        bouncer = cls(process, port, directory)
        listening = threading.Event()
        threading.Thread(target=bouncer._drain, args=(listening,), daemon=True).start()
        if not listening.wait(timeout=60) or process.poll() is not None:
            bouncer.stop()
            raise RuntimeError(f"PgBouncer did not start: {bouncer.log[-5:]}")
        return bouncer

    def _drain(self, listening: threading.Event) -> None:
        """Read its log for the line that says it listens, and keep reading (no full pipe)."""
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.log.append(line)
            if f"listening on 127.0.0.1:{self.port}" in line:
                listening.set()
        listening.set()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)
