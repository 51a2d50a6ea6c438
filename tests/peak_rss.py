"""Run a command and print its peak RSS in KB as the last line of stderr (a test's prefix).

``ru_maxrss`` of a child counts the memory of the process that forked it, up to its exec
(Linux keeps the high-water mark across exec, and ``vfork`` borrows the parent's memory):
a child of a test process that has grown (boto3, moto clients) would report the test
process's size. Forked from this small process instead, the command reports its own.

    python -m tests.peak_rss python -m django safemigrate
"""

import os
import subprocess
import sys

if __name__ == "__main__":
    child = subprocess.Popen(sys.argv[1:])
    _, status, usage = os.wait4(child.pid, 0)
    sys.stderr.write(f"peak_rss_kb={usage.ru_maxrss}\n")
    sys.exit(os.waitstatus_to_exitcode(status))
