"""Backups in object storage: django-storages' S3 backend against moto's S3 server over HTTP."""

import json
import socket
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from botocore.config import Config
from django.db import connections

from migrator.backup import get_manifest, list_backups, storage
from migrator.backup.storage import DjangoStorageStore
from migrator.models import Run
from tests import s3
from tests.test_backup import FILE_SIZE_LIMIT, change_everything, seed, snapshot, take_backup
from tests.test_backup_encryption import new_identity, paused_in_pg_restore
from tests.test_rollback import SCRIPTED, ledger_with_a_restorable_run, names
from tests.utils import TTYInput, applied, run_child, run_child_peak_rss, run_command

PAYLOAD_MB = 40  # random bytes: the payload is at least this large whatever the format
FLAT_KB = 8 * 1024  # a backup's peak above a listing's (writing each 5 MB part: 14 MB)

pytestmark = pytest.mark.skipif(not s3.available(), reason=s3.SKIP_REASON)


@pytest.fixture(scope="module")
def moto_server():
    server = s3.MotoServer.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto_server, settings) -> str:
    """A new bucket on moto's server, named by ``MIGRATOR["BACKUP_STORAGE"]``."""
    name = moto_server.new_bucket()
    settings.STORAGES = {**settings.STORAGES, "backups": moto_server.storage(name)}
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_STORAGE": "backups"}
    return name


def stored_keys(settings) -> list[str]:
    from django.core.files.storage import storages

    return sorted(storages["backups"].listdir("migrator-backups")[1])


@pytest.mark.parametrize("format", ["native", "portable"])
def test_backup_list_verify_restore_and_prune_through_s3(
    db_alias, bucket, settings, format, monkeypatch
):
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias, "--format", format)
    manifest = get_manifest(backup_id)
    assert stored_keys(settings) == sorted([f"{backup_id}.json", manifest.payload])

    out, err, code = run_command("backup", "--list", "--json", database=db_alias)
    assert (code, err) == (0, "")
    assert [b["id"] for b in json.loads(out)["backups"]] == [backup_id]
    out, err, code = run_command("backup", "--verify", backup_id, database=db_alias)
    assert (code, err) == (0, ""), err
    out, err, code = run_command(
        "backup", "--verify", backup_id, "--full", "--json", database=db_alias
    )
    assert (code, err) == (0, ""), err
    drill = json.loads(out)
    assert (drill["outcome"], drill["migrations_match"]) == ("passed", True)
    assert all(row["recorded"] == row["restored"] for row in drill["tables"])
    assert f"{backup_id}.drill" in stored_keys(settings)  # the drill note is stored beside it

    change_everything(db_alias)
    downloads = counted_downloads(monkeypatch)
    out, err, code = run_command("restore", backup_id, database=db_alias)
    assert (code, err) == (0, ""), err
    assert downloads == [manifest.payload]  # once: hashed as downloaded, then restored
    assert snapshot(db_alias) == before
    assert applied(db_alias, "scenarios") == []
    safety = [m.id for m in list_backups() if m.id != backup_id]
    assert len(safety) == 1  # the safety backup went to S3 too

    out, err, code = run_command("backup", "--prune", "--keep", "1", database=db_alias)
    assert (code, err) == (0, ""), err
    assert [m.id for m in list_backups()] == safety
    assert stored_keys(settings) == sorted([f"{safety[0]}.json", get_manifest(safety[0]).payload])


@pytest.fixture
def downloads_cut_half_way(monkeypatch):
    """Every payload download from the store stops half-way, as a dropped connection does."""
    from botocore.exceptions import IncompleteReadError

    streaming = storage._streaming

    class Cut:
        def __init__(self, handle):
            self.body, self.given = streaming(handle), 0

        def read(self, size=-1):
            if self.given:
                raise IncompleteReadError(actual_bytes=self.given, expected_bytes=2 * self.given)
            chunk = self.body.read(1024)
            self.given = len(chunk)
            return chunk

        def close(self):
            self.body.close()

    monkeypatch.setattr(storage, "_streaming", Cut)


def test_a_store_that_fails_to_read_payloads_stops_verify_and_prune(
    db_alias, bucket, settings, downloads_cut_half_way
):
    """A payload that cannot be read just now is not a damaged one: prune deleted them all."""
    seed(db_alias)
    backups = [take_backup(db_alias) for _ in range(3)]

    out, err, code = run_command("backup", "--verify", backups[0], "--json", database=db_alias)
    assert code == 6
    assert err.startswith("Cannot use the storage 'backups' for backups: 1024 read, but total ")
    assert json.loads(out)["exit_code"] == 6
    out, err, code = run_command("backup", "--prune", "--keep", "1", "--json", database=db_alias)
    assert code == 6
    assert json.loads(out)["error"] == err.rstrip("\n")
    assert sorted(m.id for m in list_backups()) == sorted(backups)


def test_a_backup_another_prune_deletes_meanwhile_is_gone_not_a_failure(
    db_alias, bucket, settings, monkeypatch
):
    """Listed, then deleted by another prune before it is read: S3 answers 404 (or
    django-storages' FileNotFoundError). It was exit 6 'Cannot use the storage', or a
    traceback."""
    from django.core.files.storage import storages

    seed(db_alias)
    kept = take_backup(db_alias)
    ghost = "default-20260101T000000Z-0a0a0a"  # listed, gone: as another prune leaves it
    listed = DjangoStorageStore.backup_ids
    monkeypatch.setattr(DjangoStorageStore, "backup_ids", lambda store: [*listed(store), ghost])
    s3_backend = type(storages["backups"])
    exists = s3_backend.exists
    monkeypatch.setattr(
        s3_backend, "exists", lambda storage, name: ghost in name or exists(storage, name)
    )

    out, err, code = run_command("backup", "--prune", "--json", database=db_alias)
    assert (code, err) == (0, ""), err
    assert json.loads(out)["kept"] == [kept]
    out, err, code = run_command("backup", "--list", "--json", database=db_alias)
    assert (code, [b["id"] for b in json.loads(out)["backups"]]) == (0, [kept])


def test_prune_deletes_an_hour_old_payload_without_a_manifest(
    db_alias, bucket, settings, monkeypatch
):
    from django.core.files.storage import storages

    seed(db_alias)
    kept, orphaned = take_backup(db_alias), take_backup(db_alias)
    payload = get_manifest(orphaned).payload
    storages["backups"].delete(f"migrator-backups/{orphaned}.json")

    out, err, code = run_command("backup", "--prune", "--json", database=db_alias)
    assert (code, err) == (0, ""), err
    assert json.loads(out)["orphans"] == []  # it may be a backup whose manifest is on its way
    assert payload in stored_keys(settings)
    monkeypatch.setattr(storage, "ORPHAN_AGE", timedelta(0))
    out, err, code = run_command("backup", "--prune", "--json", database=db_alias)
    assert (code, err) == (0, ""), err
    assert json.loads(out)["orphans"] == [payload]
    assert stored_keys(settings) == sorted([f"{kept}.json", get_manifest(kept).payload])


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_parallel_restore_from_s3_fills_from_its_one_download(
    db_alias, bucket, settings, monkeypatch
):
    seed(db_alias)
    before = snapshot(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    settings.MIGRATOR = {**settings.MIGRATOR, "RESTORE_JOBS": 2}
    downloads = counted_downloads(monkeypatch)

    out, err, code = run_command(
        "restore", backup_id, "--no-safety-backup", database=db_alias, verbosity=2
    )

    assert (code, err) == (0, ""), err
    assert "Restoring with pg_restore --jobs 2 into a new database" in out
    assert downloads == [get_manifest(backup_id).payload]
    assert snapshot(db_alias) == before


def counted_downloads(monkeypatch) -> list[str]:
    """The payloads read from the store from now on, one entry per download."""
    downloads: list[str] = []
    read = DjangoStorageStore.open_payload

    def counting(store, filename):
        downloads.append(filename)
        return read(store, filename)

    monkeypatch.setattr(DjangoStorageStore, "open_payload", counting)
    return downloads


def fill_with_random_bytes(alias: str) -> None:
    """PAYLOAD_MB of random bytes in a table of their own, 1 MB a row."""
    with connections[alias].cursor() as cursor:
        if connections[alias].vendor == "sqlite":
            cursor.execute("CREATE TABLE noise (data BLOB)")
            cursor.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %s) "
                "INSERT INTO noise SELECT randomblob(1048576) FROM n",
                [PAYLOAD_MB],
            )
        else:
            cursor.execute("CREATE TABLE noise (data bytea)")
            cursor.execute(
                "INSERT INTO noise SELECT (SELECT decode(string_agg(md5(r.i || random()::text "
                "|| g.j), ''), 'hex') FROM generate_series(1, 65536) g(j)) "
                "FROM generate_series(1, %s) r(i)",
                [PAYLOAD_MB],
            )


def test_a_backup_streams_to_s3_in_flat_memory(db_alias, bucket, settings):
    """The backup child's peak RSS is its listing's (boto3 loaded, the store asked) plus
    little: the payload is uploaded from its staged file a part at a time."""
    fill_with_random_bytes(db_alias)
    env = {
        "MIGRATOR_TEST_STORAGE": json.dumps(settings.STORAGES["backups"]),
        "MIGRATOR_TEST_SETTINGS": json.dumps({"BACKUP_STORAGE": "backups"}),
    }
    listed, listing_peak = run_child_peak_rss(db_alias, "backup", "--list", **env)
    assert (listed.returncode, listed.stderr) == (0, "")
    done, backup_peak = run_child_peak_rss(db_alias, "backup", **env)
    assert (done.returncode, done.stderr) == (0, "")
    (manifest,) = list_backups()
    assert manifest.size > PAYLOAD_MB * 1024 * 1024
    assert backup_peak - listing_peak < FLAT_KB, (backup_peak, listing_peak)
    out, err, code = run_command("backup", "--verify", manifest.id, database=db_alias)
    assert (code, err) == (0, ""), err


def test_a_damaged_object_fails_verify_with_6(db_alias, bucket, settings):
    from django.core.files.base import ContentFile
    from django.core.files.storage import storages

    seed(db_alias)
    backup_id = take_backup(db_alias)
    payload = f"migrator-backups/{get_manifest(backup_id).payload}"
    storage = storages["backups"]
    storage.delete(payload)
    storage.save(payload, ContentFile(b"not a backup"))
    out, err, code = run_command("backup", "--verify", backup_id, database=db_alias)
    assert (out, code) == ("", 6)
    assert "is damaged" in err
    change_everything(db_alias)
    changed = snapshot(db_alias)
    out, err, code = run_command("restore", backup_id, "--yes", database=db_alias)
    assert (out, code) == ("", 6)
    assert "is damaged" in err
    assert snapshot(db_alias) == changed
    assert not Run.objects.using(db_alias).filter(command="restore").exists()


def test_a_stopped_endpoint_is_one_line_exit_6_and_nothing_changes(db_alias, settings, scenario):
    server = s3.MotoServer.start()
    try:
        settings.STORAGES = {**settings.STORAGES, "backups": server.storage(server.new_bucket())}
        settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_STORAGE": "backups"}
        seed(db_alias)
        backup_id = take_backup(db_alias)
        change_everything(db_alias)
        before = snapshot(db_alias)
    finally:
        server.stop()
    scenario("basic")  # something for safemigrate to apply after its backup
    commands = [
        ("backup",),
        ("backup", "--list"),
        ("backup", "--verify", backup_id),
        ("backup", "--prune", "--keep", "0"),
        ("restore", backup_id),
        ("safemigrate", "--backup"),
    ]
    for command in commands:
        out, err, code = run_command(*command, database=db_alias)
        assert code == 6, command
        assert out == "" or command[0] == "safemigrate"  # which prints the plan's risks first
        assert len(err.splitlines()) == 1, err
        assert "Cannot use the storage 'backups' for backups: " in err, err
        assert err.endswith("nothing was changed.\n"), err
    assert snapshot(db_alias) == before
    assert applied(db_alias, "scenarios") == []


@pytest.fixture
def silent_endpoint():
    """An endpoint that accepts connections and never answers (a proxy or firewall that
    swallows the request): botocore's defaults wait 60 s per read, five times over."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@pytest.mark.parametrize("db_alias", ["default"], indirect=True)  # storage only
def test_an_endpoint_that_never_answers_fails_with_6_instead_of_hanging(
    db_alias, silent_endpoint, settings, monkeypatch
):
    """botocore's defaults held a command for 5 minutes; migrator's limits end it. They
    are made tighter here (the defaults' 40 s would be the test's length): the defaults
    themselves are checked in the test below."""
    tight = {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}}
    monkeypatch.setattr(storage, "S3_CLIENT_LIMITS", tight)
    settings.STORAGES = {
        **settings.STORAGES,
        "backups": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                **s3.CREDENTIALS,
                "bucket_name": "backups",
                "endpoint_url": silent_endpoint,
            },
        },
    }
    settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_STORAGE": "backups"}
    out, err, code = run_command("backup", "--list", database=db_alias)
    assert (out, code) == ("", 6)
    assert len(err.splitlines()) == 1, err
    assert "Cannot use the storage 'backups' for backups: Read timeout" in err


def test_s3_limits_bound_a_silent_store_to_well_under_a_minute_unless_the_project_sets_its_own(
    bucket,
    settings,
):
    config = DjangoStorageStore("backups").storage.client_config  # what its client is given
    attempts = config.retries["max_attempts"]
    assert config.connect_timeout + attempts * config.read_timeout <= 40
    own = settings.STORAGES["backups"]
    own = {**own, "OPTIONS": {**own["OPTIONS"], "client_config": Config(read_timeout=90)}}
    settings.STORAGES = {**settings.STORAGES, "backups": own}
    assert DjangoStorageStore("backups").storage.client_config.read_timeout == 90


@pytest.mark.parametrize("how", ["asked in production", "encrypted", "drill"])
def test_a_payload_in_s3_is_downloaded_once_however_it_is_restored(
    db_alias, bucket, settings, monkeypatch, tmp_path, how
):
    """Checked before anything is asked or touched, then restored from that one copy."""
    seed(db_alias)
    before = snapshot(db_alias)
    options = {}
    if how == "encrypted":
        public = new_identity(tmp_path / "key.txt")
        settings.MIGRATOR = {**settings.MIGRATOR, "BACKUP_RECIPIENTS": [public]}
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    downloads = counted_downloads(monkeypatch)

    if how == "drill":
        out, err, code = run_command(
            "backup", "--verify", backup_id, "--full", "--json", database=db_alias
        )
        assert (code, err) == (0, ""), err
        assert json.loads(out)["outcome"] == "passed"
    else:
        if how == "asked in production":
            settings.MIGRATOR = {**settings.MIGRATOR, "ENVIRONMENT": "production"}
            name = Path(connections[db_alias].settings_dict["NAME"]).name
            options["stdin"] = TTYInput(f"{name}\n")
        else:
            options["identity"] = str(tmp_path / "key.txt")
            options["safety_backup"] = False  # its backup would be encrypted too
        out, err, code = run_command("restore", backup_id, database=db_alias, **options)
        assert (code, err) == (0, ""), err
        assert snapshot(db_alias) == before

    assert downloads == [get_manifest(backup_id).payload]


def test_a_restore_from_s3_without_room_for_its_local_copy_changes_nothing(
    db_alias, bucket, settings
):
    """The payload is downloaded before anything is touched: a full local disk there is
    one line about that disk, not about the storage."""
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    env = {
        "MIGRATOR_TEST_STORAGE": json.dumps(settings.STORAGES["backups"]),
        "MIGRATOR_TEST_SETTINGS": json.dumps({"BACKUP_STORAGE": "backups"}),
    }
    done = run_child(
        db_alias,
        *("restore", backup_id, "--yes", "--no-safety-backup"),
        prefix=[sys.executable, "-c", FILE_SIZE_LIMIT, "1024"],  # each file 1 KB at most
        **env,
    )
    assert done.returncode == 6, done.stderr
    [line] = done.stderr.splitlines()
    payload = get_manifest(backup_id).payload
    assert line.startswith(f"CommandError: Cannot keep a local copy of {payload} from ")
    assert line.endswith(
        ": File too large; free as much space there as the backup's size, or point TMPDIR at "
        "a larger disk; nothing was changed."
    )
    assert snapshot(db_alias) == changed
    assert [m.id for m in list_backups()] == [backup_id]


@pytest.mark.parametrize("db_alias", ["postgres"], indirect=True)
def test_a_restore_from_s3_killed_keeps_the_data_and_its_download_is_swept(
    db_alias, bucket, settings, tmp_path
):
    seed(db_alias)
    backup_id = take_backup(db_alias)
    change_everything(db_alias)
    changed = snapshot(db_alias)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {
        "MIGRATOR_TEST_STORAGE": json.dumps(settings.STORAGES["backups"]),
        "MIGRATOR_TEST_SETTINGS": json.dumps({"BACKUP_STORAGE": "backups"}),
        "TMPDIR": str(temporary),
    }
    restore = ("restore", backup_id, "--yes", "--no-safety-backup")
    with paused_in_pg_restore(db_alias, tmp_path / "unused", tmp_path, *restore, **env):
        [download] = temporary.glob(f"migrator-scratch-restore-*/{get_manifest(backup_id).payload}")

    assert download.exists()  # kill -9 left its copy of the payload behind
    assert snapshot(db_alias) == changed
    listed = run_child(db_alias, "backup", "--list", **env)
    assert (listed.returncode, listed.stderr) == (0, "")
    assert not download.parent.exists()  # the next command swept it


def test_rollback_last_restore_from_s3_downloads_its_backup_once(
    db_alias, bucket, settings, tmp_path, monkeypatch
):
    ledger_with_a_restorable_run(db_alias, settings, tmp_path)
    [taken] = list_backups()  # the run's own, before it migrated
    downloads = counted_downloads(monkeypatch)

    out, err, code = run_command("rollback", "--last", "--restore", *SCRIPTED, database=db_alias)

    assert (code, err) == (0, ""), err
    assert downloads == [taken.payload]
    assert names(db_alias) == ["Alice", "BOB"]
