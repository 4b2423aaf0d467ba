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


def conv_block(cin: int, cout: int, kernel_size: int = 3) -> nn.Sequential:
    # "same" padding: the 2x2 pooling alone sets the feature map's side, whatever the kernel.
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size=kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class SmallCNN(nn.Module):
    """conv/bn/relu blocks, each followed by 2x2 max pooling, then a linear head.

    head="flatten" keeps the spatial layout of the last feature map (better accuracy on
    28x28 images for the same compute); head="avg" pools it away (fewer head weights).
    `hidden` adds linear layers before the classifier: cheap to run, and like the fully
    connected layers of classic CNNs they hold most weights and prune well. Depth (the
    length of `channels`), widths, `kernel_size` and `hidden` are what the architecture
    search (zoo/nas) varies.
    """

    def __init__(
        self,
        channels: Sequence[int],
        num_classes: int,
        in_channels: int = 1,
        image_size: int = 28,
        head: str = "flatten",
        hidden: Sequence[int] = (),
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if head not in ("flatten", "avg"):
            raise ValueError(f"head must be 'flatten' or 'avg', not {head!r}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd positive integer, not {kernel_size!r}")
        if not channels or image_size >> len(channels) < 1:
            raise ValueError(
                f"{len(channels)} blocks halve a {image_size}-pixel image to nothing: "
                "use between 1 and log2(image_size) blocks"
            )
        blocks: list[nn.Module] = []
        width, side = in_channels, image_size
        for size in channels:
            blocks += [conv_block(width, size, kernel_size), nn.MaxPool2d(2)]
            width, side = size, side // 2
        self.features = nn.Sequential(*blocks)
        self.pool = nn.Flatten() if head == "flatten" else nn.AdaptiveAvgPool2d(1)
        width = width * (side * side if head == "flatten" else 1)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.hidden = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.hidden(torch.flatten(self.pool(self.features(x)), 1)))


def mlp(
    hidden: Sequence[int] = (256, 128), num_classes: int = 10, in_features: int = 784
) -> nn.Module:
    """MLP for flattened 28x28 images."""
    return MLP(in_features, list(hidden), num_classes)


def cnn_small(
    channels: Sequence[int] = (16, 32, 64),
    num_classes: int = 10,
    in_channels: int = 1,
    image_size: int = 28,
    head: str = "flatten",
    hidden: Sequence[int] = (),
    kernel_size: int = 3,
) -> nn.Module:
    """Small conv/bn/relu CNN for square images, optionally with hidden linear layers."""
    return SmallCNN(
        list(channels), num_classes, in_channels, image_size, head, list(hidden), kernel_size
    )
