"""Tiny randomly initialised transformers models, written as ordinary model folders.

For tests and the smoke experiment: `write_tiny_model("llama", folder)` builds a small
Llama (or BERT classifier, or Mixtral) from code, with a BPE tokenizer trained offline on
the shipped Rotten Tomatoes reviews, and saves both with `save_pretrained`, so the folder
is exactly what a user's own model folder looks like to the `hf` architecture. Nothing is
downloaded; the same seed gives the same folder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zoo.errors import UnknownNameError
from zoo.fsutil import atomic_dir
from zoo.models.hf import quiet_transformers

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
#: Small enough to build and run in well under a second on two cores.
_SIZES: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 128,
}


def _llama(vocab: int) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        num_key_value_heads=2,
        architectures=["LlamaForCausalLM"],
        pad_token_id=0,
        bos_token_id=5,
        eos_token_id=6,
        **_SIZES,
    )


def _bert(vocab: int) -> Any:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=vocab,
        architectures=["BertForSequenceClassification"],
        pad_token_id=0,
        **_SIZES,
    )
    config.num_labels = 2  # a PretrainedConfig setting, not a BertConfig argument
    return config


def _mixtral(vocab: int) -> Any:
    from transformers import MixtralConfig

    return MixtralConfig(
        vocab_size=vocab,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        architectures=["MixtralForCausalLM"],
        pad_token_id=0,
        bos_token_id=5,
        eos_token_id=6,
        **_SIZES,
    )


TINY: dict[str, Callable[[int], Any]] = {"llama": _llama, "bert": _bert, "mixtral": _mixtral}


def shipped_texts(limit: int = 2000) -> list[str]:
    """Real English sentences shipped with the project: Rotten Tomatoes reviews."""
    from zoo.data.sources import get_dataset_spec

    spec = get_dataset_spec("rotten_tomatoes")
    train, _ = spec.read(spec.locate())
    return [str(t) for t in train["text"][:limit]]


def build_tokenizer(texts: list[str], vocab_size: int = 512) -> Any:
    """A BPE tokenizer trained on `texts` (deterministic), as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        bos_token="<s>",
        eos_token="</s>",
    )


def write_tiny_model(
    kind: str, folder: str | Path, *, seed: int = 0, vocab_size: int = 512
) -> Path:
    """Write a tiny random `kind` model ("llama", "bert", "mixtral") + tokenizer, atomically."""
    if kind not in TINY:
        raise UnknownNameError("tiny model", kind, TINY)
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    tokenizer = build_tokenizer(shipped_texts(), vocab_size)
    config = TINY[kind](len(tokenizer))
    auto = AutoModelForSequenceClassification if kind == "bert" else AutoModelForCausalLM
    torch.manual_seed(seed)
    with quiet_transformers():
        model = auto.from_config(config)
        with atomic_dir(folder) as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
    return Path(folder)
