"""The vLLM engine: AsyncLLM with raw logprobs and continuous batching across callers.

Every prompt of every call becomes its own vLLM request, so concurrent callers share batches;
``generate_stream`` is one such request with delta outputs (``RequestOutputKind.DELTA``), so a
chunk holds the tokens that arrived since the last one (several when the consumer lags).
Distributions are raw (``logprobs_mode="raw_logprobs"``). ``score`` is one prefill of
``prompt + completion`` with ``prompt_logprobs=k``: that gives the top-k and the given token's
logprob and rank at every completion position.

EOS logprob (the logsumexp over the model's EOS ids), in the same pass wherever the EOS rules
allow. vLLM reports, per prompt position, only the top-k and the given token (the CPU runner has
no per-token prompt scoring: ``prompt_logprob_token_ids`` needs the V2 runner; logits processors
do not see prompt positions; the sampled-position ``logprob_token_ids`` replaces the top-k of
every request in a shared batch). So ``eos_logprobs`` is exact where the row lists every EOS id
(as the given token or in the top-k) and elsewhere the upper bound of :mod:`scoring.eos`, which
decides the EOS rules exactly wherever it stays below 1/2. Where it does not (some EOS id
unlisted, the bound at 1/2 or more, a non-EOS token), each unlisted id is read by a probe:
``prompt + completion[:j] + [eos]`` with ``prompt_logprobs=0``, whose last entry is that id's
logprob (it reads the prefix cache: about one KV block of compute). With one EOS id and k >= 2
no position needs one, so a score costs one request per answer; ``requests_sent`` counts them.

The engine core runs in a spawned process: the program that creates it needs a
``if __name__ == "__main__":`` guard. Start-up is tens of seconds. On a small shared CPU box set
``VLLM_CPU_OMP_THREADS_BIND=nobind`` in the environment (the ``subnet`` command does when it is
unset): vLLM's default core binding slows it about 5x there. This module never changes the
process environment itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scoring.eos import eos_bounds
from subnet.engine.common import (
    DEFAULT_MAX_TOP_LOGPROBS,
    prompt_seed,
    read_model_facts,
    validate_generate,
    validate_score,
)
from subnet.engine.types import (
    Completion,
    EngineInfo,
    EngineInputError,
    Provenance,
    SamplingParams,
    Scored,
    TokenIds,
)
from subnet.errors import EngineError

# On CPU the KV cache is a slice of RAM: 1 GiB holds far more than the models served here need.
# (vLLM's legacy VLLM_CPU_KVCACHE_SPACE environment variable, in GiB, still overrides it.)
_CPU_KV_CACHE_BYTES = 1 << 30


def _top_k(entries: dict[int, Any], k: int) -> tuple[list[int], list[float]]:
    """The k best of a vLLM logprob dict (top-k plus possibly the actual token), best first."""
    best = sorted(entries.items(), key=lambda kv: (-kv[1].logprob, kv[1].rank or 0))[:k]
    return [t for t, _ in best], [lp.logprob for _, lp in best]


class VllmEngine:
    """vLLM ``AsyncLLM`` (CPU build or GPU); see the module docstring."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str | None = None,
        device: str | None = None,
        max_model_len: int | None = None,
        max_top_logprobs: int = DEFAULT_MAX_TOP_LOGPROBS,
        **engine_args: Any,
    ) -> None:
        import vllm
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        facts = read_model_facts(model_path, max_model_len)
        platform = "cpu" if current_platform.is_cpu() else current_platform.device_type
        if device is not None and device.split(":")[0] != platform:
            raise EngineError(f"vLLM runs on {platform} here, not {device}")
        dtype = dtype or facts.dtype
        if platform == "cpu":
            engine_args.setdefault("kv_cache_memory_bytes", _CPU_KV_CACHE_BYTES)
        args = AsyncEngineArgs(
            model=str(model_path),
            dtype=dtype,  # type: ignore[arg-type]  # the engine validates it
            # One extra slot: vLLM wants room to generate a token after a scored sequence.
            max_model_len=facts.max_model_len + 1,
            logprobs_mode="raw_logprobs",
            max_logprobs=max_top_logprobs,
            enforce_eager=True,
            enable_prefix_caching=True,
            skip_tokenizer_init=True,
            disable_log_stats=True,
            seed=0,
            **engine_args,
        )
        try:
            llm = AsyncLLM.from_engine_args(args)
        except Exception as e:  # vLLM raises anything from config errors to worker deaths
            raise EngineError(f"vLLM could not start on {model_path}: {e}") from e
        where = (
            "cpu"
            if platform == "cpu"
            else (f"{platform}:0 ({current_platform.get_device_name(0)})")
        )
        self._llm: AsyncLLM | None = llm
        self._eos = facts.eos_token_ids
        self.requests_sent = 0  # vLLM requests issued (one per sequence generated, scored, probed)
        self._info = EngineInfo(
            vocab_size=facts.vocab_size,
            eos_token_ids=facts.eos_token_ids,
            max_model_len=facts.max_model_len,
            max_top_logprobs=max_top_logprobs,
            provenance=Provenance(
                engine="vllm",
                version=f"vllm {vllm.__version__}",
                dtype=str(llm.model_config.dtype).removeprefix("torch."),
                device=where,
                model=str(model_path),
            ),
        )
        # vLLM keeps a traceback that passes through this frame (an import it tried during
        # startup), so the frame outlives the call: drop our local, or the engine survives
        # close() and its __del__ fails at interpreter exit.
        del llm

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def _outputs(self, ids: list[int], params: Any) -> AsyncGenerator[Any, None]:
        """vLLM's outputs for one request, errors translated; closing it aborts the request."""
        from vllm.inputs import TokensPrompt

        if self._llm is None:
            raise EngineError("engine is closed")
        self.requests_sent += 1
        stream = self._llm.generate(TokensPrompt(prompt_token_ids=ids), params, uuid.uuid4().hex)
        try:
            # aclosing: an ``async for`` left early does not close vLLM's generator, whose
            # close is what aborts the request in the engine core.
            async with contextlib.aclosing(stream):
                async for out in stream:
                    yield out
        except EngineInputError:
            raise
        except ValueError as e:  # validation we did not anticipate: still the caller's input
            raise EngineInputError(f"vLLM rejected the request: {e}") from e
        except Exception as e:
            raise EngineError(f"vLLM request failed: {e}") from e

    async def _run(self, ids: list[int], params: Any) -> Any:
        final = None
        async for out in self._outputs(ids, params):
            final = out
        if final is None or not final.finished:
            raise EngineError("vLLM returned no final output")
        return final

    def _request(self, params: SamplingParams, index: int, kind: Any) -> Any:
        from vllm import SamplingParams as VllmParams

        return VllmParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=prompt_seed(params.seed, index),
            logprobs=params.top_logprobs,
            ignore_eos=params.ignore_eos,
            stop_token_ids=[] if params.ignore_eos else list(self._eos),
            detokenize=False,
            output_kind=kind,
        )

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        validate_generate(self._info, prompts, params)
        from vllm.sampling_params import RequestOutputKind

        final = RequestOutputKind.FINAL_ONLY
        outs = await asyncio.gather(
            *(
                self._run([int(t) for t in p], self._request(params, i, final))
                for i, p in enumerate(prompts)
            )
        )
        return [self._completion(o.outputs[0], params.top_logprobs, final=True) for o in outs]

    def generate_stream(
        self, prompt: TokenIds, params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        validate_generate(self._info, [prompt], params)  # now, not at the first iteration
        return self._stream([int(t) for t in prompt], params)

    async def _stream(
        self, ids: list[int], params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        from vllm.sampling_params import RequestOutputKind

        request = self._request(params, 0, RequestOutputKind.DELTA)  # index 0: as generate([p])
        finished = False
        async with contextlib.aclosing(self._outputs(ids, request)) as outs:
            async for out in outs:
                finished = bool(out.finished)
                if out.outputs[0].token_ids or finished:
                    yield self._completion(out.outputs[0], params.top_logprobs, final=finished)
        if not finished:
            raise EngineError("vLLM returned no final output")

    def _completion(self, out: Any, k: int, *, final: bool) -> Completion:
        """A completion (``final``) or a stream delta from one vLLM ``CompletionOutput``."""
        tokens = list(out.token_ids)
        logprobs = list(out.logprobs or [])
        reason = out.finish_reason if final else ""
        if (final and reason not in ("stop", "length")) or len(logprobs) != len(tokens):
            raise EngineError(f"vLLM finished with {out.finish_reason!r}")
        top = [_top_k(entries, k) for entries in logprobs]
        return Completion(
            token_ids=np.asarray(tokens, dtype=np.int64),
            sampled_logprobs=np.asarray(
                [entries[t].logprob for t, entries in zip(tokens, logprobs, strict=True)],
                np.float32,
            ),
            top_ids=np.asarray([ids for ids, _ in top], np.int64).reshape(len(tokens), k),
            top_logprobs=np.asarray([lps for _, lps in top], np.float32).reshape(len(tokens), k),
            finish_reason=reason,
            provenance=self._info.provenance,
        )

    async def score(
        self,
        prompts: Sequence[TokenIds],
        completions: Sequence[TokenIds],
        k: int,
    ) -> list[Scored]:
        pairs = validate_score(self._info, prompts, completions, k)
        return list(await asyncio.gather(*(self._score_one(p, c, k) for p, c in pairs)))

    async def _score_one(self, prompt: list[int], completion: list[int], k: int) -> Scored:
        from vllm import SamplingParams as VllmParams

        start, n = len(prompt), len(completion)
        out = await self._run(
            prompt + completion,
            VllmParams(max_tokens=1, prompt_logprobs=k, detokenize=False),
        )
        rows = list(out.prompt_logprobs)[start : start + n]
        if len(rows) != n or any(row is None for row in rows):
            raise EngineError("vLLM returned incomplete prompt logprobs")
        top = [_top_k(row, k) for row in rows]
        top_ids = np.asarray([ids for ids, _ in top], np.int64).reshape(n, k)
        top_lps = np.asarray([lps for _, lps in top], np.float32).reshape(n, k)
        target = np.asarray(
            [row[t].logprob for t, row in zip(completion, rows, strict=True)], np.float32
        )
        bounds = eos_bounds(top_ids, top_lps, completion, target, self._eos)
        eos = bounds.upper.astype(np.float32)
        lookups = [
            (int(j), e)
            for j in np.flatnonzero(bounds.undecided(completion, self._eos))
            for e in self._eos
            if e not in rows[j]
        ]
        probed = await asyncio.gather(
            *(self._eos_probe(prompt + completion[:j], e) for j, e in lookups)
        )
        for j in {j for j, _ in lookups}:
            found = [lp for (i, _), lp in zip(lookups, probed, strict=True) if i == j]
            eos[j] = np.logaddexp.reduce([bounds.listed[j], *found])
        return Scored(
            top_ids=top_ids,
            top_logprobs=top_lps,
            target_logprobs=target,
            target_ranks=np.asarray(
                [row[t].rank for t, row in zip(completion, rows, strict=True)], np.int64
            ),
            eos_logprobs=eos,
            provenance=self._info.provenance,
        )

    async def _eos_probe(self, prefix: list[int], eos: int) -> float:
        """Raw logprob of the EOS id ``eos`` right after ``prefix`` (see the module docstring)."""
        from vllm import SamplingParams as VllmParams

        out = await self._run(
            [*prefix, eos],
            VllmParams(
                max_tokens=1,
                prompt_logprobs=0,
                detokenize=False,
                skip_reading_prefix_cache=False,
            ),
        )
        last = list(out.prompt_logprobs)[-1]
        if not last or eos not in last:
            raise EngineError("vLLM returned no EOS logprob for a probe")
        return float(last[eos].logprob)

    async def close(self) -> None:
        # On the loop thread: shutdown cancels the output handler task, which must not see the
        # core die first (it would log an EngineDeadError).
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()
            del llm
            gc.collect()  # AsyncLLM sits in cycles: collect it now, not at interpreter exit
