"""Backups encrypted at rest in the age format, restored with the identity, on both vendors."""

import gzip
import io
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyrage
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connections

from migrator.backup import get_manifest, list_backups, restoring
from migrator.conf import get_settings
from migrator.models import Run
from tests import test_backup
from tests.test_backup import (
    FORMATS,
    _reseal,
    assert_restored_with_the_extension,
    backed_up_with_the_extension,
    change_everything,
    seed,
    snapshot,
    take_backup,
)
from tests.utils import (
    bin_with,
    run_command,
    start_child,
    start_paused_in_pg_restore,
)

backup_dir = test_backup.backup_dir  # autouse: each test keeps its backups to itself

ROW_TEXT = [b"alice", b"carol", b"a@example.com", b"c@example.com"]
PLAINTEXT_MAGIC = {
    ("native", "postgresql"): b"PGDMP",
    ("native", "sqlite"): b"SQLite format 3\x00",
    ("portable", "postgresql"): b"\x1f\x8b",
    ("portable", "sqlite"): b"\x1f\x8b",
}


def new_identity(path: Path) -> str:
    """Write an age identity file as age-keygen does; return its public key."""
    identity = pyrage.x25519.Identity.generate()
    public = str(identity.to_public())
    path.write_text(f"# public key: {public}\n{identity}\n")
    path.chmod(0o600)
    return public


@pytest.fixture
def keys(settings, tmp_path) -> tuple[str, Path]:
    """Backups are encrypted to a fresh key; its identity file is not configured."""
    public = new_identity(tmp_path / "key.txt")
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": [public]}
    return public, tmp_path / "key.txt"


@contextmanager
def paused_in_pg_restore(
    alias: str, backup_dir: Path, tmp_path: Path, *args: str, **env: str
) -> Iterator[None]:
    """A child command stopped inside pg_restore; it is killed (kill -9) with its tools after.

    ``env``: more of the child's environment."""
    child = start_paused_in_pg_restore(
        alias,
        backup_dir,
        tmp_path,
        *args,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its tools share its process group: killed together below
    )
    try:
        yield
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=30)


def decrypted(backup_dir: Path, backup_id: str, identity: Path) -> bytes:
    payload = (backup_dir / get_manifest(backup_id).payload).read_bytes()
    secret = identity.read_text().splitlines()[1]
    return pyrage.decrypt(payload, [pyrage.x25519.Identity.from_str(secret)])


@pytest.mark.parametrize("format", FORMATS)
def test_encrypted_backups_are_age_files_with_no_row_text(db_alias, format, keys, backup_dir):
    public, identity = keys
    seed(db_alias)
    backup_id = take_backup(db_alias, "--format", format)

    manifest = get_manifest(backup_id)
    payload = (backup_dir / manifest.payload).read_bytes()
    assert payload.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert (manifest.encryption, manifest.recipients) == ("age", [public])
    vendor = "sqlite" if db_alias == "default" else "postgresql"
    plaintext = decrypted(backup_dir, backup_id, identity)
    assert plaintext.startswith(PLAINTEXT_MAGIC[(format, vendor)])
    if format == "portable":
        assert b'"name":"alice"' in gzip.decompress(plaintext)
    written = b"".join(path.read_bytes() for path in backup_dir.rglob("*") if path.is_file())
    assert [text for text in ROW_TEXT if text in written] == []


@pytest.mark.parametrize("format", FORMATS)
def test_restore_needs_the_identity_and_then_brings_the_rows_back(db_alias, format, keys):
    public, identity = keys
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    change_everything(db_alias)
    changed = snapshot(db_alias)

    assert run_command("backup", "--verify", backup_id)[2] == 0  # no key needed
    _, err, code = run_command("restore", backup_id, database=db_alias)
    assert (code, err) == (
        6,
        f"Backup {backup_id!r} is encrypted to {public[:20]}...; pass --identity FILE, or set "
        "MIGRATOR['BACKUP_IDENTITY_FILE'] or MIGRATOR_BACKUP_IDENTITY_FILE. Nothing was "
        "changed.\n",
    )
    assert snapshot(db_alias) == changed
    assert not Run.objects.using(db_alias).filter(command="restore").exists()

    out, err, code = run_command(
        "restore", backup_id, "--identity", str(identity), database=db_alias
    )

    assert (code, err) == (0, ""), err
    assert snapshot(db_alias) == before
    safety = get_manifest(Run.objects.using(db_alias).get(command="restore").backup_id)
    assert (safety.reason, safety.encryption) == ("pre-restore", "age")


def test_the_identity_comes_from_the_setting_or_the_environment(
    db_alias, keys, settings, monkeypatch
):
    _, identity = keys
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    monkeypatch.setenv("MIGRATOR_BACKUP_IDENTITY_FILE", str(identity))
    get_settings.cache_clear()

    assert run_command("restore", backup_id, database=db_alias)[2] == 0
    assert snapshot(db_alias) == before

    monkeypatch.delenv("MIGRATOR_BACKUP_IDENTITY_FILE")
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_IDENTITY_FILE": str(identity)}
    change_everything(db_alias)
    assert run_command("restore", backup_id, database=db_alias)[2] == 0
    assert snapshot(db_alias) == before


def test_a_wrong_identity_is_refused_naming_the_recipients(db_alias, keys, tmp_path):
    public, _ = keys
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    new_identity(tmp_path / "other.txt")

    _, err, code = run_command(
        "restore", backup_id, "--identity", str(tmp_path / "other.txt"), database=db_alias
    )

    assert (code, err) == (
        6,
        f"The identity does not decrypt backup {backup_id!r}, which was encrypted to "
        f"{public[:20]}...; give the matching identity. Nothing was changed.\n",
    )
    assert snapshot(db_alias) == changed
    assert not Run.objects.using(db_alias).filter(command="restore").exists()


def test_an_identity_given_for_a_plaintext_backup_is_said_to_go_unused(db_alias, tmp_path):
    new_identity(tmp_path / "key.txt")
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)  # no BACKUP_RECIPIENTS: plaintext
    change_everything(db_alias)
    unused = f"--identity was not used: backup {backup_id} is not encrypted.\n"

    out, err, code = run_command(
        "restore", backup_id, "--identity", str(tmp_path / "key.txt"), "--json", database=db_alias
    )

    assert (code, err) == (0, unused)
    assert json.loads(out)["encrypted"] is False
    assert snapshot(db_alias) == before

    drill = ("backup", "--verify", backup_id, "--full", "--identity", str(tmp_path / "key.txt"))
    out, err, code = run_command(*drill, database=db_alias)
    assert (code, err) == (0, unused)
    assert f"Drill of backup {backup_id} passed" in out

    _, err, code = run_command(
        "backup", "--verify", backup_id, "--identity", str(tmp_path / "key.txt"), database=db_alias
    )
    assert (code, err) == (
        1,
        "--identity goes with --verify ID --full: only a drill decrypts the backup.\n",
    )


@pytest.mark.parametrize("resealed", [False, True], ids=["checksum", "age-authentication"])
def test_a_flipped_byte_in_the_encrypted_payload_is_refused(db_alias, keys, backup_dir, resealed):
    _, identity = keys
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    path = backup_dir / get_manifest(backup_id).payload
    payload = bytearray(path.read_bytes())
    payload[len(payload) // 2] ^= 0x01
    if resealed:  # the checksum is made to agree: only age's own authentication is left
        _reseal(backup_dir, backup_id, bytes(payload))
        expected = (
            f"Backup {backup_id!r} fails age's authentication (its encrypted payload was "
            "altered or truncated); do not restore it. Nothing was changed.\n"
        )
    else:
        path.write_bytes(payload)
        expected = (
            f"The payload of backup {backup_id!r} is damaged: its SHA-256 does not match the "
            "manifest; do not restore it.\n"
        )

    _, err, code = run_command("restore", backup_id, "--identity", str(identity), database=db_alias)

    assert (code, err) == (6, expected)
    assert snapshot(db_alias) == changed
    assert not Run.objects.using(db_alias).filter(command="restore").exists()


def test_missing_pyrage_is_a_check_error_and_a_refused_backup(
    db_alias, keys, monkeypatch, backup_dir
):
    seed(db_alias)
    monkeypatch.setitem(sys.modules, "pyrage", None)  # import pyrage now raises ImportError

    with pytest.raises(SystemCheckError, match=r"migrator\.E015"):
        call_command("check", stdout=io.StringIO(), stderr=io.StringIO())
    _, err, code = run_command("backup", database=db_alias)

    assert (code, err) == (
        6,
        "Encrypted backups need pyrage, which is not installed; "
        "pip install 'django-migrator[encryption]'.\n",
    )
    assert list(backup_dir.glob("*")) == []


def test_a_bad_recipient_is_refused_before_anything_is_written(db_alias, settings, backup_dir):
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": ["age1notakey"]}
    seed(db_alias)

    _, err, code = run_command("backup", database=db_alias)

    assert code == 6
    assert err.startswith("'age1notakey' in MIGRATOR['BACKUP_RECIPIENTS'] is not an age public")
    assert not backup_dir.exists() or list(backup_dir.iterdir()) == []


def test_recipients_from_a_file(db_alias, settings, tmp_path, backup_dir):
    first, second = new_identity(tmp_path / "a.txt"), new_identity(tmp_path / "b.txt")
    (tmp_path / "recipients.txt").write_text(f"# ops team\n{first}\n\n  # indented\n{second}\n")
    settings.MIGRATOR = {
        **settings.MIGRATOR,
        "BACKUP_RECIPIENTS": str(tmp_path / "recipients.txt"),
    }
    seed(db_alias)
    backup_id = take_backup(db_alias)

    assert get_manifest(backup_id).recipients == [first, second]
    for identity in ("a.txt", "b.txt"):  # either identity decrypts
        assert decrypted(backup_dir, backup_id, tmp_path / identity)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (  # encryption was asked for: an empty file (a failed deploy step) is not plaintext
            "# ops team\n\n",
            "The recipients file {path!r} of MIGRATOR['BACKUP_RECIPIENTS'] holds no key; add "
            "the public keys (age1...), one a line, or set BACKUP_RECIPIENTS to [] to write "
            "backups unencrypted.\n",
        ),
        (
            None,
            "Cannot read the recipients file {path!r} of MIGRATOR['BACKUP_RECIPIENTS']: No such "
            "file or directory; give a readable file of public keys, or the keys as a list.\n",
        ),
    ],
    ids=["no-key", "missing"],
)
def test_a_recipients_file_without_keys_is_refused_saying_what_to_fix(
    db_alias, settings, tmp_path, backup_dir, content, expected
):
    recipients = tmp_path / "recipients.txt"
    if content is not None:
        recipients.write_text(content)
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": str(recipients)}
    seed(db_alias)

    _, err, code = run_command("backup", database=db_alias)

    assert (code, err) == (6, expected.format(path=str(recipients)))
    assert not backup_dir.exists() or list(backup_dir.iterdir()) == []


def test_encrypted_backups_taken_at_once_are_both_whole(db_alias, keys, backup_dir):
    _, identity = keys
    seed(db_alias)
    env = {
        "MIGRATOR_TEST_BACKUP_DIR": str(backup_dir),
        "MIGRATOR_TEST_SETTINGS": json.dumps({"BACKUP_RECIPIENTS": [keys[0]]}),
    }
    children = [start_child(db_alias, "backup", "--json", **env) for _ in range(2)]
    results = [child.communicate(timeout=300) for child in children]

    assert [child.returncode for child in children] == [0, 0], results
    for out, _ in results:  # each one restores, with every row counted
        backup_id = json.loads(out)["id"]
        assert get_manifest(backup_id).encryption == "age"
        drill = run_command(
            "backup",
            "--verify",
            backup_id,
            "--full",
            "--identity",
            str(identity),
            database=db_alias,
        )
        assert drill[2] == 0, drill


def test_an_encrypted_restore_killed_mid_stream_changes_nothing(
    db_alias, keys, backup_dir, tmp_path
):
    if connections[db_alias].vendor != "postgresql":
        pytest.skip("a SQLite restore runs no tool to stop it in")
    _, identity = keys
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    restore = ("restore", backup_id, "--identity", str(identity), "--no-safety-backup")
    with paused_in_pg_restore(db_alias, backup_dir, tmp_path, *restore):
        pass  # decrypting into pg_restore, which stopped: killed now

    assert snapshot(db_alias) == changed
    _, err, code = run_command("restore", backup_id, "--identity", str(identity), database=db_alias)
    assert (code, err) == (0, "")
    assert snapshot(db_alias) == before


@pytest.mark.parametrize("encrypted", [False, True], ids=["plaintext", "encrypted"])
def test_a_payload_deleted_while_a_restore_reads_it_fails_it_cleanly(
    db_alias, backup_dir, settings, tmp_path, monkeypatch, encrypted
):
    """A prune between the restore's check and its read: exit 6, nothing changed. An
    encrypted one waited for ever, its decrypting thread gone before it opened the FIFO."""
    identity = []
    if encrypted:
        public = new_identity(tmp_path / "key.txt")
        settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": [public]}
        identity = ["--identity", str(tmp_path / "key.txt")]
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    payload = backup_dir / get_manifest(backup_id).payload
    safety_backup = restoring._safety_backup

    def pruned_meanwhile(*args, **kwargs):
        payload.unlink()
        return safety_backup(*args, **kwargs)

    monkeypatch.setattr(restoring, "_safety_backup", pruned_meanwhile)
    out, err, code = run_command("restore", backup_id, *identity, database=db_alias)

    assert code == 6, err
    if encrypted or connections[db_alias].vendor == "sqlite":
        assert err.endswith(
            f"The payload {payload.name} was deleted while it was being read (a backup --prune "
            "at the same time?); nothing was changed.\n"
        )
    assert snapshot(db_alias) == changed


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_an_ssh_recipient_is_restored_with_its_ssh_private_key(db_alias, settings, tmp_path):
    from cryptography.hazmat.primitives import serialization  # moto's dependency
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()  # as ssh-keygen -t ed25519 -N '' writes it
    key = tmp_path / "id_ed25519"
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": [public.decode()]}
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)

    out, err, code = run_command("restore", backup_id, "--identity", str(key), database=db_alias)
    assert (code, err) == (0, "")
    assert snapshot(db_alias) == before


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_an_identity_file_with_a_line_it_cannot_read_still_decrypts(db_alias, keys, tmp_path):
    _, identity = keys
    seed(db_alias)
    backup_id = take_backup(db_alias)
    mixed = tmp_path / "mixed.txt"  # a plugin's identity beside the one that decrypts
    mixed.write_text(f"AGE-PLUGIN-YUBIKEY-1QQQQQQQQQQQQQQQQQQQQ\n{identity.read_text()}")
    out, err, code = run_command(
        "backup", "--verify", backup_id, "--full", "--identity", str(mixed), database=db_alias
    )
    assert (code, err) == (0, "")


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)
def test_a_secret_key_among_the_recipients_is_refused_unshown(db_alias, keys, settings):
    _, identity = keys
    secret = identity.read_text().splitlines()[-1]
    seed(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": [secret]}
    out, err, code = run_command("backup", database=db_alias)
    assert code == 6
    assert err.startswith(
        "MIGRATOR['BACKUP_RECIPIENTS'] holds an age secret key (AGE-SECRET-KEY-1...): give "
        "its public key"
    )
    assert secret[:20] not in err  # not even its first characters


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_an_encrypted_restore_by_the_databases_owner_keeps_a_superusers_extension(
    db_alias, keys, owner_with_a_superusers_extension
):
    """The payload, decrypted into a FIFO, is read once by the restore: its table of
    contents (without the extension's entries, which only its owner may drop and make)
    comes from a decryption of its own."""
    _, identity = keys
    backup_id, before = backed_up_with_the_extension(db_alias)

    out, err, code = run_command(
        "restore", backup_id, "--yes", "--identity", str(identity), database=db_alias
    )

    assert (code, err) == (0, ""), err
    assert_restored_with_the_extension(db_alias, before)


UNLISTING_PG_RESTORE = """#!/bin/sh
if [ "$1" = "--list" ]; then echo "pg_restore: error: cannot list" >&2; exit 1; fi
exec {real}/pg_restore "$@"
"""


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_an_encrypted_backup_whose_contents_pg_restore_cannot_list_is_refused_first(
    db_alias, keys, settings, tmp_path
):
    """Before the run lock and the safety backup, in one line, nothing changed."""
    _, identity = keys
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    bin_dir = bin_with(tmp_path, "pg_restore", UNLISTING_PG_RESTORE)
    settings.MIGRATOR = {**settings.MIGRATOR, "PG_BIN_DIR": str(bin_dir)}

    out, err, code = run_command(
        "restore", backup_id, "--yes", "--identity", str(identity), database=db_alias
    )

    major = get_manifest(backup_id).tool.split()[2].split(".")[0]  # pg_dump (PostgreSQL) 16.2
    assert (code, out) == (6, "")
    assert err == (
        f"Cannot read the table of contents of backup {backup_id!r}: pg_restore --list exited "
        "with code 1: pg_restore: error: cannot list; nothing was changed. Check that "
        f"MIGRATOR['PG_BIN_DIR'] holds PostgreSQL {major} client tools.\n"
    )
    assert snapshot(db_alias) == changed
    assert not Run.objects.using(db_alias).filter(command="restore").exists()
    assert [m.id for m in list_backups()] == [backup_id]  # no safety backup
