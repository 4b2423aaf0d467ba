"""ONNX Runtime's fastest form of a static int8 CNN: the image-input convolution in fp32.

Measured on this CPU (ONNX Runtime 1.32, batch 64, the channel-pruned small CNN): as QDQ,
ONNX Runtime runs the first convolution, one input channel, as an int8 QLinearConv that
takes two thirds of the whole model's time (a 9-element int8 dot product per output is
all overhead), and its uint8 MaxPool in NCHW layout is ten times its fp32 one. So a
convolution with at most NARROW_INPUT_CHANNELS input channels, and the ReLU / pooling
after it, run in fp32 here: their input is no longer rounded to int8 (the same weights,
each on its int8 grid), and the int8 layers after them start from the quantization the
entry calibrated. The session must then not move that quantization back up over the
pooling (`DISABLED_OPTIMIZERS`), or it would run the slow uint8 pooling again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from zoo.fsutil import temp_beside
from zoo.runtimes.table import require

NARROW_INPUT_CHANNELS = 4  # an image's 1 to 3 channels, or a little more
DISABLED_OPTIMIZERS = ("QDQPropagationTransformer",)
_INT8_COMPUTE = {"Conv", "Gemm", "MatMul"}  # ops ONNX Runtime fuses with Q/DQ into int8
_FLOAT_FOLLOWERS = {"Relu", "MaxPool"}  # ops the fp32 region extends over


def has_narrow_int8_conv(model: nn.Module) -> bool:
    """Some torch.ao int8 convolution of `model` has at most NARROW_INPUT_CHANNELS inputs."""
    from torch.ao.nn.quantized.modules.conv import _ConvNd

    return any(
        isinstance(m, _ConvNd) and m.in_channels <= NARROW_INPUT_CHANNELS for m in model.modules()
    )


class _Graph:
    """Producers and consumers of an ONNX graph's values."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.nodes = list(graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output}

    def consumers(self, value: str) -> list[Any]:
        return [n for n in self.nodes if value in n.input]

    def upstream(self, value: str, op_type: str) -> Any | None:
        """The `op_type` node that makes `value`, looking through Casts."""
        node = self.producer.get(value)
        while node is not None and node.op_type == "Cast":
            node = self.producer.get(node.input[0])
        return node if node is not None and node.op_type == op_type else None

    def constant_shape(self, value: str) -> tuple[int, ...] | None:
        from onnx import numpy_helper

        node = self.producer.get(value)
        if node is not None and node.op_type == "Constant":
            return tuple(numpy_helper.to_array(node.attribute[0].t).shape)
        for init in self.graph.initializer:
            if init.name == value:
                return tuple(init.dims)
        return None


def _narrow_int8_convs(graph: _Graph) -> list[Any]:
    """The Convs fed by a dequantized input and a dequantized constant weight with at most
    NARROW_INPUT_CHANNELS input channels."""
    found = []
    for node in graph.nodes:
        if node.op_type != "Conv":
            continue
        weight = graph.upstream(node.input[1], "DequantizeLinear")
        shape = None if weight is None else graph.constant_shape(weight.input[0])
        if shape is None or len(shape) < 2 or shape[1] > NARROW_INPUT_CHANNELS:
            continue
        if graph.upstream(node.input[0], "DequantizeLinear") is not None:
            found.append(node)
    return found


def _bypass_qdq_after(graph: _Graph, value: str) -> None:
    """From `value` down: keep ReLU / pooling in fp32, skipping the Quantize / Dequantize
    pairs between them, up to the pair that feeds the next int8 layer."""
    while True:
        after = graph.consumers(value)
        if len(after) != 1:
            return
        node = after[0]
        if node.op_type in _FLOAT_FOLLOWERS:
            value = node.output[0]
            continue
        if node.op_type != "QuantizeLinear":
            return
        pair = node
        while True:  # Q -> Cast* -> DQ, one consumer each
            nxt = graph.consumers(pair.output[0])
            if len(nxt) != 1:
                return
            pair = nxt[0]
            if pair.op_type != "Cast":
                break
        users = graph.consumers(pair.output[0])
        if pair.op_type != "DequantizeLinear" or any(u.op_type in _INT8_COMPUTE for u in users):
            return
        for user in users:
            for index, name in enumerate(user.input):
                if name == pair.output[0]:
                    user.input[index] = value
        # The bypassed pair still reads `value` until it is dropped: go on from its user.
        if len(users) != 1 or users[0].op_type not in _FLOAT_FOLLOWERS:
            return
        value = users[0].output[0]


def _drop_unused(model: Any) -> None:
    graph = model.graph
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)


def float_narrow_convs(
    source: str | os.PathLike[str], target: str | os.PathLike[str]
) -> tuple[Path, int]:
    """Rewrite the QDQ file `source` so that its narrow-input convolutions (and the ReLU /
    pooling after them) compute in fp32; written atomically to `target`, checked by
    onnx.checker. Returns the path and how many convolutions became fp32."""
    onnx = require("onnxruntime", "onnx")
    model = onnx.load(str(source))
    graph = _Graph(model.graph)
    rewritten = 0
    for conv in _narrow_int8_convs(graph):
        dequantize = graph.upstream(conv.input[0], "DequantizeLinear")
        feed = None if dequantize is None else graph.upstream(dequantize.input[0], "QuantizeLinear")
        if feed is None:
            continue
        conv.input[0] = feed.input[0]  # the float input, not its int8 rounding
        _bypass_qdq_after(graph, conv.output[0])
        rewritten += 1
    _drop_unused(model)
    onnx.checker.check_model(model)
    out = Path(target)
    with temp_beside(out) as tmp:
        onnx.save(model, str(tmp))
        os.replace(tmp, out)
    return out, rewritten
