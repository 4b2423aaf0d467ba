"""Loading into nn.Module, validating against samples, recipes and diffs between versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.client.conftest import SMALL, CliResult
from tests.demo_models import DemoModel, make_export
from zoo.client import api
from zoo.client.load import load_folder
from zoo.errors import CompressedFormatError, ModelValidationError
from zoo.index.publish import publish

BASE = "zoo:cv/classification/mlp/fashion_mnist/base"


def test_load_gives_the_published_weights(small_store: Callable[..., str], tmp_path: Path) -> None:
    store = small_store()
    model = api.load(SMALL.stub, registry=store)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert model.zoo_ref == SMALL.stub + "@v1"
    published = load_file(str(tmp_path / "exports" / "export-0" / "model.safetensors"))
    state = model.state_dict()
    assert set(state) == set(published)
    for name, tensor in published.items():
        assert torch.equal(state[name], tensor)
    zeros = sum(int((p == 0).sum()) for n, p in state.items() if n.endswith("weight"))
    assert zeros > 0  # the pruned weights arrived pruned


def test_validate_passes_then_fails_on_wrong_samples(
    small_store: Callable[..., str], tmp_path: Path, cli: Callable[..., CliResult]
) -> None:
    store = small_store()
    report = api.validate(SMALL.stub, registry=store)
    assert report.ok and report.checks[0].max_abs_diff <= report.checks[0].tolerance
    code, out, _ = cli("validate", SMALL.stub, "--registry", store)
    assert code == 0 and "OK" in out

    # A second version whose recorded outputs do not match its weights.
    folder = make_export(
        tmp_path / "bad", DemoModel(SMALL.stub, arch_kwargs={"hidden": [32]}, seed=9)
    )
    sample = folder / "samples" / "batch.safetensors"
    tensors = load_file(str(sample))
    tensors["output"] = tensors["output"] + 0.5
    save_file(tensors, str(sample))
    assert publish(folder, store).entry.version == 2
    with pytest.raises(ModelValidationError, match="does not reproduce"):
        api.validate(SMALL.stub + "@v2", registry=store)
    code, out, err = cli("validate", SMALL.stub + "@v2", "--registry", store)
    assert code == 1 and "NO" in out and "does not reproduce" in err


def test_unknown_compression_format_is_a_clear_error(tmp_path: Path) -> None:
    folder = make_export(tmp_path / "m", SMALL)
    import json

    config = json.loads((folder / "config.json").read_text())
    config["compression"] = {"format": "sparse-bitmask"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CompressedFormatError, match="sparse-bitmask"):
        load_folder(folder)


def test_recipe_and_diff_between_versions(demo_store: str, cli: Callable[..., CliResult]) -> None:
    text = api.recipe("zoo:cv/classification/mlp/fashion_mnist/pruned80@v1", registry=demo_store)
    assert text is not None and "sparsity: 0.80" in text
    code, out, _ = cli(
        "show",
        "--recipe",
        "zoo:cv/classification/mlp/fashion_mnist/pruned80@v1",
        "--registry",
        demo_store,
    )
    assert code == 0 and out == text
    result = api.diff(BASE + "@v1", BASE + "@v2", registry=demo_store)
    changed = {(c.section, c.key): c for c in result.changes}
    accuracy = changed[("metrics", "fashion_mnist/accuracy")]
    assert (accuracy.old, accuracy.new) == (0.884, 0.889)
    assert accuracy.delta == pytest.approx(0.005)
    assert ("files", "model.safetensors") in changed
    pruned = api.diff(
        BASE + "@v1", "zoo:cv/classification/mlp/fashion_mnist/pruned80@v1", registry=demo_store
    )
    assert "+        sparsity: 0.80" in pruned.recipe_diff
    code, out, _ = cli("diff", BASE + "@v1", BASE + "@v2", "--registry", demo_store)
    assert code == 0 and "fashion_mnist/accuracy" in out and "+0.005" in out
