"""Backups encrypted at rest in the age format (``age-encryption.org/v1``), through pyrage.

pyrage binds the reference implementation (rage); migrator only moves bytes through it.
``pyrage.encrypt_io`` pulls plaintext from a reader and ``decrypt_io`` pushes plaintext
to a writer, 64 KiB chunk by chunk: each engine keeps writing (or reading) a path, which
is a FIFO here, served by a thread that runs pyrage on the other end. No plaintext
reaches a file and no payload is held in memory; the SHA-256 the manifest records is
taken of the encrypted bytes as they are written. Any age tool decrypts a payload:
``age -d -i key.txt <payload>``.
"""

import fcntl
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from migrator import scratch
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed

AGE: Final = "age"  # the manifest's ``encryption`` value
PIPE_SIZE: Final = 1024 * 1024
INSTALL_HINT: Final = "pip install 'django-migrator[encryption]'"
IDENTITY_HINT: Final = (
    "pass --identity FILE, or set MIGRATOR['BACKUP_IDENTITY_FILE'] or MIGRATOR_BACKUP_IDENTITY_FILE"
)


def pyrage_module() -> Any:
    """pyrage, or BackupFailed saying how to install it."""
    try:
        import pyrage
    except ImportError:
        raise BackupFailed(
            f"Encrypted backups need pyrage, which is not installed; {INSTALL_HINT}."
        ) from None
    return pyrage


def configured_recipients() -> tuple[str, ...]:
    """The public keys of ``MIGRATOR["BACKUP_RECIPIENTS"]`` (a list, or a recipients file)."""
    setting = get_settings().backup_recipients
    if not isinstance(setting, str):
        return tuple(key for key in setting if key)
    where = f"recipients file {setting!r} of MIGRATOR['BACKUP_RECIPIENTS']"
    then = "; give a readable file of public keys, or the keys as a list"
    keys = _key_lines(setting, f"the {where}", then=then)
    if not keys:  # asked for encryption: an empty file must not mean plaintext backups
        raise BackupFailed(
            f"The {where} holds no key; add the public keys "
            "(age1...), one a line, or set BACKUP_RECIPIENTS to [] to write backups unencrypted."
        )
    return keys


def _key_lines(path: str | os.PathLike[str], described: str, then: str = "") -> tuple[str, ...]:
    """The keys of a key file as age writes them: one a line, ``#`` comments and blank lines
    skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise BackupFailed(f"Cannot read {described}: {exc.strerror or exc}{then}.") from exc
    stripped = (line.strip() for line in lines)
    return tuple(line for line in stripped if line and not line.startswith("#"))


def parse_recipients(keys: tuple[str, ...]) -> list[Any]:
    """pyrage recipients for age (``age1...``) and SSH public keys."""
    pyrage = pyrage_module()
    recipients = []
    for key in keys:
        kind = pyrage.ssh.Recipient if key.startswith("ssh-") else pyrage.x25519.Recipient
        if key.upper().startswith("AGE-SECRET-KEY-"):  # never shown, not even in part
            raise BackupFailed(
                "MIGRATOR['BACKUP_RECIPIENTS'] holds an age secret key (AGE-SECRET-KEY-1...): "
                "give its public key (age1..., 'age-keygen -y' prints it) and keep the secret "
                "key out of the settings (rotate it if they are shared)."
            )
        try:
            recipients.append(kind.from_str(key))
        except pyrage.RecipientError as exc:
            raise BackupFailed(
                f"{_short(key)!r} in MIGRATOR['BACKUP_RECIPIENTS'] is not an age public key "
                f"({exc}); give keys as age-keygen prints them (age1...)."
            ) from None
    return recipients


def load_identities(path: str | os.PathLike[str]) -> list[Any]:
    """The identities of an age identity file (``age-keygen`` output, ``#`` comments; lines
    it cannot read, a plugin's identity, are left out) or of an SSH private key (the
    identity of an ``ssh-`` recipient, as ``age -i ~/.ssh/id_ed25519`` takes it)."""
    pyrage = pyrage_module()
    shown = os.fspath(path)
    keys = _key_lines(path, f"the identity file {shown!r}", then="; nothing was changed")
    if keys and keys[0].startswith("-----BEGIN"):
        try:
            return [pyrage.ssh.Identity.from_buffer("\n".join(keys).encode() + b"\n")]
        except pyrage.IdentityError as exc:
            raise BackupFailed(
                f"{shown!r} is an SSH private key that cannot be used ({exc}; one with a "
                "passphrase cannot); nothing was changed."
            ) from None
    identities = []
    for key in keys:
        with suppress(pyrage.IdentityError):
            identities.append(pyrage.x25519.Identity.from_str(key))
    if not identities:
        raise BackupFailed(
            f"{shown!r} holds no age identity (AGE-SECRET-KEY-1...) or SSH private key; "
            "nothing was changed."
        )
    return identities


def identity_file(explicit: str | None) -> str | None:
    """``--identity``, else ``BACKUP_IDENTITY_FILE``, else ``MIGRATOR_BACKUP_IDENTITY_FILE``."""
    return explicit or get_settings().backup_identity_file


def _short(key: str) -> str:
    return key if len(key) <= 24 else f"{key[:20]}..."


def describe_recipients(keys: list[str]) -> str:
    return ", ".join(_short(key) for key in keys) or "no recipient"


@dataclass
class Sealed:
    """The encrypted bytes written so far: what the manifest's size and SHA-256 describe."""

    handle: BinaryIO
    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.handle.write(data)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


class _Hashed:
    """A reader that hashes what passes through it."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle, self.size, self.digest = handle, 0, hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.digest.update(data)
        self.size += len(data)
        return data


@contextmanager
def _fifo() -> Iterator[Path]:
    with scratch.private_directory("age") as private:  # 0700, swept if a kill leaves it
        path = private / "plaintext"
        os.mkfifo(path, 0o600)
        yield path


def _widen(descriptor: int) -> None:
    """Give the FIFO a 1 MiB buffer instead of 64 KiB, where the OS allows it.

    With 64 KiB the engine (pg_dump, compressing) and pyrage take turns about four times
    as often (context switches of the encrypting thread, measured); each turn on a busy
    machine is a wait for the other side to be scheduled.
    """
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux
        with suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(descriptor, fcntl.F_SETPIPE_SZ, PIPE_SIZE)


class _Worker(threading.Thread):
    """Runs one pyrage call; its error, if any, is kept for the caller."""

    def __init__(self, call: Callable[[], None]) -> None:
        super().__init__(daemon=True, name="migrator-age")
        self.call, self.error = call, None

    def run(self) -> None:
        try:
            self.call()
        except BaseException as exc:  # reported by the caller's thread
            self.error = exc


@contextmanager
def encrypting(destination: BinaryIO, keys: tuple[str, ...]) -> Iterator[tuple[Path, Sealed]]:
    """A FIFO to write a payload into; it reaches ``destination`` encrypted to ``keys``.

    The caller's own write end keeps the FIFO open until the block ends, so an engine
    that fails before opening it (or writes nothing) still ends the stream cleanly.
    """
    pyrage = pyrage_module()
    recipients = parse_recipients(keys)
    sealed = Sealed(destination)
    with _fifo() as fifo:
        plaintext = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        holder = os.open(fifo, os.O_WRONLY)
        os.set_blocking(plaintext, True)
        _widen(plaintext)
        reader = os.fdopen(plaintext, "rb", buffering=0)

        def encrypt() -> None:
            with reader:
                pyrage.encrypt_io(reader, sealed, recipients)

        worker = _Worker(encrypt)
        worker.start()
        try:
            yield fifo, sealed
        finally:
            os.close(holder)
            worker.join()
        if worker.error is not None:
            raise BackupFailed(f"Encrypting the backup failed: {worker.error}.")
    destination.flush()


@contextmanager
def decrypting(source: Path, identities: list[Any]) -> Iterator[Path]:
    """A FIFO that yields the plaintext of the age file ``source`` to one reader."""
    pyrage = pyrage_module()
    # Opened here, not by the worker: a worker that failed to open it would never open the
    # FIFO, and its reader would wait for a writer for ever.
    with source.open("rb") as ciphertext, _fifo() as fifo:

        def decrypt() -> None:
            with fifo.open("wb") as plaintext:
                _widen(plaintext.fileno())
                pyrage.decrypt_io(ciphertext, plaintext, identities)

        worker = _Worker(decrypt)
        worker.start()
        try:
            yield fifo
        finally:
            # A reader that never came, or stopped early: let the writer open and fail.
            with suppress(OSError):
                os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
            worker.join()
        if worker.error is not None and not isinstance(worker.error, BrokenPipeError):
            raise BackupFailed(f"Decrypting the backup failed: {worker.error}.")


def check_decryptable(
    handle: BinaryIO, identities: list[Any], *, backup_id: str, keys: list[str]
) -> tuple[int, str]:
    """Decrypt everything, keep nothing: the identity fits and every chunk is authentic.

    Returns the ciphertext's size and SHA-256, read in the same pass.
    """
    pyrage = pyrage_module()
    hashed = _Hashed(handle)
    try:
        pyrage.decrypt_io(hashed, _Discard(), identities)
    except pyrage.DecryptError as exc:
        if "no matching keys" in str(exc).lower():
            raise BackupFailed(
                f"The identity does not decrypt backup {backup_id!r}, which was encrypted to "
                f"{describe_recipients(keys)}; give the matching identity. Nothing was changed."
            ) from None
        raise BackupFailed(
            f"Backup {backup_id!r} is not a valid age file ({exc}); do not restore it. "
            "Nothing was changed."
        ) from None
    except OSError:
        raise BackupFailed(
            f"Backup {backup_id!r} fails age's authentication (its encrypted payload was "
            "altered or truncated); do not restore it. Nothing was changed."
        ) from None
    return hashed.size, hashed.digest.hexdigest()
