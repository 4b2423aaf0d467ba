"""Stage scripts: bad input exits non-zero with a clear message and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from zoo.pipeline.compose import compose

REPO = Path(__file__).resolve().parents[2]


def run_train(tmp_path: Path, data_dir: Path, params: dict) -> subprocess.CompletedProcess[str]:
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    out = tmp_path / "out"
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "pipelines/train_dense.py"),
            "--flow=vision",
            f"--data={data_dir}",
            f"--out={out}/model",
            f"--metrics={out}/metrics.json",
            f"--plots={out}/plots.csv",
            f"--params={params_file}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def digits_params(**model: object) -> dict:
    params = compose(REPO / "conf", ["data=digits", "experiment=smoke", "train.epochs=1"])
    params["model"].update(model)
    return params


def test_unknown_model_in_params_lists_choices(tmp_path: Path, prepared_data: Path) -> None:
    result = run_train(tmp_path, prepared_data / "digits", digits_params(name="resnet9000"))
    assert result.returncode != 0
    assert "unknown model 'resnet9000'" in result.stderr and "cnn_small" in result.stderr
    assert not (tmp_path / "out").exists()


def test_text_model_on_image_data_is_refused(tmp_path: Path, prepared_data: Path) -> None:
    params = digits_params(name="minilm_classifier", kwargs={})
    result = run_train(tmp_path, prepared_data / "digits", params)
    assert result.returncode != 0
    assert "takes text" in result.stderr and "digits" in result.stderr
    assert not (tmp_path / "out").exists()


def test_bad_architecture_argument_is_refused(tmp_path: Path, prepared_data: Path) -> None:
    params = digits_params(name="cnn_small", kwargs={"channels": [4], "head": "spiral"})
    result = run_train(tmp_path, prepared_data / "digits", params)
    assert result.returncode != 0 and "head must be" in result.stderr
    assert not (tmp_path / "out").exists()


def test_good_run_writes_all_outputs(tmp_path: Path, prepared_data: Path) -> None:
    params = digits_params(name="cnn_small", kwargs={"channels": [4, 8]})
    result = run_train(tmp_path, prepared_data / "digits", params)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    assert 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert (tmp_path / "out/model/model.safetensors").is_file()
