"""The engine seam: request parameters, outputs and the protocol both engines implement.

Two implementations (``vllm.py`` on AsyncLLM, ``hf.py`` on transformers) return these same
structures, so the miner, the validator and the distillation tools never know which engine ran.

Every distribution reported here is the model's **raw** next-token distribution (temperature 1,
no top-p/top-k filtering), whatever the sampling parameters were: that is what the validator
compares against the teacher. Arrays are numpy, positions first: ``[P]`` or ``[P, k]``; top-k
rows are sorted by descending logprob.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from subnet.errors import EngineError

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]
# Token ids in: plain sequences or the int arrays the engines hand out (Completion.token_ids).
TokenIds = Sequence[int] | npt.NDArray[np.integer]


class EngineInputError(EngineError, ValueError):
    """A request the engine cannot serve (empty prompt, id >= vocab, k or length over limits).

    The engine stays usable after raising it.
    """


@dataclass(frozen=True)
class Provenance:
    """What produced an output, recorded with every verdict so it can be reproduced later."""

    engine: str  # "vllm" | "hf"
    version: str  # engine package version
    dtype: str  # "float32", "bfloat16", ...
    device: str  # "cpu", "cuda:0 (NVIDIA H100)", ...
    model: str  # model path or id as loaded

    def to_dict(self) -> dict[str, str]:
        return {
            "engine": self.engine,
            "version": self.version,
            "dtype": self.dtype,
            "device": self.device,
            "model": self.model,
        }


@dataclass(frozen=True)
class EngineInfo:
    """Static facts about the loaded model that callers validate requests against."""

    vocab_size: int
    eos_token_ids: tuple[int, ...]  # any of them ends a completion (generation_config order)
    max_model_len: int  # prompt + completion tokens
    max_top_logprobs: int  # largest k the engine will report
    provenance: Provenance


# Sampling floors both engines honour. Below 0.01 vLLM silently raises the temperature to 0.01
# while transformers' softmax of logits / 1e-300 overflows to NaN; a top_p below float32's
# range rounds to 0 and masks every token. Requests outside them are refused (400), not clamped.
MIN_TEMPERATURE = 0.01  # a positive temperature must be at least this (0 = greedy)
MIN_TOP_P = 1e-6


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. The reported distributions ignore temperature/top_p (always raw)."""

    max_tokens: int = 16
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    seed: int | None = None
    top_logprobs: int = 0  # k: raw top-k reported per generated position (0 = none)
    ignore_eos: bool = False


@dataclass(frozen=True)
class Completion:
    """One generated completion with its raw per-position distributions."""

    token_ids: IntArray  # [P]
    sampled_logprobs: FloatArray  # [P] raw logprob of each sampled token
    top_ids: IntArray  # [P, k] (k may be 0)
    top_logprobs: FloatArray  # [P, k] sorted descending
    # "stop" (an EOS id, kept as the last token) | "length"; "" on a stream chunk but the last
    finish_reason: str
    provenance: Provenance


@dataclass(frozen=True)
class Scored:
    """Teacher-forced view of a given completion: one entry per completion position."""

    top_ids: IntArray  # [P, k]
    top_logprobs: FloatArray  # [P, k] sorted descending
    target_logprobs: FloatArray  # [P] logprob of the given token
    target_ranks: IntArray  # [P] 1-based rank of the given token (ties: ranked last)
    # [P] log of the total probability of the EOS set at that position (logsumexp over
    # ``EngineInfo.eos_token_ids``): the probability that the model stops there. An engine that
    # reads only the top-k in its pass (vLLM) reports, where some EOS id is outside the row, an
    # upper bound instead, below 1/2 wherever the EOS rules read it (``scoring.eos``).
    eos_logprobs: FloatArray
    provenance: Provenance


class Engine(Protocol):
    """An inference engine: batched generation and teacher-forced scoring.

    Concurrent callers may call both methods at once; implementations batch them.
    """

    @property
    def info(self) -> EngineInfo: ...

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        """One completion per prompt."""
        ...

    async def score(
        self,
        prompts: Sequence[TokenIds],
        completions: Sequence[TokenIds],
        k: int,
    ) -> list[Scored]:
        """Teacher-force each completion after its prompt; top-k raw distribution per position."""
        ...

    async def close(self) -> None: ...


class StreamingEngine(Engine, Protocol):
    """An engine that also hands out one completion token by token, as it is computed.

    Both real engines implement it. It is a separate protocol only so that engine wrappers
    that cannot stream (the demo adversaries in ``neurons/demo_fixtures/adversary.py``) still
    are Engines; the miner checks for ``generate_stream`` and falls back to ``generate`` without it.
    """

    def generate_stream(
        self, prompt: TokenIds, params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        """The completion of one prompt in chunks, each as soon as the engine has it.

        Input is validated like ``generate`` when called (``EngineInputError`` before anything
        runs). Each chunk holds only the new positions (at least one, except possibly an empty
        last chunk) with the same raw distributions ``generate`` reports; ``finish_reason`` is
        "" on every chunk but the last. The chunks concatenated equal ``generate([prompt],
        params)[0]``, seed included. Closing the iterator early (``aclose``, cancellation)
        stops the request in the engine.
        """
        ...
