"""Data-parallel training under `torchrun` (PyTorch's launcher), switched on by config.

`train.distributed.nproc_per_node: N` (N > 1) makes a stage script re-launch itself as
`python -m torch.distributed.run --standalone --nproc-per-node N SCRIPT ARGS...`: N processes,
one model replica each, wrapped in DistributedDataParallel (gloo on CPU, nccl on GPUs).
Every rank walks the same seeded order of global batches of `train.batch_size` and takes
its own slice of each, so the optimizer sees the same global batch a single process would;
`batch_size` must therefore divide by the world size. Only rank 0 writes outputs.

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
from typing import Any

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


def check_batch_size(batch_size: int, world_size: int, where: str = "train") -> None:
    if batch_size % world_size:
        raise ConfigError(
            f"{where}.batch_size {batch_size} does not split evenly among {world_size} "
            f"processes ({where}.distributed.nproc_per_node): use a multiple of {world_size}, "
            "so that every step trains on the same global batch as one process would"
        )


def relaunch(
    cfg: DistributedConfig, argv: Sequence[str], batch_size: int, where: str = "train"
) -> int | None:
    """Run `argv` (a script and its arguments) under torchrun when `cfg` asks for more than
    one process and this is not already a launched rank; its exit status, else None.
    A batch size the world size does not divide is refused first, before any launch."""
    if cfg.nproc_per_node <= 1 or under_launcher():
        return None
    check_batch_size(batch_size, cfg.nproc_per_node, where)
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


def wrap(model: nn.Module, world: World) -> nn.Module:
    """The module to run forward/backward through: DDP across ranks, else the model."""
    if world.size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # broadcast_buffers: batch-norm statistics follow rank 0, so every replica stays equal.
    return DistributedDataParallel(model, broadcast_buffers=True)


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
