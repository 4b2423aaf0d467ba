"""Deployment runtimes: ONNX export and models run by ONNX Runtime or OpenVINO.

`table` names every runtime and the package it needs; `onnx_export` writes a checked
ONNX file of any zoo model; `onnxrt` and `openvino` wrap their runtime's compiled model
as an inference-only `nn.Module`, so the benchmark's timer and `zoo.load` treat every
runtime alike; `prepare` turns a zoo model into one on a named runtime.
"""
