"""The one table of runtimes a zoo model can run on, and the packages they need."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from zoo.errors import RuntimePackageMissingError, UnknownRuntimeError


@dataclass(frozen=True)
class Runtime:
    name: str
    package: str  # the module to import (the PyPI name is in `install`)
    install: str  # the command that installs it, with our pin
    summary: str


RUNTIMES: tuple[Runtime, ...] = (
    Runtime("torch", "torch", "pip install torch==2.13.0", "PyTorch eager (fp32, or int8)"),
    Runtime(
        "onnxruntime",
        "onnxruntime",
        "pip install onnx==1.23.2 onnxruntime==1.32.0",
        "ONNX Runtime, CPU execution provider, on the model's ONNX export",
    ),
    Runtime(
        "openvino",
        "openvino",
        "pip install onnx==1.23.2 openvino==2026.4.1 nncf==3.4.0",
        "OpenVINO on CPU, compiled from the model's ONNX export",
    ),
)
_BY_NAME = {r.name: r for r in RUNTIMES}


def is_installed(runtime: Runtime) -> bool:
    return importlib.util.find_spec(runtime.package) is not None


def installed_runtimes() -> list[str]:
    return [r.name for r in RUNTIMES if is_installed(r)]


def runtime_named(name: str) -> Runtime:
    """The runtime called `name`; an unknown name lists the known and installed ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownRuntimeError(name, _BY_NAME, installed_runtimes()) from None


def require(name: str, package: str | None = None) -> ModuleType:
    """Import the runtime's package (or `package`, a further one it needs) or say how to
    install it."""
    runtime = runtime_named(name)
    wanted = package or runtime.package
    if importlib.util.find_spec(wanted) is None:
        raise RuntimePackageMissingError(runtime.name, wanted, runtime.install)
    return importlib.import_module(wanted)
