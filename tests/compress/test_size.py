"""The acceptance number: a 90%-pruned int8 cnn_small export is <= 1/15 of the dense one.

Counted: every file a runtime needs to rebuild the weights, model.safetensors +
config.json, on both sides. The model is the pipeline's cnn_small (channels 16-32-64,
flatten head, 10 classes), briefly trained on real Fashion-MNIST, pruned to 90% by
magnitude and statically quantized through the zoo's own recipe runner.
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

from tests.compress.recipes import PRUNE_THEN_PTQ
from zoo.compress.export import export_model
from zoo.recipes import oneshot


def test_pruned90_int8_cnn_is_at_most_a_fifteenth_of_dense(
    trained_cnn: nn.Module, fashion: dict, tmp_path: Path
) -> None:
    assert trained_cnn.classifier.in_features == 64 * 3 * 3  # the flatten head
    dense = export_model(copy.deepcopy(trained_cnn), tmp_path / "dense", compress=False)
    model = copy.deepcopy(trained_cnn)
    oneshot(model, PRUNE_THEN_PTQ, [fashion["x"][i : i + 64] for i in range(0, 256, 64)])
    small = export_model(model, tmp_path / "small", sample_inputs=fashion["test"][:4])
    ratio = dense.deployable_bytes / small.deployable_bytes
    print(
        f"dense {dense.deployable_bytes} B, pruned90+int8 {small.deployable_bytes} B "
        f"(weights {small.sizes['model.safetensors']}, config {small.sizes['config.json']}): "
        f"1/{ratio:.1f}"
    )
    assert ratio >= 15
