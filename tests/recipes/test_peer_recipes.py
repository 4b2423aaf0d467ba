"""The recipes `make bench-peers` gives both sides select the same 36 MiniLM layers on each.

Our side selects through the recipe (zoo.recipes.check_model); llm-compressor's side keeps
the weights bench/peers/theirs.py hands back (encoder_linears). If the two disagreed, the
benchmark would compare different layers.
"""

from __future__ import annotations

import pytest
from torch import nn

from bench.peers.recipes import RECIPES
from bench.peers.theirs import encoder_linears
from zoo.models.text import minilm_classifier
from zoo.recipes import parse_recipe
from zoo.recipes.validate import check_model


@pytest.fixture(scope="module")
def minilm() -> nn.Module:
    return minilm_classifier(pretrained=False)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_both_sides_compress_the_same_encoder_layers(name: str, minilm: nn.Module) -> None:
    targets = check_model(parse_recipe(RECIPES[name]), minilm)
    ours = sorted(t for layers in targets.values() for t in layers)
    theirs = sorted(encoder_linears(minilm))
    assert len(ours) == 36
    assert ours == theirs
