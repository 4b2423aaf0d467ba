"""The x86 int8 backend: which quantized engine runs, whether the CPU has VNNI, and
torch.ao's deprecation noise kept away from users."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import torch

from zoo.modifiers.quantization.torch_private import vnni_probe

BACKEND = "x86"


def use_backend() -> None:
    """Make the x86 (fbgemm + oneDNN) kernels the quantized engine, once: every entry
    point calls this, only the first call (or one after a user changed it) sets it."""
    if torch.backends.quantized.engine != BACKEND:
        use_backend()


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch.ao.quantization warns on every call that it is deprecated; we chose it on
    purpose (zoo/modifiers/quantization/__init__.py says why): noise to users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.ao\..*")
        yield


def vnni_supported() -> bool:
    """True when this CPU has VNNI int8 dot products (no 16-bit overflow in fbgemm)."""
    probe = vnni_probe()
    return bool(probe()) if callable(probe) else False
