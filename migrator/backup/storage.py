"""Where backups live: ``BACKUP_DIR`` by default, or any Django storage (``BACKUP_STORAGE``).

A backup is a payload file and a manifest ``<id>.json``. Both are written and synced under
temporary names, then renamed: the payload first, the manifest, which carries the
payload's checksum, last. A backup therefore exists (is listed, can be restored) only once
both are complete: a failure removes both, and a killed backup leaves hidden ``.partial``
files (with, at most, its payload beside the manifest's). Each one is held with an OS lock
while it is written, which the kernel drops with a killed writer, so the next backup into
the directory can tell leftovers from live ones and removes the leftovers.

In a directory, files are created 0600 in a 0700 directory. Through a Django storage
(object storage with django-storages, ...) the payload is staged in a private temporary
directory and uploaded from there (multipart, one part after the other, read from the
file as it is sent); it is read back as a stream, into one private temporary file for a
restore; access control is then the storage's.
"""

import copy
import glob
import hashlib
import os
import re
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Final

from migrator import scratch
from migrator.conf import get_settings
from migrator.exceptions import BackupFailed

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: leftovers are kept, not told apart
    fcntl = None

MANIFEST_SUFFIX: Final = ".json"
PARTIAL_SUFFIX: Final = ".partial"
CLAIM_ATTEMPTS: Final = 5  # creations of a .partial file that other backups' sweeps may remove
NOTE_SUFFIX: Final = ".drill"  # beside the manifest, not sealed by it: it changes
STORAGE_PREFIX: Final = "migrator-backups"
# A payload or drill note: <id><suffix>, the id as new_backup_id makes it.
BACKUP_FILE: Final = re.compile(r"(?P<id>[A-Za-z0-9][A-Za-z0-9_.-]*-\d{8}T\d{6}Z-[0-9a-f]{6})\..+")
# An object uploaded to a storage this long ago whose manifest is still missing is an orphan:
# a backup saves its manifest as soon as its payload's upload completes.
ORPHAN_AGE: Final = timedelta(hours=1)
CHUNK: Final = 1024 * 1024
# botocore's defaults wait 60 s to connect and 60 s per read, five attempts: a store that
# swallows requests held a command for 5 minutes. Settings the project gives win.
S3_CLIENT_LIMITS: Final = {
    "connect_timeout": 5,
    "read_timeout": 10,
    "retries": {"mode": "standard", "max_attempts": 3},
}


class BackupStore(ABC):
    """The operations the backup engine needs from a place to keep backups."""

    location: str  # for messages
    described: str  # what "Cannot use the ...: <why>" names
    failures: tuple[type[Exception], ...]  # what the store raises when it cannot be used
    advice: str  # the next step when it cannot

    @contextmanager
    def _answering(self) -> Iterator[None]:
        """Failures of the store (network, credentials, permissions) as one line, exit 6."""
        from migrator.backup.base import first_line

        try:
            yield
        except (BackupFailed, FileNotFoundError):
            raise
        except self.failures as exc:
            raise BackupFailed(
                f"Cannot use the {self.described}: {first_line(exc)}; "
                f"{self.advice}; nothing was changed."
            ) from exc

    @abstractmethod
    @contextmanager
    def staging(self, filename: str) -> Iterator[Path]:
        """A new private local file to write a payload into; removed if not published."""

    @abstractmethod
    def publish(self, staged: Path, filename: str, backup_id: str, manifest: bytes) -> None:
        """Store a complete payload, then its manifest: the backup exists from here on."""

    @abstractmethod
    def backup_ids(self) -> list[str]:
        """The ids of every backup with a manifest."""

    @abstractmethod
    def read_manifest(self, backup_id: str) -> bytes | None:
        """The stored manifest, or None when there is no such backup."""

    @abstractmethod
    def open_payload(self, filename: str) -> BinaryIO:
        """The payload for reading; FileNotFoundError when it is gone."""

    @abstractmethod
    @contextmanager
    def local_payload(self, filename: str) -> Iterator[Path]:
        """A local path of the payload for tools that need one (pg_restore, sqlite3)."""

    @abstractmethod
    def delete(self, backup_id: str, filename: str) -> None:
        """Remove a backup: the manifest first, so it is never listed without its payload."""

    @abstractmethod
    def orphans(self) -> list[str]:
        """Payloads and drill notes whose manifest is gone (deleted by hand, or a prune
        killed between its deletions): nothing lists or restores them. Never a backup's
        that is being published."""

    @abstractmethod
    def delete_file(self, filename: str) -> None:
        """Remove one file of the store (an orphan)."""

    @abstractmethod
    def write_note(self, backup_id: str, note: bytes) -> None:
        """Keep what happened to a backup since (its last restore drill), replacing it."""

    @abstractmethod
    def read_note(self, backup_id: str) -> bytes | None:
        """The note of ``write_note``, or None."""


class DirectoryStore(BackupStore):
    failures = (OSError,)
    advice = "check that this user may read and write it"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.location = repr(str(directory))
        self.described = f"backup directory {self.location}"

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if self.directory.stat().st_mode & 0o077:
                self.directory.chmod(0o700)
        except OSError as exc:
            raise BackupFailed(
                f"Cannot use the backup directory {self.location}: {exc}; point "
                "MIGRATOR['BACKUP_DIR'] at a directory this user may create and write."
            ) from exc

    @contextmanager
    def staging(self, filename: str) -> Iterator[Path]:
        self._ensure_directory()
        self._remove_leftovers()
        staged = self.directory / f".{filename}{PARTIAL_SUFFIX}"
        try:
            with _claimed(staged):
                yield staged
        finally:
            for leftover in (staged, _journal_of(staged)):  # a hot journal: a failed copy's
                leftover.unlink(missing_ok=True)

    def publish(self, staged: Path, filename: str, backup_id: str, manifest: bytes) -> None:
        """The manifest is written (hidden) first, then both are renamed in turn: a full
        disk leaves nothing behind, and a kill between the renames leaves the manifest's
        ``.partial`` file, by which the next sweep finds the payload too."""
        _fsync(staged)
        manifest_path = self.directory / f".{backup_id}{MANIFEST_SUFFIX}{PARTIAL_SUFFIX}"
        payload = self.directory / filename
        with _claimed(manifest_path) as descriptor:
            try:
                with open(descriptor, "wb", closefd=False) as handle:
                    handle.write(manifest)
                os.fsync(descriptor)
                os.replace(staged, payload)
                os.replace(manifest_path, self.directory / f"{backup_id}{MANIFEST_SUFFIX}")
            except BaseException:
                for leftover in (manifest_path, payload):
                    leftover.unlink(missing_ok=True)
                raise
        _fsync_directory(self.directory)

    def _remove_leftovers(self) -> None:
        """Remove the ``.partial`` files of killed backups: those nobody holds any more,
        and the payload a manifest's ``.partial`` file was to be published with."""
        for path in self.directory.glob(f".*{PARTIAL_SUFFIX}"):
            with suppress(FileNotFoundError), _unheld(path) as unheld:
                if unheld:
                    path.unlink()
                    self._remove_unpublished(path.name[1:].removesuffix(PARTIAL_SUFFIX))
        for journal in self.directory.glob(f".*{PARTIAL_SUFFIX}-journal"):  # _journal_of
            if not journal.with_name(journal.name.removesuffix("-journal")).exists():
                journal.unlink(missing_ok=True)

    def _remove_unpublished(self, name: str) -> None:
        """The payload of ``<id>.json`` if that manifest was never published."""
        backup_id = name.removesuffix(MANIFEST_SUFFIX)
        if backup_id == name or (self.directory / name).exists():
            return
        for payload in self.directory.glob(f"{glob.escape(backup_id)}.*"):
            if payload.name != f"{backup_id}{NOTE_SUFFIX}":
                payload.unlink(missing_ok=True)

    def backup_ids(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        with self._answering():
            names = [path.name for path in self.directory.iterdir()]
        return sorted(
            name.removesuffix(MANIFEST_SUFFIX)
            for name in names
            if name.endswith(MANIFEST_SUFFIX) and not name.startswith(".")
        )

    def read_manifest(self, backup_id: str) -> bytes | None:
        try:
            with self._answering():
                return (self.directory / f"{backup_id}{MANIFEST_SUFFIX}").read_bytes()
        except FileNotFoundError:
            return None

    def open_payload(self, filename: str) -> BinaryIO:
        with self._answering():
            return (self.directory / filename).open("rb")

    @contextmanager
    def local_payload(self, filename: str) -> Iterator[Path]:
        yield self.directory / filename

    def delete(self, backup_id: str, filename: str) -> None:
        for name in (f"{backup_id}{MANIFEST_SUFFIX}", filename, f"{backup_id}{NOTE_SUFFIX}"):
            with suppress(FileNotFoundError), self._answering():
                (self.directory / name).unlink()

    def orphans(self) -> list[str]:
        """A manifest is renamed into place after its payload, while its ``.partial`` file
        exists: looking for that file first, then the manifest, misses no publication."""
        if not self.directory.is_dir():
            return []
        with self._answering():
            names = sorted(path.name for path in self.directory.iterdir())
        found = []
        for backup_id, name in _backup_files(names):
            publishing = self.directory / f".{backup_id}{MANIFEST_SUFFIX}{PARTIAL_SUFFIX}"
            published = self.directory / f"{backup_id}{MANIFEST_SUFFIX}"
            if not publishing.exists() and not published.exists():
                found.append(name)
        return found

    def delete_file(self, filename: str) -> None:
        with suppress(FileNotFoundError), self._answering():
            (self.directory / filename).unlink()

    def write_note(self, backup_id: str, note: bytes) -> None:
        partial = self.directory / f".{backup_id}{NOTE_SUFFIX}{PARTIAL_SUFFIX}"
        with _claimed(partial) as descriptor:
            with open(descriptor, "wb", closefd=False) as handle:
                handle.write(note)
            os.replace(partial, self.directory / f"{backup_id}{NOTE_SUFFIX}")

    def read_note(self, backup_id: str) -> bytes | None:
        try:
            with self._answering():
                return (self.directory / f"{backup_id}{NOTE_SUFFIX}").read_bytes()
        except FileNotFoundError:
            return None


class DjangoStorageStore(BackupStore):
    """Backups in a Django storage, under ``migrator-backups/``.

    Any failure of the storage (an endpoint that does not answer, refused credentials, a
    missing bucket) is one ``BackupFailed`` line; a backup checks that the storage answers
    before it dumps anything.
    """

    failures = (Exception,)  # botocore, google.cloud, azure: no common base class
    advice = "check that it is reachable and its settings"

    def __init__(self, alias: str) -> None:
        from django.core.files.storage import storages

        try:
            self.storage = _bounded(storages[alias])
        except Exception as exc:  # InvalidStorageError, ImportError of a backend, ...
            raise BackupFailed(f"Cannot use the storage {alias!r} for backups: {exc}.") from exc
        self.location = f"storage {alias!r}"
        self.described = f"{self.location} for backups"

    def _name(self, filename: str) -> str:
        return f"{STORAGE_PREFIX}/{filename}"

    @contextmanager
    def staging(self, filename: str) -> Iterator[Path]:
        self.backup_ids()  # a storage that does not answer fails before the dump
        with scratch.private_directory("backup") as private:
            staged = private / filename
            os.close(scratch.private_file(staged))
            yield staged

    def publish(self, staged: Path, filename: str, backup_id: str, manifest: bytes) -> None:
        from django.core.files.base import ContentFile, File

        with self._answering():
            if _uploads_with_boto3(self.storage):
                self._upload(self._name(filename), staged)
            else:
                with staged.open("rb") as handle:
                    self._save(self._name(filename), File(handle))
            with self._deleted_on_failure(self._name(filename)):  # never listed without it
                self._save(self._name(f"{backup_id}{MANIFEST_SUFFIX}"), ContentFile(manifest))

    @contextmanager
    def _deleted_on_failure(self, name: str) -> Iterator[None]:
        """The object ``name`` deleted if the block fails: nothing half-stored stays."""
        try:
            yield
        except BaseException:
            with suppress(Exception):
                self.storage.delete(name)
            raise

    def _upload(self, name: str, staged: Path) -> None:
        """The staged file up with boto3's transfer manager, one part after the other.

        Given a file name, s3transfer reads each part from the file as it sends it, so
        memory stays flat (half a MB measured, whatever the payload's size) and the part
        size grows as needed to stay within S3's 10,000 parts. Its threads are turned off:
        ten parts in flight held about 30 MB more (measured). The part size and threshold
        are the storage's (``AWS_S3_TRANSFER_CONFIG``), the object parameters (ACL,
        encryption, storage class) those its own ``save()`` would use. No part is left
        on failure.
        """
        from storages.utils import clean_name

        config = copy.copy(self.storage.transfer_config)
        config.use_threads = False
        key = self.storage._normalize_name(clean_name(name))
        with self._deleted_on_failure(name):
            self.storage.bucket.Object(key).upload_file(
                str(staged), ExtraArgs=self.storage._get_write_parameters(key), Config=config
            )

    def _save(self, name: str, content) -> None:
        saved = self.storage.save(name, content)
        if saved != name:  # the storage renamed it to avoid a clash: never expected for an id
            self.storage.delete(saved)
            raise BackupFailed(f"{self.location} already holds {name!r}; backup not stored.")

    def backup_ids(self) -> list[str]:
        try:
            with self._answering():
                _, files = self.storage.listdir(STORAGE_PREFIX)
        except FileNotFoundError:
            return []
        return sorted(
            name.removesuffix(MANIFEST_SUFFIX)
            for name in files
            if name.endswith(MANIFEST_SUFFIX) and not name.startswith(".")
        )

    def read_manifest(self, backup_id: str) -> bytes | None:
        return self._read(f"{backup_id}{MANIFEST_SUFFIX}")

    def _read(self, filename: str) -> bytes | None:
        """None when the object is not there, or went since it was listed (a prune)."""
        name = self._name(filename)
        try:
            with self._gone_is_missing(name), self._answering():
                if not self.storage.exists(name):
                    return None
                with self.storage.open(name, "rb") as handle:
                    return handle.read()
        except FileNotFoundError:
            return None

    def _still_there(self, name: str) -> bool:
        """Whether an object that failed to answer exists: one another prune deleted since
        it was listed is missing, not a store that fails."""
        with self._answering():
            return self.storage.exists(name)

    def open_payload(self, filename: str) -> BinaryIO:
        """A stream whose reads fail as the store's other calls do: one BackupFailed line
        (a download cut half-way is botocore's IncompleteReadError, no OSError)."""
        name = self._name(filename)
        with self._gone_is_missing(name), self._answering():
            if not self.storage.exists(name):
                raise FileNotFoundError(name)
            return _Answered(_streaming(self.storage.open(name, "rb")), self, name)

    @contextmanager
    def _gone_is_missing(self, name: str) -> Iterator[None]:
        """A failure of an object deleted meanwhile (a prune) is FileNotFoundError."""
        try:
            yield
        except BackupFailed:
            if self._still_there(name):
                raise
            raise FileNotFoundError(name) from None

    @contextmanager
    def local_payload(self, filename: str) -> Iterator[Path]:
        with scratch.private_directory("restore") as private:
            local = private / filename
            with self.open_payload(filename) as source:
                try:
                    with os.fdopen(scratch.private_file(local), "wb") as target:
                        shutil.copyfileobj(source, target, CHUNK)
                except OSError as exc:  # the storage's own failures are BackupFailed
                    raise BackupFailed(
                        f"Cannot keep a local copy of {filename} from {self.location} in "
                        f"{private.parent}: {exc.strerror or exc}; free as much space there as "
                        "the backup's size, or point TMPDIR at a larger disk; nothing was "
                        "changed."
                    ) from exc
            yield local

    def delete(self, backup_id: str, filename: str) -> None:
        with self._answering():
            self.storage.delete(self._name(f"{backup_id}{MANIFEST_SUFFIX}"))
            self.storage.delete(self._name(filename))
            self.storage.delete(self._name(f"{backup_id}{NOTE_SUFFIX}"))

    def orphans(self) -> list[str]:
        """Objects without a manifest, uploaded more than ORPHAN_AGE ago: a storage has no
        ``.partial`` file to tell a backup being published."""
        try:
            with self._answering():
                _, names = self.storage.listdir(STORAGE_PREFIX)
        except FileNotFoundError:
            return []
        manifests = set(names)
        found = []
        for backup_id, name in _backup_files(sorted(names)):
            if f"{backup_id}{MANIFEST_SUFFIX}" in manifests:
                continue
            try:
                with self._gone_is_missing(self._name(name)), self._answering():
                    uploaded = self.storage.get_modified_time(self._name(name))
            except FileNotFoundError:  # deleted since it was listed: no orphan
                continue
            if uploaded.tzinfo is None:  # USE_TZ = False: the storage's local time
                uploaded = uploaded.astimezone()
            if datetime.now(UTC) - uploaded > ORPHAN_AGE:
                found.append(name)
        return found

    def delete_file(self, filename: str) -> None:
        with self._answering():
            self.storage.delete(self._name(filename))

    def write_note(self, backup_id: str, note: bytes) -> None:
        from django.core.files.base import ContentFile

        name = self._name(f"{backup_id}{NOTE_SUFFIX}")
        with self._answering():
            self.storage.delete(name)  # saving never overwrites: the storage would rename it
            self._save(name, ContentFile(note))

    def read_note(self, backup_id: str) -> bytes | None:
        return self._read(f"{backup_id}{NOTE_SUFFIX}")


class _Answered:
    """A stream of a storage's object, read within the store's ``_answering``."""

    def __init__(self, stream: Any, store: "DjangoStorageStore", name: str) -> None:
        self.stream, self.store, self.name = stream, store, name

    def read(self, size: int = -1) -> bytes:
        with self.store._gone_is_missing(self.name), self.store._answering():
            return self.stream.read(size)

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> "_Answered":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _backup_files(names: list[str]) -> Iterator[tuple[str, str]]:
    """(backup id, name) of the payloads and notes among ``names``; not manifests, not
    hidden files, not what else may share the place."""
    for name in names:
        match = BACKUP_FILE.fullmatch(name)
        if match is not None and name != f"{match['id']}{MANIFEST_SUFFIX}":
            yield match["id"], name


def _bounded(storage: Any) -> Any:
    """An S3 storage whose client gives up on a silent store within seconds (S3_CLIENT_LIMITS).

    A copy: the project's own storage instance keeps its settings. The limits apply where
    the storage's ``client_config`` (``AWS_S3_CLIENT_CONFIG``) sets none of its own.
    """
    config = getattr(storage, "client_config", None)
    if config is None or not callable(getattr(config, "merge", None)):
        return storage  # not django-storages' S3 backend
    from botocore.config import Config

    bounded = copy.copy(storage)  # its __getstate__ leaves the connections behind
    bounded.client_config = Config(**S3_CLIENT_LIMITS).merge(config)
    return bounded


def _uploads_with_boto3(storage: Any) -> bool:
    """Whether the storage is django-storages' S3 backend (boto3's transfer manager).

    Its ``save()`` hands boto3 a file object, of which s3transfer reads parts into
    memory for its ten threads (112 MB more for a 150 MB payload, measured); its files
    in write mode buffer each 5 MB part two or three times over (14 MB more). The
    payload is a local file, so it is uploaded from its name instead
    (``DjangoStorageStore._upload``), with the key and object parameters of two of the
    backend's private methods (django-storages 1.14); a version without them is given
    the file through ``save()``, as other storages are.
    """
    boto3_backend = hasattr(type(storage), "bucket")  # a property: not evaluated here
    return (
        boto3_backend
        and getattr(storage, "transfer_config", None) is not None
        and all(hasattr(storage, name) for name in ("_normalize_name", "_get_write_parameters"))
    )


def _streaming(handle: Any) -> BinaryIO:
    """A payload opened through a storage, read as a stream rather than copied whole first.

    django-storages' ``S3File`` downloads the whole object into a spooled file (in memory
    unless ``AWS_S3_MAX_MEMORY_SIZE`` is set) before its first byte can be read; the boto3
    object behind it streams. Other storages' files are read as they are.
    """
    s3_object = getattr(handle, "obj", None)
    if s3_object is None or not callable(getattr(s3_object, "get", None)):
        return handle
    handle.close()
    return s3_object.get()["Body"]  # botocore's StreamingBody: read() and close()


def backup_store() -> BackupStore:
    """The store the settings name: ``BACKUP_STORAGE`` when set, else ``BACKUP_DIR``."""
    settings = get_settings()
    if settings.backup_storage:
        return DjangoStorageStore(settings.backup_storage)
    return DirectoryStore(settings.backup_dir)


def file_digest(handle: BinaryIO) -> tuple[int, str]:
    """Size and SHA-256 of a stream, read in chunks: memory stays flat."""
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


@contextmanager
def _claimed(path: Path) -> Iterator[int]:
    """Create ``path`` (0600) and hold an OS lock on it until it is published or dropped.

    Another backup's sweep can take the file for a leftover in the instant between its
    creation and its lock, and remove it: it is then created again.
    """
    for _attempt in range(CLAIM_ATTEMPTS):
        descriptor = scratch.private_file(path)
        if fcntl is None:
            break
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        if _names(path, descriptor):
            break
        os.close(descriptor)
    else:
        raise BackupFailed(f"{path.name} was removed as it was created; try again.")
    try:
        yield descriptor
    finally:
        os.close(descriptor)


@contextmanager
def _unheld(path: Path) -> Iterator[bool]:
    """Whether ``path`` is a leftover no live process holds (see ``_claimed``).

    It is held meanwhile, so a leftover can be removed without a writer taking it back.
    """
    if fcntl is None:  # no OS lock to tell a leftover from a live file: keep them all
        yield False
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield _names(path, descriptor)  # the lock is on this file, not on a newer one
    finally:
        os.close(descriptor)


def _names(path: Path, descriptor: int) -> bool:
    """Whether ``path`` still names the file open as ``descriptor``."""
    try:
        return os.stat(path).st_ino == os.fstat(descriptor).st_ino
    except FileNotFoundError:
        return False


def _journal_of(path: Path) -> Path:
    """SQLite's rollback journal beside a database file."""
    return path.with_name(f"{path.name}-journal")


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_directory(directory: Path) -> None:
    with suppress(OSError):  # not every filesystem lets a directory be synced
        _fsync(directory)
