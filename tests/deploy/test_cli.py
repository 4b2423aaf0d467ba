"""`zoo export --format compressed-tensors` and `zoo import` on the command line: the happy
path to a published entry, and every bad input with a clear error, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.deploy.conftest import recipe
from zoo.cli import main
from zoo.compress.export import export_model
from zoo.deploy.compressed_tensors import sample_inputs
from zoo.models import get_model
from zoo.recipes.manager import oneshot

STUB = "zoo:nlp/text_classification/bert_tiny/random/pruned50_24"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def ct_int8(zoo_bert: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    folder = tmp_path / "ct_int8"
    code, _, err = run(
        capsys, "export", "--format", "compressed-tensors", str(zoo_bert["int8"]), str(folder)
    )
    assert code == 0, err
    return folder


def test_export_import_publish(
    zoo_bert: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct, back, store = tmp_path / "ct", tmp_path / "back", tmp_path / "store"
    code, out, err = run(
        capsys, "export", "--format", "compressed-tensors", str(zoo_bert["sparse24"]), str(ct)
    )
    assert code == 0, err
    assert "2:4" in out and "from_pretrained" in out
    code, out, err = run(capsys, "import", str(ct), str(back), "--stub", STUB, "--json")
    assert code == 0, err
    facts = json.loads(out)
    assert facts["sparsity_structure"] == "2:4" and facts["quantization"] is None
    code, out, err = run(capsys, "publish", str(back), "--store", str(store))
    assert code == 0, err
    assert f"{STUB}@v1" in out


def test_export_by_stub_downloads_through_the_client(
    zoo_bert: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from zoo.index.publish import publish

    store = tmp_path / "store"
    publish(zoo_bert["sparse50"], str(store), stub=STUB)
    code, out, err = run(
        capsys,
        "export",
        "--format",
        "compressed-tensors",
        f"{STUB}@v1",
        str(tmp_path / "ct"),
        "--registry",
        str(store),
        "--json",
    )
    assert code == 0, err
    facts = json.loads(out)
    assert facts["sparsity_structure"] == "unstructured" and facts["format"] == "dense"
    assert (tmp_path / "ct" / "model.safetensors").is_file()


def test_import_keeps_what_was_there_when_it_fails(
    ct_int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = json.loads((ct_int8 / "config.json").read_text())
    config["quantization_config"]["format"] = "nvfp4-pack-quantized"
    (ct_int8 / "config.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier export")
    code, _, err = run(capsys, "import", str(ct_int8), str(out))
    assert code == 2
    assert "nvfp4-pack-quantized" in err and "does not map" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp left


def _edit(folder: Path, edit: dict) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"].update(edit)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "edit, named",
    [
        ({"quant_method": "gptq"}, "'gptq', not compressed-tensors"),
        ({"sparsity_config": {"format": "sparse-bitmask"}}, "sparse-bitmask"),
        ({"sparsity_config": {"format": "sparse-24-bitmask"}}, "removed that format after 0.14"),
        ({"kv_cache_scheme": {"num_bits": 8, "type": "float"}}, "key/value cache"),
        (
            {
                "config_groups": {
                    "g": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float"}}
                }
            },
            "float8",
        ),
        (
            {
                "config_groups": {
                    "g": {"targets": ["Linear"], "weights": {"num_bits": 3, "strategy": "nonsense"}}
                }
            },
            "invalid quantization_config",
        ),
    ],
)
def test_import_names_what_it_cannot_map(
    edit: dict, named: str, ct_int8: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _edit(ct_int8, edit)
    code, _, err = run(capsys, "import", str(ct_int8), str(tmp_path / "out"))
    assert code == 2, err
    assert named in err
    assert not (tmp_path / "out").exists()


def test_import_runs_no_code_from_the_folder(
    zoo_minilm: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ct = tmp_path / "ct"
    assert (
        run(capsys, "export", "--format", "compressed-tensors", str(zoo_minilm["int8"]), str(ct))[0]
        == 0
    )
    modeling = ct / "modeling_zoo_text.py"
    modeling.write_text(modeling.read_text() + "\nimport os  # changed by someone\n")
    code, _, err = run(capsys, "import", str(ct), str(tmp_path / "out"))
    assert code == 2
    assert "names remote code" in err and "runs no code" in err
    assert not (tmp_path / "out").exists()


def test_export_refuses_a_model_that_is_not_a_transformers_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cnn = tmp_path / "cnn"
    export_model(get_model("cnn_small").eval(), cnn, sample_inputs=torch.zeros(2, 1, 28, 28))
    code, _, err = run(
        capsys, "export", "--format", "compressed-tensors", str(cnn), str(tmp_path / "ct")
    )
    assert code == 2
    assert "'cnn_small' model, not a transformers model" in err
    assert not (tmp_path / "ct").exists()


def test_export_refuses_seven_bit_activations(
    tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = get_model("hf", path=str(tiny_bert))
    oneshot(model, recipe("{type: DynamicQuantizationModifier, reduce_range: true}"))
    export_model(model, tmp_path / "zoo", sample_inputs=sample_inputs(model))
    code, _, err = run(
        capsys,
        "export",
        "--format",
        "compressed-tensors",
        str(tmp_path / "zoo"),
        str(tmp_path / "ct"),
    )
    assert code == 2
    assert "7 bits (reduce_range" in err and "reduce_range=False" in err
    assert not (tmp_path / "ct").exists()


def test_export_of_a_missing_folder_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "export",
        "--format",
        "compressed-tensors",
        str(tmp_path / "nope"),
        str(tmp_path / "ct"),
    )
    assert code != 0
    assert "nope" in err and "zoo: stub" in err
    assert not (tmp_path / "ct").exists()


def test_a_copied_folder_exports_the_same(ct_int8: Path, tmp_path: Path) -> None:
    """The folder carries everything transformers needs: a copy elsewhere loads the same."""
    from transformers import AutoModelForSequenceClassification

    copy = shutil.copytree(ct_int8, tmp_path / "copy")
    model = AutoModelForSequenceClassification.from_pretrained(str(copy))
    assert model.config.quantization_config.to_dict()["format"] == "int-quantized"
