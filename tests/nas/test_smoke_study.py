"""End to end: the smoke study in a throw-away repository copy, each trial a real DVC
experiment run by two queue workers. The driver is killed midway and started again; the
study ends with exactly its budget of trials, each one experiment (acceptance 3). A front
trial's experiment, applied and reproduced, gives the metrics the study recorded
(acceptance 4), and the front is published as zoo entries with their lineage."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.spine.repo_copy import copy_repo, pipeline_env, run

pytestmark = pytest.mark.slow
ZOO = [sys.executable, "-m", "zoo.cli"]
DVC = [sys.executable, "-m", "dvc"]
STUDY = "smoke-nsga2"
TRIALS = 3  # conf/search/smoke.yaml


def _workers(repo: Path) -> set[str]:
    """Names of the running DVC queue workers of this repository copy."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        words = [w.decode(errors="replace") for w in cmdline]
        if "queue-worker" in words and cwd == str(repo):
            found.add(words[words.index("queue-worker") + 1])
    return found


def _status(repo: Path) -> dict:
    result = run([*ZOO, "nas", "status", "smoke", "--json"], repo)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, set[str]]:
    repo = copy_repo(tmp_path_factory.mktemp("nas"))
    log = repo.parent / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(
            [*ZOO, "nas", "run", "smoke"], cwd=repo, env=pipeline_env(), stdout=out, stderr=out
        )
    workers: set[str] = set()
    deadline = time.monotonic() + 900
    # Midway: both workers busy with the first generation, nothing told yet.
    while log.read_text().count(" queued as ") < 2 or len(workers) < 2:
        assert driver.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        workers |= _workers(repo)
        time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    first = _status(repo)
    assert [t["state"] for t in first["trials"] if t["same_as"] is None] == ["RUNNING", "RUNNING"]
    resumed = run([*ZOO, "nas", "run", "smoke"], repo, timeout=2400)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return repo, _status(repo), workers


def test_killed_driver_resumes_without_losing_or_repeating_trials(
    searched: tuple[Path, dict, set[str]],
) -> None:
    repo, status, workers = searched
    assert len(workers) == 2  # `dvc queue start -j 2`: two worker processes ran trials
    # A configuration proposed again is pruned as its twin's repeat, never run.
    repeats = [t for t in status["trials"] if t["same_as"] is not None]
    trials = [t for t in status["trials"] if t["same_as"] is None]
    assert all(t["state"] == "PRUNED" and not t["experiment"] for t in repeats)
    assert len(trials) == TRIALS and all(t["state"] == "COMPLETE" for t in trials)
    params = {t["number"]: t["params"] for t in trials}
    assert all(t["params"] == params[t["same_as"]] for t in repeats)
    assert len({json.dumps(p, sort_keys=True) for p in params.values()}) == TRIALS
    names = run([*DVC, "exp", "ls", "--name-only"], repo).stdout.split()
    expected = sorted(f"nas-{STUDY}-t{t['number']}" for t in trials)
    assert sorted(names) == expected  # one experiment per trial, none twice
    assert sorted(t["experiment"] for t in trials) == expected
    commits = {t["commit"] for t in trials}
    assert len(commits) == TRIALS
    for t in trials:  # what the study was told is what the experiment's commit holds
        metrics = json.loads(
            run(["git", "show", f"{t['commit']}:metrics/zoo/nas.json"], repo).stdout
        )
        assert t["values"][0] == metrics["val"]["accuracy"]
        assert 0.0 < t["values"][0] <= 1.0 and t["values"][1] > 0.0
    assert status["front"] and status["hypervolume"] > 0.0


def test_front_trial_reproduces_from_its_experiment(
    searched: tuple[Path, dict, set[str]],
) -> None:
    repo, status, _ = searched
    best = next(t for t in status["trials"] if t["number"] == status["front"][0])
    applied = run([*DVC, "exp", "apply", best["experiment"]], repo)
    # The experiment's dvc.lock still lists the stages a trial does not run (the demo's
    # data, the text flow): a fresh copy has no outputs of theirs to check out, and DVC
    # says so. Everything of the trial's own pipeline is applied.
    if applied.returncode != 0:
        listed = re.search(r"following targets:\n(.*?)\nIs your cache", applied.stderr, re.S)
        assert listed, applied.stderr
        missing = listed.group(1).split()
        ours = ("models/zoo/nas", "models/dense/vision", "data/digits")
        assert missing and not any(m.startswith(ours) for m in missing), missing
    params = run(["git", "show", f"{best['commit']}:params.yaml"], repo).stdout
    assert (repo / "params.yaml").read_text() == params
    redo = run([*DVC, "repro", "--force", "--no-run-cache", "evaluate@nas"], repo, timeout=1200)
    assert redo.returncode == 0, redo.stdout[-3000:] + redo.stderr[-3000:]
    assert "Running stage 'train_vision'" in redo.stdout  # retrained, not restored
    metrics = json.loads((repo / "metrics/zoo/nas.json").read_text())
    assert metrics["val"]["accuracy"] == best["metrics"]["accuracy"]
    assert metrics["test"]["accuracy"] == best["metrics"]["test_accuracy"]
    run(["git", "checkout", "-q", "--", "."], repo)


def test_front_is_published_with_lineage(searched: tuple[Path, dict, set[str]]) -> None:
    repo, status, _ = searched
    result = run([*ZOO, "nas", "publish", "smoke"], repo)
    assert result.returncode == 0, result.stdout + result.stderr
    published = [line.split()[-1] for line in result.stdout.splitlines()]
    assert len(published) == len(status["front"])
    for ref, number in zip(published, status["front"], strict=True):
        assert ref.endswith(f"/nas-{STUDY}-t{number}@v1")
        trial = status["trials"][number]
        stub_dir = ref.removeprefix("zoo:").split("@")[0]
        entry = json.loads((repo / "registry" / stub_dir / "v1.json").read_text())
        nas = entry["lineage"]["extra"]["nas"]
        assert nas["study"] == STUDY and nas["trial"] == number
        assert nas["params"] == trial["params"]
        assert nas["experiment_commit"] == trial["commit"] == entry["lineage"]["git_commit"]
        assert entry["metrics"]  # the export's own metrics travel with it
        # a user loads it like any entry: downloaded, every file's sha256 verified
        from zoo.client.api import load

        model = load(ref, registry=str(repo / ".zoo" / "store"), cache_dir=repo / ".cache")
        assert sum(p.numel() for p in model.parameters()) > 0


def test_catalog_shows_the_published_front_as_searched(
    searched: tuple[Path, dict, set[str]], tmp_path: Path
) -> None:
    """The catalog built from the store `zoo nas publish` wrote: each front trial is a
    diamond in the dataset's plots and a row naming its study and trial."""
    from zoo.catalog.build import build_catalog

    repo, status, _ = searched
    # Publishing again is a no-op when the test above ran, the publish when it did not.
    assert run([*ZOO, "nas", "publish", "smoke"], repo).returncode == 0
    site = build_catalog(tmp_path / "site", str(repo / ".zoo" / "store"))
    page = (site / "plots" / "classification--digits.html").read_text()
    size_plot = re.findall(r'<svg class="plot".*?</svg>', page, re.S)[0]
    front = status["front"]
    assert size_plot.count("searched") == len(front) + 1  # + the legend's sample
    assert "architecture search</text>" in size_plot
    for number in front:
        assert f"{STUDY} trial {number}</td>" in page
