"""Safe operations against the plain ones, on a big PostgreSQL table with a busy writer.

Fills ``zdt_book`` with ``--rows`` rows (1,000,000 by default), starts a writer process
that inserts one row at a time in autocommit for the whole run, and applies each schema
change twice through Django's schema editor: the plain operation (in a transaction, as an
atomic migration runs it), then its safe form from ``migrator.operations`` (outside one,
as a non-atomic migration runs it). Each is undone after it is measured (the safe ones
through their own reverse), so both start from the same table. For each it prints how
long it took and the writer's longest single insert while it ran: the plain forms block
the writer for their whole scan or build, the safe ones should not. Also checks that each
safe form leaves the plain form's project state (what ``makemigrations --check`` compares).
Uses ``DATABASE_URL`` when set, else starts a PostgreSQL server from ``pgserver``.

    python -m benchmarks.zero_downtime [--rows 1000000]
"""

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

WRITE = "INSERT INTO zdt_book (title, isbn, pages) VALUES (%s, %s, 1)"


def configure(url: str) -> None:
    import dj_database_url
    import django
    from django.conf import settings

    settings.configure(
        DATABASES={"default": dj_database_url.parse(url)},
        INSTALLED_APPS=["django.contrib.contenttypes", "migrator"],
        USE_TZ=True,
        MIGRATOR={"ENVIRONMENT": "benchmark"},
    )
    django.setup()


def writer(url: str, stop, results) -> None:
    """Insert rows one by one until told to stop; send back (start, seconds) of each."""
    import psycopg2

    connection = psycopg2.connect(url)
    connection.autocommit = True
    samples, number = [], 0
    with connection.cursor() as cursor:
        while not stop.is_set():
            started = time.monotonic()
            cursor.execute(WRITE, [f"written {number}", f"w-{number}"])
            samples.append((started, time.monotonic() - started))
            number += 1
    connection.close()
    results.send(samples)


def states():
    """The table's project state, and the plain and safe operations to measure on it."""
    import django
    from django.db import migrations, models
    from django.db.migrations.state import ModelState, ProjectState

    from migrator import operations as safe

    state = ProjectState()
    state.add_model(ModelState("zdt", "Author", [("id", models.AutoField(primary_key=True))], {}))
    state.add_model(
        ModelState(
            "zdt",
            "Book",
            [
                ("id", models.AutoField(primary_key=True)),
                ("title", models.CharField(max_length=100)),
                ("isbn", models.CharField(max_length=20)),
                ("pages", models.IntegerField(null=True)),
            ],
            {},
        )
    )
    index = models.Index(fields=["title"], name="zdt_book_title_idx")
    unique = models.UniqueConstraint(fields=["isbn"], name="zdt_book_isbn_uniq")
    condition = "condition" if django.VERSION >= (5, 1) else "check"  # renamed in 5.1
    check = models.CheckConstraint(**{condition: models.Q(pages__gte=0)}, name="zdt_book_gte_0")

    def author():
        return models.ForeignKey("zdt.author", models.CASCADE, null=True)

    pairs = [
        ("index", migrations.AddIndex("book", index), safe.AddIndexSafely("book", index)),
        (
            "unique",
            migrations.AddConstraint("book", unique),
            safe.AddUniqueSafely("book", unique),
        ),
        ("check", migrations.AddConstraint("book", check), safe.AddCheckSafely("book", check)),
        (
            "foreign key",
            migrations.AddField("book", "author", author()),
            safe.AddForeignKeySafely("book", "author", author()),
        ),
        (
            "not null",
            migrations.AlterField("book", "pages", models.IntegerField()),
            safe.SetNotNullSafely("book", "pages"),
        ),
    ]
    return state, pairs


def fill(rows: int) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS zdt_book, zdt_author")
        cursor.execute("CREATE TABLE zdt_author (id serial PRIMARY KEY)")
        cursor.execute("INSERT INTO zdt_author SELECT FROM generate_series(1, 100)")
        cursor.execute(
            "CREATE TABLE zdt_book (id serial PRIMARY KEY, title varchar(100) NOT NULL, "
            "isbn varchar(20) NOT NULL, pages integer NULL)"
        )
        cursor.execute(
            "INSERT INTO zdt_book (title, isbn, pages) SELECT md5(g::text), 'i-' || g, g %% 500 "
            "FROM generate_series(1, %s) g",
            [rows],
        )
        cursor.execute("VACUUM ANALYZE zdt_book")


def run(operation, state, *, atomic: bool, backwards: bool = False) -> tuple[float, float]:
    """Apply (or undo) one operation; return its (start, end) on the monotonic clock."""
    from django.db import connection

    before = state.clone()
    after = state.clone()
    operation.state_forwards("zdt", after)
    started = time.monotonic()
    with connection.schema_editor(atomic=atomic) as editor:
        if backwards:
            operation.database_backwards("zdt", editor, after, before)
        else:
            operation.database_forwards("zdt", editor, before, after)
    return started, time.monotonic()


def longest_wait(samples: list[tuple[float, float]], window: tuple[float, float]) -> float:
    """The writer's longest insert that overlapped the window (0 when none did)."""
    start, end = window
    return max(
        (took for began, took in samples if began <= end and began + took >= start), default=0
    )


def same_state(state, plain, safe) -> bool:
    from django.db.migrations.autodetector import MigrationAutodetector
    from django.db.migrations.graph import MigrationGraph

    plain_state, safe_state = state.clone(), state.clone()
    plain.state_forwards("zdt", plain_state)
    safe.state_forwards("zdt", safe_state)
    return MigrationAutodetector(safe_state, plain_state).changes(graph=MigrationGraph()) == {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        import pgserver

        scratch = Path(tempfile.mkdtemp(prefix="zdt-bench-"))
        url = pgserver.get_server(scratch / "pgdata", cleanup_mode="stop").get_uri()
    configure(url)
    state, pairs = states()
    fill(args.rows)
    stop, (receive, send) = multiprocessing.Event(), multiprocessing.Pipe(duplex=False)
    process = multiprocessing.Process(target=writer, args=(url, stop, send))
    process.start()
    windows = {}
    for name, plain, safe in pairs:
        windows[name, "plain"] = run(plain, state, atomic=True)
        run(plain, state, atomic=True, backwards=True)
        windows[name, "safe"] = run(safe, state, atomic=False)
        run(safe, state, atomic=False, backwards=True)  # the safe form's rollback works
    stop.set()
    samples = receive.recv()
    process.join()
    print(f"{args.rows:,} rows; writer: {len(samples):,} single-row inserts, autocommit")
    print(f"{'operation':12} {'form':6} {'took':>8} {'writer longest wait':>20}  state as plain")
    for name, plain, safe in pairs:
        for form in ("plain", "safe"):
            window = windows[name, form]
            took, wait = window[1] - window[0], longest_wait(samples, window)
            same = ("yes" if same_state(state, plain, safe) else "NO") if form == "safe" else ""
            print(f"{name:12} {form:6} {took:7.2f}s {wait:19.3f}s  {same}")


if __name__ == "__main__":
    main()
