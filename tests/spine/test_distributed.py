"""Dense training under torchrun: two gloo ranks on CPU train like one process.

Real processes, launched by the stage script itself through torch.distributed.run, on the
shipped digits data; the single-process run of the same config is the reference.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.spine.test_stages import digits_params, run_train


def _params(nproc: int, batch_size: int = 64) -> dict:
    params = digits_params(name="mlp", kwargs={"hidden": [64]})
    params["train"].update(epochs=3, batch_size=batch_size, lr=0.003)
    params["train"]["distributed"] = {"nproc_per_node": nproc, "backend": "gloo"}
    return params


def test_a_world_size_that_does_not_divide_the_batch_is_refused(
    tmp_path: Path, prepared_data: Path
) -> None:
    result = run_train(tmp_path, prepared_data / "digits", _params(nproc=2, batch_size=33))
    assert result.returncode != 0
    assert "train.batch_size 33 does not split evenly among 2 processes" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unknown_backend_is_refused(tmp_path: Path, prepared_data: Path) -> None:
    params = _params(nproc=2)
    params["train"]["distributed"]["backend"] = "mpi"
    result = run_train(tmp_path, prepared_data / "digits", params)
    assert result.returncode != 0 and "distributed.backend" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_ranks_train_like_one_process(tmp_path: Path, prepared_data: Path) -> None:
    runs = {}
    for nproc in (1, 2):
        folder = tmp_path / f"np{nproc}"
        folder.mkdir()
        started = time.perf_counter()
        result = run_train(folder, prepared_data / "digits", _params(nproc))
        runs[nproc] = time.perf_counter() - started
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    print(
        f"wall time, 2 ranks / 1 process: {runs[2] / runs[1]:.2f} ({runs[2]:.1f} / {runs[1]:.1f} s)"
    )
    one = json.loads((tmp_path / "np1/out/metrics.json").read_text())
    two = json.loads((tmp_path / "np2/out/metrics.json").read_text())
    assert two["distributed"]["world_size"] == 2 and "distributed" not in one
    # The same global batches and the same mean gradient: the same model up to float
    # summation order (ranks reduce their halves separately).
    assert abs(two["test"]["accuracy"] - one["test"]["accuracy"]) <= 0.02
    w1 = load_file(str(tmp_path / "np1/out/model/model.safetensors"))
    w2 = load_file(str(tmp_path / "np2/out/model/model.safetensors"))
    assert w1.keys() == w2.keys()
    for name in w1:
        assert torch.allclose(w1[name], w2[name], atol=2e-3), name
    # Only rank 0 wrote: one checkpoint folder, no stray temporary files beside it.
    assert sorted(p.name for p in (tmp_path / "np2/out").iterdir()) == [
        "metrics.json",
        "model",
        "plots.csv",
    ]
