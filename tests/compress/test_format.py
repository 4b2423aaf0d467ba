"""The format's own guarantees: one table of transforms, no import cycle in zoo/compress,
one loader for every kind of folder."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from zoo.compress import format as fmt
from zoo.compress.export import export_model
from zoo.compress.load import load_exported
from zoo.errors import CompressedFormatError
from zoo.models import get_model
from zoo.models.checkpoint import save_checkpoint

PACKAGE = REPO / "zoo" / "compress"


def _module_imports(path: Path) -> set[str]:
    """zoo.compress modules `path` imports at module level (not inside functions)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "zoo.compress":
                found |= {f"zoo.compress.{a.name}" for a in node.names}
            elif node.module.startswith("zoo.compress."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("zoo.compress.")}
    return found


def test_zoo_compress_has_no_import_cycle() -> None:
    graph = {
        f"zoo.compress.{p.stem}": _module_imports(p)
        for p in PACKAGE.glob("*.py")
        if p.stem != "__init__"
    }
    assert "zoo.compress.format" in graph["zoo.compress.load"]
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        if module in done:
            return
        for target in graph.get(module, ()):
            visit(target, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())


def test_every_transform_has_one_row_and_its_code_in_one_module() -> None:
    names = [t.name for t in fmt.TRANSFORMS]
    assert names == [
        "adapter",
        "lowrank",
        "experts",
        "early_exit",
        "resize",
        "weight_sharing",
        "int8",
        "weight_int",
    ]
    for transform in fmt.TRANSFORMS:
        modules = {transform.record.__module__, transform.replay.__module__}
        if transform.load is not None:
            modules.add(transform.load.__module__)
        modules.discard("zoo.compress.transform")  # the shared no-op replay
        assert len(modules) == 1, (transform.name, modules)


def test_dense_checkpoints_and_exports_load_through_the_one_entry(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_model("mlp", hidden=(16,)).eval()
    x = torch.randn(2, 1, 28, 28)
    save_checkpoint(model, tmp_path / "dense")
    export_model(model, tmp_path / "export", sample_inputs=x)
    with torch.no_grad():
        for folder in ("dense", "export"):
            assert torch.equal(load_exported(tmp_path / folder)(x), model(x))


def test_two_weight_layouts_in_one_folder_are_refused(tmp_path: Path) -> None:
    torch.manual_seed(0)
    export_model(get_model("mlp", hidden=(16,)), tmp_path / "m", compress=True)
    config = json.loads((tmp_path / "m/config.json").read_text())
    config["compression"] = {
        "format": fmt.COMPRESSED_FORMAT,
        "transforms": [{"type": "weight_sharing"}, {"type": "int8"}],
        "encoding": {"format": "plain"},
    }
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    with pytest.raises(CompressedFormatError, match="'weight_sharing' and 'int8'"):
        load_exported(tmp_path / "m", verify=False)


def test_a_model_holding_an_unmerged_adapter_exports_and_loads_back_with_it(
    tmp_path: Path,
) -> None:
    from zoo.compress.adapter import inject
    from zoo.modifiers.lora import lora_layers

    torch.manual_seed(0)
    model = get_model("mlp", hidden=(32,)).eval()
    settings = {"r": 2, "lora_alpha": 4, "lora_dropout": 0.0}
    inject(model, {**settings, "target_modules": ["features.1"], "modules_to_save": ["classifier"]})
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].weight.normal_()  # peft starts B at zero: make it count
    x = torch.randn(2, 1, 28, 28)
    export_model(model, tmp_path / "m", sample_inputs=x)
    config = json.loads((tmp_path / "m/config.json").read_text())
    assert fmt.transform_names(config) == ["adapter"]
    loaded = load_exported(tmp_path / "m")
    assert sorted(lora_layers(loaded)) == ["features.1"]
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
