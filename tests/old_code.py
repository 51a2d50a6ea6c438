"""The old code of a zero-downtime deploy: SELECT and INSERT on its table, in a loop.

Run as a child (``python -m tests.old_code TABLE COLUMN...``) against the database under
test (``tests.utils.child_env``). It prints ``READY`` after its first round trip and, on
SIGTERM, ``rounds=N errors=E`` and the first error, then exits.
"""

import signal
import sys
import time

import django

STOP = []


def main(table: str, columns: list[str]) -> None:
    django.setup()
    from django.db import DatabaseError, connection

    signal.signal(signal.SIGTERM, lambda signum, frame: STOP.append(signum))
    select = f"SELECT id, {', '.join(columns)} FROM {table} ORDER BY id DESC LIMIT 5"
    insert = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
    )
    rounds, errors, first_error = 0, 0, ""
    while not STOP:
        try:
            with connection.cursor() as cursor:
                cursor.execute(select)
                cursor.fetchall()
                cursor.execute(insert, [f"old code {rounds}"] * len(columns))
        except DatabaseError as exc:
            errors += 1
            first_error = first_error or str(exc).strip()
        rounds += 1
        if rounds == 1:
            sys.stdout.write("READY\n")
            sys.stdout.flush()
        time.sleep(0.002)  # a throttle, not a synchronisation: the test waits on the database
    sys.stdout.write(f"rounds={rounds} errors={errors} {first_error}".rstrip() + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
