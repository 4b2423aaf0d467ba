"""Small architectures for 1x28x28 images (Fashion-MNIST, MNIST)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class SmallCNN(nn.Module):
    """Pairs of conv/bn/relu blocks with 2x2 pooling, then global pooling and a linear head."""

    def __init__(self, channels: Sequence[int], num_classes: int, in_channels: int = 1) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = in_channels
        for i, size in enumerate(channels):
            blocks.append(conv_block(width, size))
            if i < len(channels) - 1:
                blocks.append(nn.MaxPool2d(2))
            width = size
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


def mlp(
    hidden: Sequence[int] = (256, 128), num_classes: int = 10, in_features: int = 784
) -> nn.Module:
    """MLP for flattened 28x28 images."""
    return MLP(in_features, list(hidden), num_classes)


def cnn_small(
    channels: Sequence[int] = (16, 32, 64), num_classes: int = 10, in_channels: int = 1
) -> nn.Module:
    """Small conv/bn/relu CNN for 28x28 images."""
    return SmallCNN(list(channels), num_classes, in_channels)
