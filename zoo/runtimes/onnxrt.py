"""ONNX Runtime: an InferenceSession as an inference-only `nn.Module`, and ONNX Runtime's
own int8 quantizer for float exports."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.runtimes.table import require

Inputs = dict[str, torch.Tensor]


def _numpy(inputs: Inputs) -> dict[str, Any]:
    return {name: tensor.detach().cpu().numpy() for name, tensor in inputs.items()}


class OnnxRuntimeModel(nn.Module):
    """`model(**inputs)` runs the ONNX file through an ONNX Runtime InferenceSession on
    the CPU, with as many threads as torch uses (so the runtimes compare on equal terms).
    The session holds the model in memory: the file may go once it is built."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int | None = None,
        disabled_optimizers: Sequence[str] = (),
    ) -> None:
        super().__init__()
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: no notes about unused initializers
        # Idle threads sleep instead of spinning: spinning pools of ONNX Runtime, torch and
        # OpenVINO in one process would starve each other on a few cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            str(path),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(disabled_optimizers) or None,
        )
        self.input_names = [i.name for i in self.session.get_inputs()]

    def forward(self, *args: torch.Tensor, **inputs: torch.Tensor) -> torch.Tensor:
        """Inputs by name, or positionally in the order of the model's forward()."""
        inputs = {**dict(zip(self.input_names, args, strict=False)), **inputs}
        feed = _numpy({name: inputs[name] for name in self.input_names})
        return torch.from_numpy(self.session.run(None, feed)[0])


class _Calibration:
    """ONNX Runtime's CalibrationDataReader over a few batches of real inputs."""

    def __init__(self, batches: Sequence[Inputs]) -> None:
        self._batches = iter([_numpy(b) for b in batches])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._batches, None)


def quantize_onnx(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    calibration: Sequence[Inputs],
    *,
    dynamic: bool,
) -> Path:
    """ONNX Runtime's int8 of a float ONNX file: `dynamic` (weights int8, activations
    quantized per batch: ONNX Runtime's advice for transformers) or static QDQ with
    activation ranges from `calibration` (CNNs). Written atomically to `target`."""
    quantization = require("onnxruntime", "onnxruntime.quantization")
    out = Path(target)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tmp = work / "int8.onnx"
        if dynamic:
            quantization.quantize_dynamic(
                str(source), str(tmp), per_channel=True, weight_type=quantization.QuantType.QInt8
            )
        else:
            quantization.quantize_static(
                str(source),
                str(tmp),
                _Calibration(calibration),
                quant_format=quantization.QuantFormat.QDQ,
                per_channel=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
            )
        os.replace(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
