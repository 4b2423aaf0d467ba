"""Data-parallel training under `torchrun` (PyTorch's launcher), switched on by config.

`train.distributed.nproc_per_node: N` (N > 1) makes a stage script re-launch itself as
`python -m torch.distributed.run --standalone --nproc-per-node N SCRIPT ARGS...`: N processes,
one model replica each, wrapped in DistributedDataParallel (gloo on CPU, nccl on GPUs).
Every rank walks the same seeded order of global batches of `train.batch_size` and takes
its own slice of each, so the optimizer sees the same global batch a single process would;
`batch_size` must therefore divide by the world size. Only rank 0 writes outputs.

Recipes run unchanged on every rank (zoo.pipeline.compress): every rank counts the same
global steps, so schedules match one process; masks come from weights (or gradients) that
DDP keeps identical, so they are identical on every rank (checked at the end of training).
Buffers are synchronised after every step (`sync_buffers`): quantization observers take
the minimum / maximum over the ranks, which is exactly what one process would have observed
on the whole global batch, and the fake-quant scales are recomputed from them; batch-norm
running statistics are averaged (the mean exactly, the variance without the spread between
the ranks' slices). A module swap (QAT's fusion and fake-quant wrappers) rebuilds the DDP
wrapper (`Replicas`), which also re-broadcasts rank 0's state.

Past one machine: launch the same script with `torchrun --nnodes M --nproc-per-node N
--rdzv-backend c10d --rdzv-endpoint HOST:PORT` on every node (the environment it sets is
all this module reads).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from zoo.errors import ConfigError, DistributedError
from zoo.training.config import DistributedConfig


@dataclass(frozen=True)
class World:
    """This process's place among the ranks (a single process is rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def under_launcher() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def main_process() -> bool:
    """Rank 0 under torchrun, or a single process: the one that writes and reports."""
    return int(os.environ.get("RANK", "0")) == 0


def check_batch_size(
    batch_size: int, world_size: int, where: str = "train", switch: str | None = None
) -> None:
    """Refuse a `<where>.batch_size` that `world_size` ranks (set at `switch`, by default
    `<where>.distributed.nproc_per_node`) cannot split evenly."""
    if batch_size % world_size:
        switch = switch or f"{where}.distributed.nproc_per_node"
        raise ConfigError(
            f"{where}.batch_size {batch_size} does not split evenly among {world_size} "
            f"processes ({switch}): use a multiple of {world_size}, "
            "so that every step trains on the same global batch as one process would"
        )


def relaunch(
    cfg: DistributedConfig,
    argv: Sequence[str],
    batch_size: int,
    where: str = "train",
    switch: str | None = None,
) -> int | None:
    """Run `argv` (a script and its arguments) under torchrun when `cfg` asks for more than
    one process and this is not already a launched rank; its exit status, else None.
    A batch size the world size does not divide is refused first, before any launch."""
    if cfg.nproc_per_node <= 1 or under_launcher():
        return None
    check_batch_size(batch_size, cfg.nproc_per_node, where, switch)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={cfg.nproc_per_node}",
        *argv,
    ]
    # Each rank gets its share of the cores, not all of them each.
    threads = max(1, (os.cpu_count() or 1) // cfg.nproc_per_node)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return subprocess.run(cmd, env=env).returncode


def start(cfg: DistributedConfig) -> World:
    """Join the process group torchrun set up (a no-op for a single process)."""
    if not under_launcher():
        return World()
    import torch.distributed as dist

    backend = cfg.backend
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads())))
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def stop(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def _layout(model: nn.Module) -> tuple[Any, ...]:
    """What a DDP wrapper is built on: the module tree and the parameter tensors."""
    modules = tuple((name, type(module)) for name, module in model.named_modules())
    return modules, tuple(id(p) for p in model.parameters())


class Replicas:
    """The module to run forward/backward through: the model itself for one process, else
    a DistributedDataParallel wrapper of it, rebuilt whenever a recipe swapped modules or
    parameters (QAT's fusion and fake-quant wrappers), since DDP registers its gradient
    hooks and buffer lists once, when it is built."""

    def __init__(self, model: nn.Module, world: World) -> None:
        self.model = model
        self.world = world
        self._built_on: tuple[Any, ...] | None = None
        self._ddp: nn.Module | None = None
        self.builds = 0

    def runner(self) -> nn.Module:
        if self.world.size == 1:
            return self.model
        layout = _layout(self.model)
        if self._ddp is None or layout != self._built_on:
            from torch.nn.parallel import DistributedDataParallel

            self._ddp = None  # the old wrapper's reducer (and its gradient hooks) goes first
            # Building broadcasts rank 0's parameters and buffers; buffers are kept equal
            # afterwards by sync_buffers, after every step, so DDP need not re-send them.
            # find_unused_parameters: a recipe may leave parameters out of a step (experts
            # a router did not pick, exits not taken) and DDP must not wait for them.
            self._ddp = DistributedDataParallel(
                self.model, forward_sync_buffers=False, find_unused_parameters=True
            )
            self._built_on = layout
            self.builds += 1
        return self._ddp


def _is_observer(module: nn.Module) -> bool:
    from torch.ao.quantization.observer import ObserverBase

    return isinstance(module, ObserverBase)


def _is_fake_quant(module: nn.Module) -> bool:
    from torch.ao.quantization.fake_quantize import FakeQuantizeBase

    return isinstance(module, FakeQuantizeBase)


def _reduce_flat(tensors: list[torch.Tensor], op: Any, average: bool = False) -> None:
    """All-reduce `tensors` as one flat message and write the result back in place."""
    if not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    dist.all_reduce(flat, op=op)
    if average:
        flat /= dist.get_world_size()
    at = 0
    with torch.no_grad():
        for tensor in tensors:
            tensor.copy_(flat[at : at + tensor.numel()].view_as(tensor))
            at += tensor.numel()


def sync_buffers(model: nn.Module, world: World) -> None:
    """Make every rank's buffers equal after a step (see the module docstring): observers'
    ranges become the range over all ranks, fake-quant scales follow them, batch-norm
    running statistics are averaged."""
    if world.size == 1:
        return
    import torch.distributed as dist

    lows: list[torch.Tensor] = []
    highs: list[torch.Tensor] = []
    averaged: list[torch.Tensor] = []
    quant_owned: set[int] = set()
    for module in model.modules():
        if _is_observer(module) or _is_fake_quant(module):
            quant_owned.update(id(b) for b in module.buffers(recurse=False))
        low, high = getattr(module, "min_val", None), getattr(module, "max_val", None)
        if _is_observer(module) and isinstance(low, torch.Tensor):
            lows.append(low)
            highs.append(cast(torch.Tensor, high))
    for module in model.modules():
        for buffer in module.buffers(recurse=False):
            if id(buffer) not in quant_owned and buffer.is_floating_point():
                averaged.append(buffer)
    # float64 holds every float32 exactly; +-inf (an observer that saw nothing) survives.
    _reduce_flat(lows, dist.ReduceOp.MIN)
    _reduce_flat(highs, dist.ReduceOp.MAX)
    _reduce_flat(averaged, dist.ReduceOp.SUM, average=True)
    for module in model.modules():
        if _is_fake_quant(module):
            _refresh_qparams(cast(Any, module))


@torch.no_grad()
def _refresh_qparams(fake_quant: Any) -> None:
    """Recompute a fake-quant module's scale and zero point from its (synchronised)
    observer, as its own forward does while the observer is on."""
    low = fake_quant.activation_post_process.min_val
    if not bool(fake_quant.observer_enabled[0]) or low.numel() == 0 or not low.isfinite().all():
        return  # observer off, or no data seen yet (just swapped in): nothing to follow
    scale, zero_point = fake_quant.calculate_qparams()
    fake_quant.scale.resize_(scale.shape).copy_(scale)
    fake_quant.zero_point.resize_(zero_point.shape).copy_(zero_point)


def shard(batches: Iterable[Any], world: World) -> Iterator[Any]:
    """This rank's slice of each global batch `(inputs: dict, labels)`."""
    for inputs, labels in batches:
        if world.size == 1:
            yield inputs, labels
            continue
        pick = slice_of(len(labels), world)
        yield {k: v[pick] for k, v in inputs.items()}, labels[pick]


def slice_of(n: int, world: World) -> slice:
    """Contiguous near-equal parts of n examples (the last global batch may be short)."""
    base, extra = divmod(n, world.size)
    start_at = world.rank * base + min(world.rank, extra)
    return slice(start_at, start_at + base + (1 if world.rank < extra else 0))


def all_sum(values: list[float], world: World) -> list[float]:
    """Element-wise sum over the ranks (the values themselves for one process)."""
    if world.size == 1:
        return values
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor]


def state_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_replicas_equal(model: nn.Module, world: World) -> None:
    """Raise unless every rank holds byte-identical weights and buffers."""
    if world.size == 1:
        return
    import torch.distributed as dist

    digests: list[Any] = [None] * world.size
    dist.all_gather_object(digests, state_digest(model))
    if len(set(digests)) != 1:
        raise DistributedError(f"data-parallel replicas diverged: state digests {digests}")
