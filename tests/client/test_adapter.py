"""Adapters as entries: published in peft's format over an exact base version, downloaded
with their base (cached once), composed by zoo.load exactly as peft composes them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

import zoo
from tests.demo_models import DemoModel
from zoo.client.load import load_folder
from zoo.compress.adapter import compose, write_adapter_export
from zoo.errors import AdapterError
from zoo.index.publish import publish
from zoo.index.schema import Stub
from zoo.index.view import open_index
from zoo.recipes import RecipeManager

BASE = "zoo:cv/classification/mlp/fashion_mnist/pruned50"
ADAPTER = "zoo:cv/classification/mlp/fashion_mnist/pruned50_lora4"
RECIPE = (
    "schema_version: 1\nstages:\n  adapt:\n    run_type: train\n    modifiers:\n"
    "      - {type: EpochRangeModifier, start_epoch: 0.0, end_epoch: 1.0}\n"
    "      - {type: LoRAModifier, rank: 4, alpha: 8, target_modules: all-linear, "
    "modules_to_save: [classifier], merge: none}\n"
)


def _base_store(small_store: Callable[..., str], hidden: int = 256) -> str:
    return small_store(DemoModel(BASE, arch_kwargs={"hidden": [hidden]}, sparsity=0.5))


def _trained_adapter(base: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    optimizer = torch.optim.Adam(base.parameters(), lr=1e-2)
    manager = RecipeManager.from_yaml(RECIPE)
    manager.modify(base.train(), optimizer, steps_per_epoch=4)
    for step in range(4):
        optimizer.zero_grad()
        F.cross_entropy(
            base(x[16 * step : 16 * step + 16]), y[16 * step : 16 * step + 16]
        ).backward()
        optimizer.step()
    manager.finalize()
    return base.eval()


def _publish_adapter(store: str, tmp_path: Path, parent: str) -> str:
    model = _trained_adapter(zoo.load(f"{BASE}@v1", registry=store))
    folder = write_adapter_export(model, tmp_path / "adapter", parent=parent, stub=ADAPTER)
    return publish(folder, store).entry.ref


def _cache_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.fixture
def published(
    small_store: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, str]:
    """(store, adapter ref): a base and an adapter over it, published; then an empty cache."""
    store = _base_store(small_store)
    ref = _publish_adapter(store, tmp_path, f"{BASE}@v1")
    monkeypatch.setenv("ZOO_CACHE_DIR", str(tmp_path / "fresh"))
    return store, ref


def test_adapter_downloads_small_beside_a_cached_base_and_loads_as_peft_does(
    published: tuple[str, str], tmp_path: Path
) -> None:
    import peft

    store, ref = published
    # The base first, then the adapter.
    base_folder = zoo.download(f"{BASE}@v1", registry=store)
    before = _cache_bytes(tmp_path / "fresh")
    folder = zoo.download(ref, registry=store)
    fetched = _cache_bytes(tmp_path / "fresh") - before
    base_entry = zoo.info(f"{BASE}@v1", registry=store)
    assert fetched <= base_entry.size / 20, (fetched, base_entry.size)
    assert {p.name for p in folder.iterdir()} >= {
        "adapter_config.json",
        "adapter_model.safetensors",
    }

    x = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    ours = zoo.load(ref, registry=store)
    theirs = peft.PeftModel.from_pretrained(load_folder(base_folder), str(folder)).eval()
    plain = load_folder(base_folder)
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
        assert not torch.allclose(ours(x), plain(x))  # the adapter does something


def test_downloading_an_adapter_into_an_empty_cache_brings_its_base(
    published: tuple[str, str],
) -> None:
    store, ref = published
    session = zoo.client.api.session(store)
    session.download(ref)
    assert session.is_cached(session.resolve(f"{BASE}@v1"))


@pytest.mark.parametrize(
    ("parent", "message"),
    [
        (f"{BASE}@v7", r"base .*@v7 is not in this registry .*: publish the base first"),
        (f"{BASE}@latest", r"must name an exact version .*not an alias"),
        ("zoo:cv/classification/mlp/nowhere/dense@v1", r"is not in this registry"),
    ],
)
def test_an_adapter_over_a_missing_or_inexact_base_is_refused_and_nothing_is_published(
    small_store: Callable[..., str], tmp_path: Path, parent: str, message: str
) -> None:
    store = _base_store(small_store)
    model = _trained_adapter(zoo.load(f"{BASE}@v1", registry=store))
    if parent.endswith("@latest"):
        with pytest.raises(AdapterError, match=message):
            write_adapter_export(model, tmp_path / "adapter", parent=parent, stub=ADAPTER)
        assert not (tmp_path / "adapter").exists()
        return
    folder = write_adapter_export(model, tmp_path / "adapter", parent=parent, stub=ADAPTER)
    with pytest.raises(AdapterError, match=message):
        publish(folder, store)
    assert open_index(store).record(Stub.parse(ADAPTER)) is None


def test_an_adapter_whose_shapes_do_not_fit_the_base_names_the_tensor(
    small_store: Callable[..., str], tmp_path: Path
) -> None:
    store = _base_store(small_store)
    model = _trained_adapter(zoo.load(f"{BASE}@v1", registry=store))
    folder = write_adapter_export(model, tmp_path / "adapter", parent=f"{BASE}@v1")
    other = DemoModel(
        "zoo:cv/classification/mlp/fashion_mnist/narrow", arch_kwargs={"hidden": [64]}
    )
    narrow_store = small_store(other)
    narrow = zoo.load(f"{other.stub}@v1", registry=narrow_store)
    with pytest.raises(
        AdapterError,
        match=r"base_model\.model\.\S+ is \[\d+, \d+\] but the base's layer needs "
        r"\[\d+, \d+\]: this adapter was trained on another base",
    ):
        compose(narrow, folder)


def test_an_adapter_that_does_not_fit_its_base_is_refused_at_publish(
    small_store: Callable[..., str], tmp_path: Path
) -> None:
    """Trained on a 64-wide MLP, published over the 256-wide base: refused, naming the
    tensor and the base, and nothing is published."""
    store = _base_store(small_store)
    other = DemoModel(
        "zoo:cv/classification/mlp/fashion_mnist/narrow", arch_kwargs={"hidden": [64]}
    )
    narrow = zoo.load(f"{other.stub}@v1", registry=small_store(other))
    folder = write_adapter_export(
        _trained_adapter(narrow), tmp_path / "adapter", parent=f"{BASE}@v1", stub=ADAPTER
    )
    with pytest.raises(
        AdapterError,
        match=rf"cannot publish \S+ over its base {BASE}@v1 .*: .*base_model\.model\.\S+ is "
        r"\[\d+, \d+\] but the base's layer needs \[\d+, \d+\]",
    ):
        publish(folder, store)
    assert open_index(store).record(Stub.parse(ADAPTER)) is None


def test_an_adapter_whose_targets_are_not_in_the_base_is_refused_at_publish(
    small_store: Callable[..., str], tmp_path: Path
) -> None:
    import json

    store = _base_store(small_store)
    folder = write_adapter_export(
        _trained_adapter(zoo.load(f"{BASE}@v1", registry=store)),
        tmp_path / "adapter",
        parent=f"{BASE}@v1",
        stub=ADAPTER,
    )
    config_path = folder / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["target_modules"] = ["encoder.query"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(
        AdapterError,
        match=r"over its base .*target_modules 'encoder\.query' matches no module of the base",
    ):
        publish(folder, store)
    assert open_index(store).record(Stub.parse(ADAPTER)) is None


def test_search_lists_an_adapter_under_its_base_and_filters_by_base(
    published: tuple[str, str], cli: Callable[..., tuple[int, str, str]]
) -> None:
    import json

    store, ref = published
    (hit,) = zoo.search(adapters_of=BASE, registry=store)
    assert hit.ref == ref and hit.summary.adapter_of == f"{BASE}@v1"
    assert [h.ref for h in zoo.search(adapters_of=f"{BASE}@v1", registry=store)] == [ref]
    assert zoo.search(adapters_of=f"{BASE}@v2", registry=store) == []
    assert zoo.search(adapters_of=ADAPTER, registry=store) == []  # an adapter has none

    code, out, err = cli("search", "--registry", store)
    assert code == 0, err
    lines = [line for line in out.splitlines() if "zoo:" in line]
    at = next(i for i, line in enumerate(lines) if f"{BASE}@v1" in line and "└" not in line)
    assert f"└ {ref}" in lines[at + 1]  # right under its base, indented
    code, out, _ = cli("search", "--registry", store, "--sort", "size")
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if ref in line)
    assert "└" not in lines[at]  # a sorted list keeps its order, and names the base
    assert lines[at + 1].strip() == f"adapter of {BASE}@v1"
    code, out, _ = cli("search", "--registry", store, "--adapters-of", BASE, "--json")
    assert code == 0
    assert [(h["ref"], h["adapter_of"]) for h in json.loads(out)] == [(ref, f"{BASE}@v1")]
    code, _, err = cli("search", "--registry", store, "--adapters-of", f"{BASE}@latest")
    assert code != 0 and "STUB or STUB@vN" in err and "not an alias" in err


@pytest.mark.parametrize("bad", [f"{BASE}@latest", BASE, "not a stub", 5])
def test_the_index_records_an_adapters_base_and_checks_it_when_read(
    published: tuple[str, str], bad: object
) -> None:
    from zoo.errors import SchemaError
    from zoo.index.schema import EntrySummary

    store, _ = published
    index = open_index(store)
    (adapter,) = index.versions(Stub.parse(ADAPTER))
    (base,) = index.versions(Stub.parse(BASE))
    assert adapter.to_dict()["adapter_of"] == f"{BASE}@v1"
    assert "adapter_of" not in base.to_dict()  # models' index documents are unchanged
    with pytest.raises(SchemaError, match=r"adapter_of .*zoo:\.\.\.@vN|adapter_of must be str"):
        EntrySummary.from_dict({**adapter.to_dict(), "adapter_of": bad})
