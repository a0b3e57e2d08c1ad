"""Inference engines behind one protocol (:class:`Engine`): ``vllm`` (default) and ``hf``.

Importing this package imports neither torch nor vllm; :func:`load_engine` imports the one asked
for. A vLLM engine spawns its core process: create it under an ``if __name__ == "__main__":``
guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from subnet.engine.common import DEFAULT_MAX_TOP_LOGPROBS
from subnet.engine.types import (
    Completion,
    Engine,
    EngineInfo,
    EngineInputError,
    Provenance,
    SamplingParams,
    Scored,
    StreamingEngine,
    TokenIds,
)
from subnet.errors import EngineError

__all__ = [
    "Completion",
    "Engine",
    "EngineInfo",
    "EngineInputError",
    "Provenance",
    "SamplingParams",
    "Scored",
    "StreamingEngine",
    "TokenIds",
    "load_engine",
]


def load_engine(
    kind: Literal["vllm", "hf"],
    model_path: str | Path,
    *,
    dtype: str | None = None,
    device: str | None = None,
    max_model_len: int | None = None,
    max_top_logprobs: int = DEFAULT_MAX_TOP_LOGPROBS,
    **engine_args: Any,
) -> StreamingEngine:
    """Load ``model_path`` (an HF-format directory) on the named engine.

    ``dtype`` defaults to the checkpoint's, ``device`` to the best available, ``max_model_len``
    to the model's position limit minus one. Extra keyword arguments go to vLLM's
    ``AsyncEngineArgs`` (e.g. ``gpu_memory_utilization``); the hf engine takes none.
    """
    if kind == "vllm":
        from subnet.engine.vllm import VllmEngine

        return VllmEngine(
            model_path,
            dtype=dtype,
            device=device,
            max_model_len=max_model_len,
            max_top_logprobs=max_top_logprobs,
            **engine_args,
        )
    if kind == "hf":
        if engine_args:
            raise EngineError(f"the hf engine takes no extra arguments: {sorted(engine_args)}")
        from subnet.engine.hf import HFEngine

        return HFEngine(
            model_path,
            dtype=dtype,
            device=device,
            max_model_len=max_model_len,
            max_top_logprobs=max_top_logprobs,
        )
    raise EngineError(f"unknown engine {kind!r}: expected 'vllm' or 'hf'")
