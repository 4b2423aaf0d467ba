"""Real Fashion-MNIST images and a briefly trained cnn_small (the compression tests')."""

from tests.compress.conftest import fashion, trained_cnn

__all__ = ["fashion", "trained_cnn"]
