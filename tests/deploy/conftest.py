"""Tiny transformers models compressed by the zoo's real transforms, written by the zoo's
real exporter, for the compressed-tensors tests (zoo/deploy/compressed_tensors.py).

Each variant is a tiny random BERT classifier (zoo.models.tiny) run through a real recipe
(magnitude pruning 50% or 2:4, dynamic int8), exported with zoo.compress.export and loaded
back with zoo.client.load.load_folder: the model `zoo.load` returns for such an entry.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from zoo.compress.export import export_model
from zoo.deploy.compressed_tensors import sample_inputs
from zoo.models import get_model
from zoo.models.tiny import write_tiny_model
from zoo.recipes.manager import oneshot

pytest.importorskip("compressed_tensors")

ENCODER = r"re:.*encoder\.layer\.\d+\..*(query|key|value|dense)\.weight"
RECIPES = {
    "dense": None,
    "sparse50": f"{{type: OneShotMagnitudePruningModifier, sparsity: 0.5, params: ['{ENCODER}']}}",
    "sparse24": (
        "{type: OneShotMagnitudePruningModifier, sparsity: 0.5, mask_type: '2:4', "
        f"params: ['{ENCODER}']}}"
    ),
    "int8": "{type: DynamicQuantizationModifier, reduce_range: false}",
}
#: Small BERT sizes for the MiniLM classifier (the demo's architecture, mean pooling).
SMALL_ENCODER = {
    "vocab_size": 512,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}


def recipe(modifier: str) -> str:
    return f"stages:\n  s:\n    run_type: oneshot\n    modifiers:\n      - {modifier}\n"


def compress(model: nn.Module, variant: str) -> nn.Module:
    if RECIPES[variant] is not None:
        oneshot(model, recipe(RECIPES[variant]))
    return model.eval()


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_model("bert", tmp_path_factory.mktemp("tiny") / "bert")


@pytest.fixture(scope="session")
def zoo_bert(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """variant -> zoo export folder of the tiny BERT classifier (the `hf` architecture)."""
    root = tmp_path_factory.mktemp("zoo_bert")
    folders = {}
    for variant in RECIPES:
        model = compress(get_model("hf", path=str(tiny_bert)), variant)
        export_model(model, root / variant, sample_inputs=sample_inputs(model))
        folders[variant] = root / variant
    return folders


@pytest.fixture(scope="session")
def zoo_minilm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """variant -> zoo export folder of a small `minilm_classifier` (random weights)."""
    root = tmp_path_factory.mktemp("zoo_minilm")
    folders = {}
    for variant in ("sparse24", "int8"):
        torch.manual_seed(0)
        model = get_model("minilm_classifier", pretrained=False, encoder_config=SMALL_ENCODER)
        compress(model, variant)
        export_model(model, root / variant, sample_inputs=sample_inputs(model))
        folders[variant] = root / variant
    return folders
