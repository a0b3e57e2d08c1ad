"""Data-parallel plumbing for the trainer: one process per device, launched by ``torchrun``.

``torchrun --nproc-per-node N`` (or ``subnet distill train --nproc N``, which runs it) starts N
copies of the trainer with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous address in
the environment. :func:`dist_session` reads them (it never sets any), joins the process group
with the backend the device needs (``nccl`` on CUDA, ``gloo`` on CPU) and leaves it on exit,
so the trainer keeps its promise of leaving no process-wide state behind; a process group the
caller already set up is used as it is and left alone. Without those variables (or with one
process) there is no process group and every collective here is a no-op, so the same loop runs
on one device unchanged.

Every rank computes the same batch plan (a pure function of the step) and takes its share of
the global batch; gradients are averaged by DDP (or reduce-scattered by FSDP), so N ranks at a
global batch B follow one process at B up to the order of the floating-point sums.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from subnet.errors import ConfigError, SubnetError

T = TypeVar("T")
log = logging.getLogger(__name__)

PARALLEL_MODES = ("ddp", "fsdp")


class RankError(SubnetError):
    """One rank of a multi-process run failed: one line naming the rank (``-v`` logs the
    traceback). Most often a consequence, not the cause: when a peer dies, the survivors'
    next collective fails (gloo: "Connection reset by peer"), and the launcher names the rank
    that died first."""


@dataclass(frozen=True)
class Dist:
    """Where this process sits: its rank among ``world`` and the device it computes on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: Any = None  # torch.device
    backend: str = ""  # "" when there is no process group (one process)

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes checkpoints, the final model and the log."""
        return self.rank == 0

    def share(self, items: Sequence[T]) -> list[T]:
        """This rank's part of a global list: every ``world``-th item from ``rank`` on."""
        return list(items[self.rank :: self.world])

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as td

            td.barrier()

    def all_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over ranks (float64 on the CPU for gloo, on the device for nccl)."""
        if self.world == 1:
            return [float(v) for v in values]
        import torch
        import torch.distributed as td

        t = torch.tensor(list(values), dtype=torch.float64, device=self._comm_device())
        td.all_reduce(t)
        return [float(v) for v in t.cpu().tolist()]

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (lock-step loops under FSDP)."""
        return self.all_sum([1.0 if flag else 0.0])[0] > 0

    def gather(self, part: list[T]) -> list[list[T]]:
        """Every rank's list, in rank order, on every rank (picklable items)."""
        if self.world == 1:
            return [part]
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, part)
        return out

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return value
        import torch.distributed as td

        box: list[Any] = [value]
        td.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[no-any-return]

    def _comm_device(self) -> Any:
        return self.device if self.backend == "nccl" else "cpu"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as e:
        raise ConfigError(f"{name}={raw!r} is not an integer (set by torchrun)") from e


def local_rank_from_env() -> int:
    """``LOCAL_RANK`` as torchrun sets it (0 outside torchrun)."""
    return _env_int("LOCAL_RANK", 0)


def world_size_from_env() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside torchrun)."""
    return _env_int("WORLD_SIZE", 1)


def pick_device(preference: str, local_rank: int) -> Any:
    """``auto``: this rank's GPU if CUDA is available, else the CPU; else as asked."""
    import torch

    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {preference!r}: CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


@contextlib.contextmanager
def dist_session(device: str = "auto") -> Iterator[Dist]:
    """This process's :class:`Dist`, joining (and afterwards leaving) torchrun's process group."""
    import torch
    import torch.distributed as td

    world = world_size_from_env()
    rank, local_rank = _env_int("RANK", 0), local_rank_from_env()
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} outside WORLD_SIZE={world}")
    dev = pick_device(device, local_rank)
    if world == 1:
        yield Dist(device=dev)
        return
    if not td.is_available():
        raise ConfigError("this torch build has no torch.distributed")
    backend = "nccl" if dev.type == "cuda" else "gloo"
    owned = not td.is_initialized()
    prev_cuda = torch.cuda.current_device() if dev.type == "cuda" else None
    if owned:
        kwargs: dict[str, Any] = {"device_id": dev} if dev.type == "cuda" else {}
        td.init_process_group(backend, rank=rank, world_size=world, **kwargs)
    elif td.get_world_size() != world:
        raise ConfigError(f"a process group of {td.get_world_size()} exists, WORLD_SIZE={world}")
    try:
        yield Dist(rank, world, local_rank, dev, td.get_backend())
    except (SubnetError, KeyboardInterrupt):
        raise
    except Exception as e:
        log.debug("rank %d of %d failed", rank, world, exc_info=True)
        first = (str(e).strip().splitlines() or [""])[0][:400]
        raise RankError(f"rank {rank} of {world}: {type(e).__name__}: {first}") from e
    finally:
        if owned and td.is_initialized():
            td.destroy_process_group()
        if prev_cuda is not None:
            torch.cuda.set_device(prev_cuda)


def wrap(model: Any, dist: Dist, parallel: str) -> Any:
    """The module to train: the model itself on one process, else DDP or FSDP around it.

    FSDP (PyTorch's ``fully_shard``) shards each decoder layer and the rest of the model, for
    students whose weights, gradients and optimizer state do not fit one device.
    """
    if parallel not in PARALLEL_MODES:
        raise ConfigError(f"parallel={parallel!r}: expected one of {', '.join(PARALLEL_MODES)}")
    if dist.world == 1:
        return model
    if parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [dist.device] if dist.device.type == "cuda" else None
        # Buffers (rotary tables) never change: no broadcast, so ranks may run forward passes
        # of their own (sampling, evaluation) on the unwrapped model without a collective.
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)
    from torch.distributed.fsdp import fully_shard

    for layer in getattr(getattr(model, "model", None), "layers", []):
        fully_shard(layer)
    fully_shard(model)
    return model
