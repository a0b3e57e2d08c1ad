"""Deterministic torch for one block of work, and everything put back afterwards.

Training the tiny world (and the distilled student) must give the same bytes on any machine:
a fixed seed, deterministic kernels and a fixed intra-op thread count (float reductions depend
on it). All three are process-wide in torch, so a library function that set them and left
them set would change every later computation in the process (a validator scoring in the same
process, the next test). :func:`deterministic_torch` sets them for a ``with`` block and
restores the caller's RNG state, determinism flags and thread count on the way out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int) -> Iterator[None]:
    """Seeded RNG, deterministic algorithms and ``threads`` intra-op threads inside the block."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    prev_threads = torch.get_num_threads()
    prev_deterministic = torch.are_deterministic_algorithms_enabled()
    prev_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(prev_deterministic, warn_only=prev_warn_only)
            torch.set_num_threads(prev_threads)
