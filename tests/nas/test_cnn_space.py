"""The CNN a search varies: depth, widths, kernel and hidden width are arguments, and the
defaults build exactly the demo's CNN (same parameters, same initial weights)."""

from __future__ import annotations

import pytest
import torch

from zoo.models import get_model
from zoo.training import seed_everything


def _build(**kwargs: object) -> torch.nn.Module:
    seed_everything(0)
    return get_model("cnn_small", num_classes=10, **kwargs)


def test_default_kernel_is_the_demo_cnn() -> None:
    demo = _build(channels=[16, 32, 64], hidden=[256])
    explicit = _build(channels=[16, 32, 64], hidden=[256], kernel_size=3)
    assert demo.state_dict().keys() == explicit.state_dict().keys()
    for name, tensor in demo.state_dict().items():
        assert torch.equal(tensor, explicit.state_dict()[name]), name


@pytest.mark.parametrize(("channels", "kernel"), [([4], 5), ([8, 16], 7), ([4, 8, 16, 32], 3)])
def test_depth_width_and_kernel_vary(channels: list[int], kernel: int) -> None:
    model = _build(channels=channels, kernel_size=kernel, hidden=[16])
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == channels
    assert all(c.kernel_size == (kernel, kernel) for c in convs)
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": [8], "kernel_size": 4}, "odd positive integer"),
        ({"channels": [4, 4, 4, 4, 4]}, "5 blocks halve a 28-pixel image to nothing"),
        ({"channels": []}, "0 blocks"),
    ],
)
def test_impossible_architectures_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _build(**kwargs)
