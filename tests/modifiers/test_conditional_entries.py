"""Conditional-computation entries through the stages' real code, on tiny models and the
shipped reviews: the evaluate stage sweeps the early-exit threshold and the benchmark and
export stages run at its choice; the export publishes, downloads, loads, validates, and
its catalog page shows the active-parameter and layers-executed facts, the threshold
sweep and the MoE expert load histogram."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import zoo
from tests.compress.recipes import recipe
from tests.modifiers.conditional_models import bert, scramble_routers, with_exits
from zoo.catalog.build import build_catalog, page_slug
from zoo.data import prepare_dataset
from zoo.errors import ConfigError
from zoo.evaluation.conditional_names import exit_sweep, expert_load, load_name, sweep_name
from zoo.index.publish import publish
from zoo.modifiers import early_exit
from zoo.modifiers.moe import moe_layers
from zoo.pipeline.entries import BenchSettings, CompressSettings, EntryConfig
from zoo.pipeline.export_stage import run_export
from zoo.pipeline.measure import EXIT_BLOCK, run_benchmark, run_evaluate
from zoo.pipeline.model_io import save_model_folder
from zoo.recipes import oneshot

DATA = "rotten_tomatoes"
STUB = f"zoo:nlp/text_classification/minilm_classifier/{DATA}"
EVAL = CompressSettings(limit_eval=48)
BENCH = BenchSettings(batch_sizes=[1], rounds=1, budget_s=0.2, warmup=1, sample_examples=4)
MOE_LAYER = "encoder.encoder.layer.1.intermediate"  # the block's expert pair lives here
UPCYCLE = (
    "{type: MoEUpcyclingModifier, blocks: [encoder.encoder.layer.1], num_experts: 4, top_k: 1}"
)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    prepare_dataset(DATA, root / DATA, seed=0)
    return root


def _entry(key: str, root: Path, **fields: Any) -> EntryConfig:
    recipe_file = root / f"{key}.yaml"
    recipe_file.write_text("version: 1\nstages: {}\n")
    return EntryConfig(
        key=key,
        flow="train",
        parent="models/dense/text",
        data=DATA,
        stub=f"{STUB}/{key}",
        baseline="dense",
        recipe=str(recipe_file),
        max_length=16,
        **fields,
    )


def _early_exit_model() -> nn.Module:
    model = with_exits(bert(layers=3, vocab=30522), "[0, 1]", "entropy", 0.0)
    with torch.no_grad():  # exits of varied confidence, so the sweep has a trade-off
        for head in model.exit_heads.values():
            nn.init.normal_(head.weight, std=2.0)
    return model


def _moe_model() -> nn.Module:
    model = oneshot(bert(layers=3, vocab=30522), recipe(UPCYCLE))
    scramble_routers(model)
    return model


@dataclass(frozen=True)
class Published:
    metrics: dict[str, Any]
    ref: str
    page: str  # its catalog page
    store: str


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> dict[str, Published]:
    """An early-exit and an MoE entry through evaluate -> benchmark -> export -> publish,
    as the DVC stages chain them, and the catalog of their store."""
    root = tmp_path_factory.mktemp("zoo")
    store = str(root / "store")
    dense_dir = root / "models/dense"
    save_model_folder(bert(layers=3, vocab=30522), dense_dir)
    done = {}
    for entry, model in (
        (_entry("early_exit", root, exit_max_drop=0.05), _early_exit_model()),
        (_entry("moe", root), _moe_model()),
    ):
        model_dir = root / f"models/{entry.key}"
        save_model_folder(model, model_dir)
        metrics = run_evaluate(entry, EVAL, data_root, model_dir, dense_dir)
        report = run_benchmark(entry, BENCH, data_root, model_dir, dense_dir, metrics)
        out = root / f"export/{entry.key}"
        entries = {entry.key: {"flow": "train", "parent": entry.parent}}
        run_export(entry, entries, BENCH, data_root, model_dir, metrics, report, out)
        done[entry.key] = (metrics, publish(out, store).entry.ref)
    site = build_catalog(root / "site", store)
    return {
        key: Published(
            metrics, ref, (site / "models" / f"{page_slug(ref)}.html").read_text(), store
        )
        for key, (metrics, ref) in done.items()
    }


def test_an_early_exit_entry_runs_at_the_threshold_its_evaluation_chose(
    published: dict[str, Published],
) -> None:
    ee = published["early_exit"]
    sweep = ee.metrics[EXIT_BLOCK]
    chosen = sweep["exit_threshold"]
    points = [
        {"threshold": p.threshold, "accuracy": p.accuracy, "mean_layers": p.mean_layers}
        for p in exit_sweep(sweep)
    ]
    assert len(points) >= 5 and points[0]["mean_layers"] == 3.0  # the first never exits
    full = points[0]["accuracy"]
    expected = early_exit.choose_operating_point(points, 0.05, reference=full)
    assert chosen == expected["threshold"] and sweep["exit_max_drop"] == 0.05
    assert sweep[sweep_name(chosen, "accuracy")] >= full - 0.05

    loaded = zoo.load(ee.ref, registry=ee.store)
    assert early_exit.exit_spec(loaded)["threshold"] == chosen  # not the recipe's 0.0
    assert zoo.validate(ee.ref, registry=ee.store).ok
    facts = zoo.info(ee.ref, registry=ee.store).metrics[DATA]
    assert facts["exit_threshold"] == chosen
    assert facts["mean_layers_executed"] == ee.metrics["test"]["mean_layers_executed"] <= 3.0
    assert facts["active_parameters"] <= facts["total_parameters"]

    assert "active_parameters" in ee.page and "mean_layers_executed" in ee.page
    rows = re.findall(r'<tr class="chosen"><td class="num">([^<]+)</td>', ee.page)
    assert rows == [f"{chosen:.4g}"]


def test_an_moe_entry_records_its_expert_load_histogram(published: dict[str, Published]) -> None:
    moe = published["moe"]
    test = moe.metrics["test"]
    shares = [test[load_name(MOE_LAYER, i)] for i in range(4)]
    assert sum(shares) == pytest.approx(1.0, abs=1e-3)
    assert max(shares) == test["expert_load_max"] and min(shares) == test["expert_load_min"]
    assert EXIT_BLOCK not in moe.metrics

    loaded = zoo.load(moe.ref, registry=moe.store)
    assert [name for name, _ in moe_layers(loaded)] == [MOE_LAYER]
    assert zoo.validate(moe.ref, registry=moe.store).ok
    facts = zoo.info(moe.ref, registry=moe.store).metrics[DATA]
    assert expert_load(facts) == {MOE_LAYER: shares}
    assert facts["active_parameters"] < facts["total_parameters"]  # 3 of 4 experts idle
    # A per-expert fact is a metric a search can filter on, "/" in its name and all.
    busiest = max(range(4), key=lambda i: shares[i])
    name = load_name(MOE_LAYER, busiest)
    found = zoo.search(registry=moe.store, where=[f"{name}>={shares[busiest]}"])
    assert [h.ref for h in found] == [moe.ref]
    assert not zoo.search(registry=moe.store, where=[f"{name}>{shares[busiest]}"])

    assert moe.page.count('class="bar"') == 4 and f"expert load of {MOE_LAYER}" in moe.page
    table = re.search(r'<table class="kv" id="metrics">.*?</table>', moe.page, re.S)
    assert table and "expert_load/" not in table[0]  # drawn, not listed as metric rows
    assert "active_parameters" in moe.page


def test_a_configured_threshold_is_kept_and_still_swept(tmp_path: Path, data_root: Path) -> None:
    model = with_exits(bert(layers=3, vocab=30522), "[0]", "max_prob", 0.99)
    save_model_folder(model, tmp_path / "ee")
    entry = _entry("fixed_exit", tmp_path, exit_threshold=0.8)
    metrics = run_evaluate(entry, EVAL, data_root, tmp_path / "ee", tmp_path / "ee")
    assert metrics[EXIT_BLOCK]["exit_threshold"] == 0.8
    assert [p.threshold for p in exit_sweep(metrics[EXIT_BLOCK]) if p.chosen] == [0.8]
    assert metrics["val"]["accuracy"] == pytest.approx(
        metrics[EXIT_BLOCK][sweep_name(0.8, "accuracy")], abs=1e-6
    )


def test_a_missing_or_bad_chosen_threshold_is_refused(tmp_path: Path, data_root: Path) -> None:
    model = with_exits(bert(layers=3, vocab=30522), "[0]", "entropy", 0.1)
    save_model_folder(model, tmp_path / "ee")
    entry = _entry("ee", tmp_path)
    for metrics in ({}, {EXIT_BLOCK: {"exit_threshold": "low"}}, {EXIT_BLOCK: []}):
        with pytest.raises(ConfigError, match=r"exit_threshold.*re-run its evaluate stage"):
            run_benchmark(entry, BENCH, data_root, tmp_path / "ee", tmp_path / "ee", metrics)
    with pytest.raises(ConfigError, match=r"exit_threshold must be >= 0, got -1"):
        run_export(
            entry,
            {},
            BENCH,
            data_root,
            tmp_path / "ee",
            {EXIT_BLOCK: {"exit_threshold": -1}},
            None,
            tmp_path / "out",  # type: ignore[arg-type]
        )
    assert not (tmp_path / "out").exists()


def test_entry_exit_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"zoo.x.exit_max_drop: .*got 5"):
        _entry("x", tmp_path, exit_max_drop=5)
    with pytest.raises(ConfigError, match=r"zoo.x.exit_threshold: must be >= 0 .*got -0.5"):
        _entry("x", tmp_path, exit_threshold=-0.5)
