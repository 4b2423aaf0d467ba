"""The zoo's entries and recipes under conf/ are consistent before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.index.schema import Stub
from zoo.pipeline.compose import compose
from zoo.pipeline.entries import FLOWS, MODEL_ROOT, entry_config
from zoo.recipes.parse import load_recipe

REPO = Path(__file__).resolve().parents[2]
ZOOS = sorted(p.stem for p in (REPO / "conf/zoo").glob("*.yaml"))
DENSE_OUTPUTS = {"models/dense/vision", "models/dense/text"}
# Transformers model folders the tiny_model stage writes (prepare.tiny_models).
TINY_OUTPUTS = {f"models/hf/{kind}_tiny" for kind in ("llama", "bert")}


@pytest.mark.parametrize("recipe", sorted((REPO / "conf/recipe").glob("*.yaml")), ids=str)
def test_every_recipe_parses(recipe: Path) -> None:
    parsed = load_recipe(str(recipe))
    assert parsed.stages


@pytest.mark.parametrize("zoo", ZOOS)
def test_entries_are_consistent(zoo: str) -> None:
    params = compose(REPO / "conf", [f"zoo={zoo}"])
    entries = params["zoo"]
    stubs = set()
    for key in entries:
        entry = entry_config(params, key)
        assert entry.flow in FLOWS
        assert (REPO / entry.recipe).is_file(), entry.recipe
        others = [k for k in entries if k != key]
        valid_parents = (
            DENSE_OUTPUTS
            | TINY_OUTPUTS
            | {f"{MODEL_ROOT}/{k}" for k in others}
            | {f"metrics/register/{k}.json" for k in others}
        )
        assert entry.parent in valid_parents, f"{key}: parent {entry.parent}"
        if entry.parent in TINY_OUTPUTS:
            assert entry.tokenizer == entry.parent, f"{key}: an hf model reads its own tokenizer"
            assert (
                entry.parent.split("/")[-1].removesuffix("_tiny")
                in params["prepare"]["tiny_models"]
            )
        # A baseline is a dense model of the same flow, or the entry itself where none is
        # built (the smoke zoo's single text entry).
        assert entry.baseline == key or entries[entry.baseline]["flow"] in ("dense", "transfer")
        stubs.add(str(Stub.parse(entry.stub)))
    assert len(stubs) == len(entries), "two entries share a stub"


def test_demo_zoo_has_the_promised_entries() -> None:
    entries = compose(REPO / "conf")["zoo"]
    flows = {entries[k]["flow"] for k in entries}
    assert flows == set(FLOWS)
    assert len([k for k in entries if k.startswith("minilm")]) >= 7
    assert len([k for k in entries if k.startswith("cnn")]) >= 11
