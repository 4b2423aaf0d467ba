"""Small models and inputs shared by the conditional-computation tests."""

from __future__ import annotations

import torch
from torch import nn

from tests.compress.recipes import recipe
from zoo.models import get_model
from zoo.modifiers.moe import moe_layers
from zoo.recipes import oneshot

UPCYCLE_CNN = "{type: MoEUpcyclingModifier, blocks: [hidden.0], num_experts: 4, top_k: 2}"
#: The two layers of tests.compress.export_identity.tiny_bert.
BERT_LAYERS = "[encoder.encoder.layer.0, encoder.encoder.layer.1]"


def cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return get_model("cnn_small", channels=[8, 16], hidden=[32]).eval()


def images(n: int = 16) -> torch.Tensor:
    return torch.randn(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def scramble_routers(model: nn.Module) -> None:
    for _, moe in moe_layers(model):
        nn.init.normal_(moe.router.weight, std=3.0)


def distinct_experts(model: nn.Module, dead: int | None = 1) -> None:
    """Experts that compute different functions (as after training), expert `dead` (if
    any) all zeros."""
    torch.manual_seed(3)
    for _, moe in moe_layers(model):
        for i, expert in enumerate(moe.experts):
            with torch.no_grad():
                for p in expert.parameters():
                    p.mul_(1.0 + 0.5 * i).add_(0.01 * torch.randn_like(p))
                    if i == dead:
                        p.zero_()


def bert(layers: int = 4, seed: int = 0, vocab: int = 500) -> nn.Module:
    """A tiny randomly initialised MiniLM classifier (`vocab=30522` reads real reviews
    through MiniLM's tokenizer)."""
    torch.manual_seed(seed)
    config = {
        "hidden_size": 32,
        "num_hidden_layers": layers,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "vocab_size": vocab,
        "max_position_embeddings": 64,
        "hidden_dropout_prob": 0.0,  # train-mode steps comparable: no dropout noise
        "attention_probs_dropout_prob": 0.0,
    }
    model = get_model("minilm_classifier", pretrained=False, encoder_config=config, dropout=0.0)
    return model.eval()


def with_exits(model: nn.Module, exits: str, criterion: str, threshold: float) -> nn.Module:
    fields = f"exits: {exits}, criterion: {criterion}, threshold: {threshold}"
    return oneshot(model, recipe(f"{{type: EarlyExitModifier, {fields}}}"))
