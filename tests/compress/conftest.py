"""Real inputs for the compression tests: Fashion-MNIST images from the shipped IDX files
and a cnn_small trained on them for a few dozen steps (so int8 ranges look real)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from zoo.data.loaders import image_tensor
from zoo.data.sources import get_dataset_spec
from zoo.models import get_model


@pytest.fixture(scope="session")
def fashion() -> dict[str, torch.Tensor]:
    spec = get_dataset_spec("fashion_mnist")
    train, test = spec.read(spec.locate())
    assert test is not None
    pick = np.random.default_rng(0).choice(len(train["y"]), 1024, replace=False)
    return {
        "x": image_tensor(train["x"][pick], spec),
        "y": torch.from_numpy(train["y"][pick].astype(np.int64)),
        "test": image_tensor(test["x"][:64], spec),
    }


@pytest.fixture(scope="session")
def trained_cnn(fashion: dict[str, torch.Tensor]) -> nn.Module:
    torch.manual_seed(0)
    model = get_model("cnn_small")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    for i in range(24):
        sl = slice(i * 32, i * 32 + 32)
        optimizer.zero_grad()
        F.cross_entropy(model(fashion["x"][sl]), fashion["y"][sl]).backward()
        optimizer.step()
    return model.eval()
