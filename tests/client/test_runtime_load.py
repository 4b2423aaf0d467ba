"""`zoo.load(ref, runtime=...)`: a published model served by ONNX Runtime or OpenVINO."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.client.conftest import SMALL
from zoo.client import api
from zoo.errors import ConfigError


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_load_on_a_runtime_reproduces_the_recorded_outputs(
    small_store: Callable[..., str], tmp_path: Path, runtime: str
) -> None:
    store = small_store()
    model = api.load(SMALL.stub, registry=store, runtime=runtime)
    assert model.zoo_ref == SMALL.stub + "@v1"
    samples = load_file(str(tmp_path / "exports" / "export-0" / "samples" / "batch.safetensors"))
    expected = samples.pop("output")
    images = samples["input"]  # one unnamed input: passed positionally, as to the torch model
    with torch.inference_mode():
        torch.testing.assert_close(model(images), expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(model(x=images[:1]), expected[:1], atol=1e-4, rtol=1e-4)


def test_keep_compressed_is_torch_only(small_store: Callable[..., str]) -> None:
    with pytest.raises(ConfigError, match="keep_compressed"):
        api.load(SMALL.stub, registry=small_store(), runtime="onnxruntime", keep_compressed=True)
