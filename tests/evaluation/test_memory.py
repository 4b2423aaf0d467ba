"""Peak memory, measured in a fresh process per model: a bigger model needs more."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zoo.errors import MemoryMeasureError
from zoo.evaluation.memory import peak_memory_mb
from zoo.models import get_model
from zoo.models.checkpoint import save_checkpoint


def _text_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    ids = torch.randint(1000, 2000, (batch_size, 48), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _image_inputs(batch_size: int) -> dict[str, torch.Tensor]:
    return {"x": torch.randn(batch_size, 1, 28, 28, generator=torch.Generator().manual_seed(0))}


def test_minilm_needs_more_memory_than_the_cnn_and_both_more_than_zero(tmp_path: Path) -> None:
    cnn = save_checkpoint(get_model("cnn_small").eval(), tmp_path / "cnn")
    minilm = save_checkpoint(
        get_model("minilm_classifier", pretrained=False).eval(), tmp_path / "minilm"
    )
    cnn_mb = peak_memory_mb(cnn, {1: _image_inputs(1), 64: _image_inputs(64)})
    minilm_mb = peak_memory_mb(minilm, {1: _text_inputs(1), 64: _text_inputs(64)})
    assert set(cnn_mb) == set(minilm_mb) == {1, 64}
    for size in (1, 64):
        assert minilm_mb[size] > cnn_mb[size] > 0, (size, minilm_mb, cnn_mb)
    # 22.7M float32 weights alone are ~87 MB; the whole figure must at least hold them.
    assert minilm_mb[1] > 80
    assert minilm_mb[64] >= minilm_mb[1]  # a high water never comes down


def test_a_folder_that_does_not_load_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MemoryMeasureError, match=r"measuring the memory of .*nowhere failed"):
        peak_memory_mb(tmp_path / "nowhere", {1: _image_inputs(1)})


def test_inputs_that_share_storage_are_measured(tmp_path: Path) -> None:
    """Batches cut from one tensor (the benchmark's own inputs) share storage."""
    data = _image_inputs(64)["x"]
    cnn = save_checkpoint(get_model("cnn_small", channels=[8, 16]).eval(), tmp_path / "cnn")
    peaks = peak_memory_mb(cnn, {1: {"x": data[:1]}, 64: {"x": data}})
    assert peaks[64] >= peaks[1] > 0
