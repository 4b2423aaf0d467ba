"""Training-aware recipes under torchrun: two gloo ranks on CPU, real processes.

The worker (tests/spine/ddp_recipe_worker.py) runs GMP + QAT + distillation through the
project's own `fit` and `RecipeManager` on the shipped digits; the compress stage script
runs a zoo entry with `train.distributed.nproc_per_node: 2`, launching itself under torchrun.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from tests.spine.test_stages import REPO, digits_params, run_train

WORKER = REPO / "tests/spine/ddp_recipe_worker.py"


def _run_worker(out: Path, data: Path, nproc: int) -> None:
    out.mkdir()
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"]
    result = subprocess.run(
        [
            sys.executable,
            *(launcher if nproc > 1 else []),
            str(WORKER),
            f"--data={data}",
            f"--out={out}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def _zeros(masks: dict) -> int:
    return sum(int((mask == 0).sum()) for mask in masks.values())


@pytest.mark.slow
def test_two_ranks_hold_byte_identical_masks_and_quantization_state(
    tmp_path: Path, prepared_data: Path
) -> None:
    _run_worker(tmp_path / "two", prepared_data / "digits", nproc=2)
    _run_worker(tmp_path / "one", prepared_data / "digits", nproc=1)
    ranks = [load_file(str(tmp_path / f"two/masks{r}.safetensors")) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys() and len(ranks[0]) >= 3
    for name in ranks[0]:
        assert ranks[0][name].numpy().tobytes() == ranks[1][name].numpy().tobytes(), name
    facts = [json.loads((tmp_path / f"two/rank{r}.json").read_text()) for r in (0, 1)]
    # Weights, batch-norm statistics, observer ranges and fake-quant scales: one digest.
    assert facts[0]["digest"] == facts[1]["digest"]
    assert facts[0]["fake_quant_modules"] > 0  # the QAT swap happened mid-training
    # Schedules in global steps: the same sparsity as one process, exactly.
    single = load_file(str(tmp_path / "one/masks0.safetensors"))
    assert single.keys() == ranks[0].keys()
    assert _zeros(ranks[0]) == _zeros(single) > 0


def _compress_params(nproc: int, batch_size: int) -> dict:
    params = digits_params(name="cnn_small", kwargs={"channels": [8, 16], "hidden": []})
    params["train"]["distributed"] = {"nproc_per_node": nproc, "backend": "gloo"}
    params["compress"].update(limit_train=256, limit_eval=64)
    params["zoo"] = {
        "digits_gmp_qat": {
            "flow": "train",
            "parent": "PARENT",
            "recipe": str(REPO / "conf/recipe/cnn_gmp_qat.yaml"),
            "data": "digits",
            "stub": "zoo:cv/classification/cnn_small/digits/pruned90_quant",
            "baseline": "digits_gmp_qat",
            "batch_size": batch_size,
        }
    }
    return params


def _run_compress(
    folder: Path, data_root: Path, params: dict, parent: Path
) -> subprocess.CompletedProcess[str]:
    params["zoo"]["digits_gmp_qat"]["parent"] = str(parent)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "pipelines/compress.py"),
            "--entry=digits_gmp_qat",
            f"--data-root={data_root}",
            f"--params={folder / 'params.yaml'}",
            f"--out={folder / 'out/model'}",
            f"--plots={folder / 'out/plots.csv'}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_world_size_that_does_not_divide_the_entry_batch_is_refused(
    tmp_path: Path, prepared_data: Path
) -> None:
    result = _run_compress(tmp_path, prepared_data, _compress_params(2, 33), tmp_path / "none")
    assert result.returncode != 0
    assert (
        "zoo.digits_gmp_qat.batch_size 33 does not split evenly among 2 processes "
        "(train.distributed.nproc_per_node)" in result.stderr
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_gmp_qat_entry_on_two_ranks_matches_one_process(
    tmp_path: Path, prepared_data: Path
) -> None:
    dense = tmp_path / "dense"
    dense.mkdir()
    trained = run_train(dense, prepared_data / "digits", _compress_params(1, 32))
    assert trained.returncode == 0, trained.stderr[-2000:]
    from zoo.compress.facts import sparsity_facts
    from zoo.pipeline.model_io import load_model_folder

    made = {}
    for nproc in (1, 2):
        folder = tmp_path / f"np{nproc}"
        folder.mkdir()
        result = _run_compress(
            folder, prepared_data, _compress_params(nproc, 32), dense / "out/model"
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        # Only rank 0 wrote: the model folder and the curve, nothing else beside them.
        assert sorted(p.name for p in (folder / "out").iterdir()) == ["model", "plots.csv"]
        made[nproc] = sparsity_facts(load_model_folder(folder / "out/model"))
    assert made[2].nonzero == made[1].nonzero and made[1].overall > 0.85
