"""One-shot quality on the shipped MiniLM encoder: SparseGPT and Wanda beat magnitude.

Same layers, same calibration data (real movie-review sentences), 50% unstructured and
2:4; the measure is the layer-wise reconstruction error ||W X - W' X||_F.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo.models import get_model
from zoo.models.text import load_tokenizer
from zoo.modifiers.pruning_calibrated import (
    _Stats,
    layer_inputs_2d,
    reconstruction_error,
    sparsegpt_prune,
    wanda_prune,
)
from zoo.modifiers.pruning_masks import make_mask, parse_structure

SENTENCES = [
    "a gripping, beautifully acted drama that stays with you long after the credits.",
    "the plot is thin and the jokes land with a dull thud.",
    "an uneven but often charming comedy about growing up in a small town.",
    "it is hard to care about characters this flat.",
    "the director finds real poetry in ordinary lives.",
    "a tedious, overlong exercise in style over substance.",
    "funny, warm and surprisingly wise.",
    "the performances are strong, but the script lets everyone down.",
    "one of the most inventive animated films in years.",
    "a mess of clichés held together by a loud soundtrack.",
    "quietly devastating and never sentimental.",
    "even the talented cast cannot save this limp thriller.",
    "an exhilarating ride from start to finish.",
    "the dialogue sounds like it was written by committee.",
    "a smart, sharply observed satire of office life.",
    "i kept checking my watch.",
    "a moving portrait of a family coming apart and finding its way back.",
    "the special effects are impressive; everything else is not.",
    "a rare sequel that improves on the original.",
    "muddled, pretentious and painfully slow.",
    "the lead actress gives a fearless, career-best performance.",
    "a forgettable romance with no spark between its leads.",
    "clever, tender and full of surprises.",
    "a documentary that informs without ever lecturing.",
    "the twist is obvious from the first ten minutes.",
    "a joyous celebration of music and friendship.",
    "too long by half and twice as dull.",
    "the best horror film of the year, genuinely frightening.",
    "it wants to be profound but settles for being pretty.",
    "an affecting story told with grace and restraint.",
    "a lazy remake that adds nothing new.",
    "sharp writing and a terrific ensemble make this a winner.",
    "the characters make decisions no human being would make.",
    "a visually stunning epic with a beating heart.",
    "sloppy editing undermines every action scene.",
    "small in scale but large in ambition.",
    "a feel-good movie that earns its feelings.",
    "the humor is juvenile and the pacing is glacial.",
    "a haunting meditation on memory and loss.",
    "not so much a film as a feature-length advertisement.",
]

LAYERS = [
    "encoder.encoder.layer.0.attention.self.query",
    "encoder.encoder.layer.2.intermediate.dense",
    "encoder.encoder.layer.4.output.dense",
]


@pytest.fixture(scope="module")
def captured() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(weight, calibration inputs X as rows) for each layer of the dense model."""
    torch.manual_seed(0)
    model = get_model("minilm_classifier").eval()
    tokenizer = load_tokenizer()
    inputs: dict[str, list[torch.Tensor]] = {name: [] for name in LAYERS}
    handles = []
    for name in LAYERS:
        module = model.get_submodule(name)

        def hook(mod: nn.Module, args: tuple[torch.Tensor, ...], _name: str = name) -> None:
            inputs[_name].append(layer_inputs_2d(mod, args[0]))

        handles.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        for sentence in SENTENCES:  # one at a time: no padding tokens in X
            batch = tokenizer(sentence, return_tensors="pt")
            model(batch["input_ids"], batch["attention_mask"])
    for handle in handles:
        handle.remove()
    return {
        name: (model.get_submodule(name).weight.detach().clone(), torch.cat(inputs[name]))
        for name in LAYERS
    }


@pytest.mark.parametrize("pattern", ["unstructured", "2:4"])
@pytest.mark.parametrize("layer", LAYERS)
def test_sparsegpt_and_wanda_reconstruct_better_than_magnitude(
    captured: dict[str, tuple[torch.Tensor, torch.Tensor]], layer: str, pattern: str
) -> None:
    weight, x = captured[layer]
    structure = parse_structure(pattern)
    stats = _Stats(want_hessian=True)
    stats.add(x)

    magnitude = weight * make_mask(weight.abs(), 0.5, structure)
    wanda = weight * wanda_prune(weight, stats.feature_norm(), 0.5, structure)
    sparsegpt, keep = sparsegpt_prune(weight, stats.hessian(), 0.5, structure, block_size=128)

    for pruned in (magnitude, wanda, sparsegpt):
        assert abs(int((pruned == 0).sum()) - weight.numel() // 2) <= 1
    assert torch.equal(sparsegpt != 0, keep)
    errors = {
        name: reconstruction_error(weight, pruned, x)
        for name, pruned in (("magnitude", magnitude), ("wanda", wanda), ("sparsegpt", sparsegpt))
    }
    assert errors["sparsegpt"] < errors["magnitude"], errors
    assert errors["wanda"] < errors["magnitude"], errors
