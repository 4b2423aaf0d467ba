"""End to end: the DVC pipeline under the smoke experiment, in a temporary repo copy."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tests.spine.repo_copy import copy_repo, run

pytestmark = pytest.mark.slow
DVC = [sys.executable, "-m", "dvc"]


@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, str]:
    repo = copy_repo(tmp_path_factory.mktemp("repo"))
    composed = run([sys.executable, "-m", "zoo.pipeline.compose", "experiment=smoke"], repo)
    assert composed.returncode == 0, composed.stderr
    started = time.perf_counter()
    result = run([*DVC, "repro"], repo, timeout=600)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stdout + result.stderr
    return repo, seconds, result.stdout


def test_smoke_repro_produces_every_output(smoke_repo: tuple[Path, float, str]) -> None:
    repo, seconds, _ = smoke_repo
    print(f"smoke dvc repro took {seconds:.1f} s")
    for flow in ("vision", "text"):
        metrics = json.loads((repo / f"metrics/dense/{flow}.json").read_text())
        assert set(metrics) >= {"train", "val", "test", "parameters"}
        assert (repo / f"models/dense/{flow}/model.safetensors").is_file()
        assert (repo / f"plots/dense/{flow}.csv").read_text().startswith("epoch,")
    for name in ("fashion_mnist", "mnist5k", "rotten_tomatoes", "digits"):
        assert (repo / "data" / name / "meta.json").is_file()
    # Vision learns something even on the smoke subset (ten classes: chance is 10%).
    vision = json.loads((repo / "metrics/dense/vision.json").read_text())
    assert vision["test"]["accuracy"] > 0.5


def test_second_repro_runs_nothing(smoke_repo: tuple[Path, float, str]) -> None:
    repo, _, _ = smoke_repo
    again = run([*DVC, "repro"], repo)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout
    assert "up to date" in again.stdout


def test_unrelated_param_edit_reruns_nothing(smoke_repo: tuple[Path, float, str]) -> None:
    repo, _, _ = smoke_repo
    params = repo / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("url: .zoo/store", "url: .zoo/elsewhere"))
    try:
        status = run([*DVC, "status"], repo)
        assert "up to date" in status.stdout, status.stdout
    finally:
        params.write_text(original)


def test_exp_run_with_hydra_override_is_listed(smoke_repo: tuple[Path, float, str]) -> None:
    repo, _, _ = smoke_repo
    result = run([*DVC, "exp", "run", "-S", "experiment=smoke", "-S", "model=mlp"], repo)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = run([*DVC, "exp", "show", "--json"], repo)
    assert shown.returncode == 0, shown.stderr
    assert '"mlp"' in shown.stdout, "the experiment with model=mlp is not listed"
    metrics = json.loads((repo / "metrics/dense/vision.json").read_text())
    assert metrics["parameters"] > 200_000  # the MLP, not the CNN, was trained


def test_bad_override_fails_cleanly(smoke_repo: tuple[Path, float, str]) -> None:
    repo, _, _ = smoke_repo
    result = run([*DVC, "exp", "run", "-S", "model=resnet9000"], repo)
    assert result.returncode != 0
    assert "cnn_small" in result.stdout + result.stderr
