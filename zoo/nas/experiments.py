"""DVC's experiment queue, as a search uses it: queue a trial under a name, start the
queue's workers, see which named experiments are queued, running, failed or done, and read
a file of a finished one. Queueing and workers go through the `dvc` command (what a user
would type); states come from DVC's own queue API, results from the experiment's commit."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.errors import NasError

if TYPE_CHECKING:
    from dvc_task.proc.process import ProcessInfo

QUEUED, RUNNING, FAILED, DONE = "queued", "running", "failed", "done"


@dataclass(frozen=True)
class ExperimentState:
    name: str
    state: str
    commit: str | None = None  # the experiment's git commit, once done


def dvc_env() -> dict[str, str]:
    """Stage commands and DVC's worker processes say `python` / `dvc`: make them this
    interpreter's, whose environment has the project."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _dvc(root: Path, *args: str, timeout: float = 600) -> str:
    # Output to a file, not a pipe: `dvc queue start` leaves workers behind that inherit
    # its output, and reading a pipe would wait for them to end.
    with tempfile.TemporaryFile("w+") as output:
        code = subprocess.run(
            [sys.executable, "-m", "dvc", *args],
            cwd=root,
            env=dvc_env(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        ).returncode
        output.seek(0)
        text = output.read()
    if code != 0:
        raise NasError(f"`dvc {' '.join(args)}` failed in {root} (exit {code}): {text[-2000:]}")
    return text


def queue(root: Path, name: str, overrides: list[str], targets: list[str]) -> None:
    """`dvc exp run --queue -n NAME -S o1 -S o2 ... TARGETS`."""
    args = ["exp", "run", "--queue", "-n", name]
    for item in overrides:
        args += ["-S", item]
    _dvc(root, *args, *targets)


def start_workers(root: Path, count: int) -> None:
    """`dvc queue start -j COUNT`: DVC starts only the workers not running yet; they stop
    by themselves once the queue is empty."""
    _dvc(root, "queue", "start", "-j", str(count))


def states(root: Path, prefix: str) -> dict[str, ExperimentState]:
    """Every experiment whose name starts with `prefix`, by name."""
    found: dict[str, ExperimentState] = {}
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        celery = repo.experiments.celery_queue
        for entry in celery.iter_queued():
            _add(found, entry.name, QUEUED, prefix)
        for entry in celery.iter_active():
            _add(found, entry.name, RUNNING, prefix)
        for done in celery.iter_failed():
            _add(found, done.entry.name, FAILED, prefix)
    for name, commit in finished(root, prefix).items():
        found[name] = ExperimentState(name, DONE, commit)  # a retried name that succeeded
    return found


def stalled(root: Path, prefix: str) -> set[str]:
    """Experiments DVC calls running that nothing runs: a worker took the task (its queue
    message is processed, its result pending), yet no live worker holds it and its process
    is not alive. A worker killed midway (out of memory, a reboot) or shut down after taking
    a task leaves this behind, and DVC would show the experiment running forever."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        celery = repo.experiments.celery_queue
        # DVC has no public call for a running entry's task id, which is what workers report
        started = [
            (result.id, entry)
            for result, entry in celery._iter_active_tasks()
            if entry.name and entry.name.startswith(prefix)
        ]
        if not started:
            return set()
        held = {task["id"] for tasks in celery.worker_status().values() for task in tasks}
        return {
            entry.name
            for task_id, entry in started
            if task_id not in held and not _alive(celery.proc.get(entry.stash_rev))
        }


def _alive(info: ProcessInfo | None) -> bool:
    """The experiment's own process (DVC's process info) is still running."""
    import psutil

    if info is None or info.returncode is not None:
        return False
    try:
        return bool(psutil.Process(info.pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def abandon(root: Path, name: str) -> None:
    """Drop a stalled experiment from DVC's queue, so its trial can be queued again under
    the same name: its task is marked failed (what `dvc queue kill` does to a task no worker
    holds, but also when a dead process left no trace it could signal), then removed."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        celery = repo.experiments.celery_queue
        for result, entry in celery._iter_active_tasks():
            if entry.name == name:
                celery.celery.backend.mark_as_failure(result.id, None)
    _dvc(root, "queue", "remove", name)


def _add(found: dict[str, ExperimentState], name: str | None, state: str, prefix: str) -> None:
    if name and name.startswith(prefix):
        found[name] = ExperimentState(name, state)


def finished(root: Path, prefix: str) -> dict[str, str]:
    """Finished experiments (git refs refs/exps/<baseline>/<name>): name -> commit."""
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps/"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    commits: dict[str, str] = {}
    for line in out.splitlines():
        commit, ref = line.split(" ", 1)
        parts = ref.split("/")
        # refs/exps/<2 hex>/<38 hex>/<name>; exec/ and celery/ hold DVC's own refs
        if len(parts) != 5 or parts[2] in ("exec", "celery"):
            continue
        name = parts[4]
        if not name.startswith(prefix):
            continue
        if name in commits and commits[name] != commit:
            raise NasError(
                f"two experiments are named {name} (on different baselines); remove the "
                f"stale one with `dvc exp remove -A {name}` or start a study of another name"
            )
        commits[name] = commit
    return commits


def read_file(root: Path, commit: str, path: str) -> str | None:
    """A file as the experiment's commit holds it (metrics are committed, cache: false)."""
    result = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=root, capture_output=True, text=True
    )
    return result.stdout if result.returncode == 0 else None
