"""A DVC queue worker that dies midway (killed, out of memory) leaves its experiment
"running" forever. Reproduced here with a real worker and a real experiment process, both
killed: the search sees the stall, drops the task and runs the trial again under its name.
A live experiment is never taken for a stalled one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.spine.repo_copy import pipeline_env
from zoo.nas import driver, experiments

pytestmark = pytest.mark.slow
NAME = "nas-stall-t0"
WAIT = """\
import sys, time
from pathlib import Path

hold = Path(sys.argv[1])
deadline = time.monotonic() + 300
while hold.exists() and time.monotonic() < deadline:
    time.sleep(0.2)
Path("out.txt").write_text("done\\n")
"""


def _sh(*cmd: str, cwd: Path) -> None:
    done = subprocess.run(cmd, cwd=cwd, env=pipeline_env(), capture_output=True, text=True)
    assert done.returncode == 0, f"{cmd}: {done.stdout}{done.stderr}"


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, Path]:
    """A one-stage DVC project whose stage waits while a file outside it exists."""
    root, hold = tmp_path / "repo", tmp_path / "hold"
    root.mkdir()
    (root / "wait.py").write_text(WAIT)
    (root / "dvc.yaml").write_text(
        f"stages:\n  wait:\n    cmd: python wait.py {hold}\n    deps: [wait.py]\n"
        "    outs: [out.txt]\n"
    )
    _sh("git", "init", "-q", cwd=root)
    _sh(sys.executable, "-m", "dvc", "init", "-q", cwd=root)
    _sh("git", "add", "-A", cwd=root)
    _sh("git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "wait", cwd=root)
    return root, hold


def _until(check, what: str, timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _pids(root: Path, word: str) -> list[int]:
    """Processes of this project whose command line holds `word`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            words = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if word in words and (cwd == str(root) or cwd.startswith(f"{root}/.dvc/tmp/exps/")):
            found.append(int(proc.name))
    return found


def test_a_dead_worker_is_a_stall_and_the_trial_runs_again(
    repo: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, hold = repo
    hold.touch()
    experiments.queue(root, NAME, [], [])
    experiments.start_workers(root, 1)

    def state(wanted: str) -> experiments.ExperimentState | None:
        found = experiments.states(root, "nas-stall-").get(NAME)
        return found if found and found.state == wanted else None

    _until(lambda: state(experiments.RUNNING), "the experiment to start")
    running = _until(lambda: _pids(root, "exec-run"), "the experiment's process")
    assert experiments.stalled(root, "nas-stall-") == set()  # alive: not a stall

    for pid in [*_pids(root, "queue-worker"), *running]:
        os.kill(pid, signal.SIGKILL)
    _until(lambda: not _pids(root, "queue-worker"), "the worker to die")
    assert state(experiments.RUNNING)  # what DVC alone would show forever
    assert experiments.stalled(root, "nas-stall-") == {NAME}

    monkeypatch.setattr(driver, "STALL_GRACE_S", 0.0)  # the driver's watch, without waiting
    said: list[str] = []
    watch = driver._StallWatch(root, "nas-stall-", said.append)
    assert watch.due(experiments.states(root, "nas-stall-")) == [NAME]
    assert NAME not in experiments.states(root, "nas-stall-")
    assert said and said[0].startswith(f"{NAME}: DVC's queue shows it running")
    hold.unlink()
    experiments.queue(root, NAME, [], [])  # the driver's path for a trial with no experiment
    experiments.start_workers(root, 1)
    done = _until(lambda: state(experiments.DONE), "the re-run", 180)
    assert experiments.read_file(root, done.commit, "dvc.lock")
