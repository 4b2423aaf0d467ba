"""OpenVINO: a model compiled for the CPU as an inference-only `nn.Module`, and NNCF's
int8 post-training quantization of float exports."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from zoo.runtimes.table import require

Inputs = dict[str, torch.Tensor]


def _numpy(inputs: Inputs) -> dict[str, Any]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in inputs.items()}


class OpenVinoModel(nn.Module):
    """`model(**inputs)` runs an OpenVINO model (an ONNX file's path or an `ov.Model`)
    compiled for the CPU with as many threads as torch uses."""

    def __init__(self, model: str | os.PathLike[str] | Any, threads: int | None = None) -> None:
        super().__init__()
        ov = require("openvino")
        core = ov.Core()
        source = core.read_model(str(model)) if isinstance(model, str | os.PathLike) else model
        self.input_names = [port.get_any_name() for port in source.inputs]
        self.compiled = core.compile_model(
            source,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
                # On CPUs with bf16 units OpenVINO would otherwise compute fp32 models in
                # bf16: a different model. int8 models keep their int8 kernels.
                "INFERENCE_PRECISION_HINT": "f32",
            },
        )
        self.request = self.compiled.create_infer_request()

    def forward(self, *args: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """Inputs by name, or positionally in the order of the model's forward()."""
        inputs = {**dict(zip(self.input_names, args, strict=False)), **inputs}
        feed = _numpy({name: inputs[name] for name in self.input_names})
        result = self.request.infer(feed)
        return torch.from_numpy(result[self.compiled.output(0)].copy())


def quantize_openvino(
    path: str | os.PathLike[str], calibration: Sequence[Inputs], *, transformer: bool
) -> Any:
    """NNCF's int8 (post-training, activation ranges from `calibration`) of an ONNX file,
    as an `ov.Model` ready to compile."""
    ov = require("openvino")
    nncf = require("openvino", "nncf")
    model = ov.Core().read_model(str(path))
    batches = [_numpy(b) for b in calibration]
    return nncf.quantize(
        model,
        nncf.Dataset(batches),
        subset_size=len(batches),
        model_type=nncf.ModelType.TRANSFORMER if transformer else None,
    )
