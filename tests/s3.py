"""A real S3-compatible endpoint for the tests and benchmarks: moto's server, as a child process.

``moto.server`` answers S3's HTTP API on loopback; django-storages' S3 backend talks to it
exactly as it talks to AWS, so uploads are real multipart uploads over HTTP.
"""

import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from importlib.util import find_spec

SKIP_REASON = "moto[server] and django-storages[s3] are not installed (pip install -e '.[test]')"
CREDENTIALS = {"access_key": "testing", "secret_key": "testing", "region_name": "us-east-1"}


def available() -> bool:
    return all(find_spec(name) for name in ("moto", "flask", "storages", "boto3"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MotoServer:
    """One ``moto.server`` child; ``stop()`` makes its endpoint unreachable."""

    process: subprocess.Popen
    endpoint: str

    @classmethod
    def start(cls) -> "MotoServer":
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in process.stderr:  # werkzeug says where it listens once it does
            if "Running on" in line:
                break
        else:
            raise RuntimeError(f"moto.server exited with {process.wait()}")
        process.stderr.close()  # no more reading: its request log must not fill a pipe
        return cls(process, f"http://127.0.0.1:{port}")

    def new_bucket(self) -> str:
        import boto3

        bucket = f"migrator-{uuid.uuid4().hex[:12]}"
        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["access_key"],
            aws_secret_access_key=CREDENTIALS["secret_key"],
            region_name=CREDENTIALS["region_name"],
        )
        client.create_bucket(Bucket=bucket)
        return bucket

    def storage(self, bucket: str) -> dict:
        """A ``STORAGES`` entry for django-storages' S3 backend on this endpoint."""
        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {**CREDENTIALS, "bucket_name": bucket, "endpoint_url": self.endpoint},
        }

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
