"""Run the `olah` Hugging Face Hub mirror on loopback, serving local git repos offline.

olah is a server, like SeaweedFS: it runs in its own process and need not share the
project's virtualenv (its fastapi-utils dependency pins psutil<6, which the project's
pins do not allow). It is found as an importable `olah`, or in the folder named by
$ZOO_OLAH_PATH (`pip install --target DIR olah==0.5.4`).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zoo.storage.seaweed import free_ports


def olah_pythonpath() -> str | None:
    extra = os.environ.get("ZOO_OLAH_PATH")
    if extra and (Path(extra) / "olah").is_dir():
        return extra
    if importlib.util.find_spec("olah") is not None:
        return ""
    return None


def git_repo(folder: Path) -> None:
    """Commit `folder` as a git repo on branch main (what olah serves)."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "zoo",
        "GIT_AUTHOR_EMAIL": "zoo@localhost",
        "GIT_COMMITTER_NAME": "zoo",
        "GIT_COMMITTER_EMAIL": "zoo@localhost",
    }
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "zoo export"]):
        subprocess.run(["git", "-C", str(folder), *args], check=True, env=env)


@contextlib.contextmanager
def olah_server(workdir: Path, mirrors: Path) -> Iterator[str]:
    path = olah_pythonpath()
    if path is None:
        pytest.skip(
            "olah is not installed (pip install --target DIR olah==0.5.4; ZOO_OLAH_PATH=DIR)"
        )
    (port,) = free_ports(1)
    config = workdir / "olah.toml"
    config.write_text(
        f'[basic]\nhost = "127.0.0.1"\nport = {port}\nmirrors-path = ["{mirrors}"]\n'
        f'repos-path = "{workdir / "repos"}"\n[accessibility]\noffline = true\n'
    )
    env = {**os.environ, "PYTHONPATH": path} if path else dict(os.environ)
    log = open(workdir / "olah.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "olah.server", "-c", str(config), "--log-path", str(workdir)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (workdir / "olah.log").read_text()[-2000:]
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            time.sleep(0.3)
        yield endpoint
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(15)
        log.close()
