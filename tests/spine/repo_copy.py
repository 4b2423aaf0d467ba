"""Make a throw-away copy of this repository (as a fresh clone would have it) for DVC runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "zoo tests",
    "GIT_AUTHOR_EMAIL": "tests@zoo.invalid",
    "GIT_COMMITTER_NAME": "zoo tests",
    "GIT_COMMITTER_EMAIL": "tests@zoo.invalid",
}


def tracked_files(repo: Path = REPO) -> list[str]:
    """Files a clone would have, plus new ones not yet committed (but never ignored ones)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [f for f in out.split("\0") if f and (repo / f).is_file()]


def pipeline_env() -> dict[str, str]:
    env = dict(os.environ, **GIT_IDENTITY)
    # Stage commands say `python`: make it this interpreter, whose venv has the project.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def copy_repo(dest: Path) -> Path:
    """A new project from this one's files: its store (.zoo/, never tracked) starts empty,
    so its registry/ starts empty too. The committed mirror is of this repository's own
    store, which the copy's register stages would rightly refuse to mirror over."""
    for name in tracked_files():
        if name.startswith("registry/") and name != "registry/README.md":
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    env = pipeline_env()
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "copy"],
    ):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = pipeline_env()
    # Module-scoped fixtures run before the per-test isolation fixture: keep the zoo
    # client's download cache inside the throw-away repo, never in the user's home.
    env["ZOO_CACHE_DIR"] = str(cwd / ".zoo" / "client-cache")
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
