"""The transformers engine: batched generation with a KV cache and one-pass teacher forcing.

The fast path on CPU (no 40 s vLLM start) and a second opinion next to vLLM. Reported
distributions are ``log_softmax`` of the raw fp32 logits; temperature and top-p only shape the
sampling. Model calls run on the engine's one worker thread, so they are serialized (from any
event loop or thread) and never block an event loop: ``generate`` and ``score`` are one job
each (batched); ``generate_stream`` is one job per token, so concurrent streams interleave
token by token, each with its own KV cache.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM

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
    Provenance,
    SamplingParams,
    Scored,
    TokenIds,
)
from subnet.errors import EngineError

T = TypeVar("T")
# fp32 logprobs the scoring pass materialises at once (256 MB): a batch of 128 answers of 16
# tokens over a 150k vocabulary is scored in about 1/5 of the batch at a time.
SCORE_CHUNK_ELEMENTS = 64 * 1024 * 1024
# One decode step's numpy outputs per row: token, its logprob, top-k ids, top-k logprobs.
Step = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    return str(device)


def _left_pad(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Token ids, attention mask and position ids of left-padded rows (pads are masked out)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        if r:
            ids[i, width - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask[i, width - len(r) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return ids.to(device), mask.to(device), positions.to(device)


def _sample(
    logits: torch.Tensor, params: SamplingParams, generators: list[torch.Generator | None]
) -> torch.Tensor:
    """One token per row: argmax at temperature 0, else temperature + top-p with the row's RNG."""
    if params.temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits / params.temperature, dim=-1)
    if params.top_p < 1:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(-1) - sorted_probs  # mass strictly above each token
        drop = before >= params.top_p
        drop[..., 0] = False  # the most likely token always stays (top_p rounds in float32)
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    out = [
        torch.multinomial(probs[i].cpu(), 1, generator=g).to(logits.device)
        for i, g in enumerate(generators)
    ]
    return torch.cat(out)


class _Decode:
    """Incremental decoding of one batch: the prefill, then one sampled token per row per step.

    ``generate`` and ``generate_stream`` both run this, so a stream is the same computation as
    a batch of one, token for token. Not thread-safe: one step at a time (the worker thread).
    """

    def __init__(self, rows: list[list[int]], params: SamplingParams, device: torch.device):
        self.params = params
        self.generators: list[torch.Generator | None] = []
        for i in range(len(rows)):
            seed = prompt_seed(params.seed, i)
            self.generators.append(None if seed is None else torch.Generator().manual_seed(seed))
        self.ids, self.mask, self.positions = _left_pad(rows, device)
        self.past: Any = None
        self.last: torch.Tensor | None = None  # the tokens sampled by the previous step

    @torch.inference_mode()
    def step(self, model: Any) -> Step:
        if self.last is None:
            # Only the last position's logits: the prompt's would be [B, T, V] (gigabytes at a
            # 129k-id vocabulary) and the head over them most of the prefill's compute.
            out = model(
                input_ids=self.ids,
                attention_mask=self.mask,
                position_ids=self.positions,
                logits_to_keep=1,
            )
        else:
            ones = torch.ones((len(self.last), 1), dtype=self.mask.dtype, device=self.mask.device)
            self.mask = torch.cat([self.mask, ones], 1)
            self.positions = self.positions[:, -1:] + 1
            out = model(
                input_ids=self.last[:, None],
                attention_mask=self.mask,
                position_ids=self.positions,
                past_key_values=self.past,
                use_cache=True,
            )
        self.past = out.past_key_values
        logits = out.logits[:, -1].float()
        logprobs = torch.log_softmax(logits, dim=-1)
        token = _sample(logits, self.params, self.generators)
        self.last = token
        values, indices = logprobs.topk(self.params.top_logprobs, dim=-1)
        return (
            token.cpu().numpy().astype(np.int64),
            logprobs.gather(-1, token[:, None])[:, 0].cpu().numpy().astype(np.float32),
            indices.cpu().numpy().astype(np.int64),
            values.cpu().numpy().astype(np.float32),
        )


class HFEngine:
    """transformers + torch on CPU or CUDA; see the module docstring."""

    def __init__(
        self,
        model_path: str | Path,
        *,
        dtype: str | None = None,
        device: str | None = None,
        max_model_len: int | None = None,
        max_top_logprobs: int = DEFAULT_MAX_TOP_LOGPROBS,
    ) -> None:
        facts = read_model_facts(model_path, max_model_len)
        dtype = dtype or facts.dtype
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise EngineError(f"unknown dtype {dtype!r}")
        self._device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        # SDPA attention silently drops attention-logit soft-capping (Gemma 2: logprobs off by
        # ~3e-2); eager attention applies it, as vLLM does.
        attention = "eager" if facts.attn_softcap else None
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(model_path), dtype=torch_dtype, attn_implementation=attention
            )
        except (OSError, ValueError) as e:
            raise EngineError(f"cannot load {model_path} with transformers: {e}") from e
        self._model = model.to(self._device).eval()  # type: ignore[arg-type]
        self._eos = np.asarray(facts.eos_token_ids, dtype=np.int64)
        self._info = EngineInfo(
            vocab_size=facts.vocab_size,
            eos_token_ids=facts.eos_token_ids,
            max_model_len=facts.max_model_len,
            max_top_logprobs=max_top_logprobs,
            provenance=Provenance(
                engine="hf",
                version=f"transformers {transformers.__version__}, torch {torch.__version__}",
                dtype=dtype,
                device=_device_name(self._device),
                model=str(model_path),
            ),
        )
        # One worker thread, not an asyncio lock: callers may live on different event loops.
        # Jobs run in submission order, so streams take turns token by token.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hf-engine")

    @property
    def info(self) -> EngineInfo:
        return self._info

    async def generate(
        self, prompts: Sequence[TokenIds], params: SamplingParams
    ) -> list[Completion]:
        validate_generate(self._info, prompts, params)
        rows = [[int(t) for t in p] for p in prompts]
        return await self._run(self._generate, rows, params)

    def generate_stream(
        self, prompt: TokenIds, params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        validate_generate(self._info, [prompt], params)  # now, not at the first iteration
        return self._stream([int(t) for t in prompt], params)

    async def _stream(
        self, row: list[int], params: SamplingParams
    ) -> AsyncGenerator[Completion, None]:
        decode = _Decode([row], params, self._device)
        for step in range(params.max_tokens):
            # A cancelled await leaves the running step to finish on the worker; no more follow.
            token, sampled, top_ids, top_lp = await self._run(self._step, decode)
            reason = "length" if step + 1 == params.max_tokens else ""
            if not params.ignore_eos and int(token[0]) in self._eos:
                reason = "stop"
            yield Completion(
                token_ids=token,
                sampled_logprobs=sampled,
                top_ids=top_ids,
                top_logprobs=top_lp,
                finish_reason=reason,
                provenance=self._info.provenance,
            )
            if reason:
                return

    async def score(
        self,
        prompts: Sequence[TokenIds],
        completions: Sequence[TokenIds],
        k: int,
    ) -> list[Scored]:
        pairs = validate_score(self._info, prompts, completions, k)
        return await self._run(self._score, pairs, k)

    async def close(self) -> None:
        await self._run(self._release)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    # -- worker-thread side --------------------------------------------------------------

    def _live_model(self) -> Any:
        if self._model is None:
            raise EngineError("engine is closed")
        return self._model

    def _step(self, decode: _Decode) -> Step:
        return decode.step(self._live_model())

    def _release(self) -> None:
        self._model = None
        if self._device.type == "cuda":
            torch.cuda.empty_cache()

    def _generate(self, rows: list[list[int]], params: SamplingParams) -> list[Completion]:
        model = self._live_model()
        decode = _Decode(rows, params, self._device)
        steps: list[Step] = []
        done = np.zeros(len(rows), dtype=bool)
        for _ in range(params.max_tokens):
            steps.append(decode.step(model))
            if not params.ignore_eos:
                done |= np.isin(steps[-1][0], self._eos)
                if done.all():
                    break
        all_tokens, all_lp, all_top_ids, all_top_lp = (
            np.stack([st[j] for st in steps], 1) for j in range(4)
        )
        results = []
        for i in range(len(rows)):
            length, reason = all_tokens.shape[1], "length"
            if not params.ignore_eos:
                stops = np.flatnonzero(np.isin(all_tokens[i], self._eos))
                if stops.size:
                    length, reason = int(stops[0]) + 1, "stop"
            results.append(
                Completion(
                    token_ids=all_tokens[i, :length].copy(),
                    sampled_logprobs=all_lp[i, :length].copy(),
                    top_ids=all_top_ids[i, :length].copy(),
                    top_logprobs=all_top_lp[i, :length].copy(),
                    finish_reason=reason,
                    provenance=self._info.provenance,
                )
            )
        return results

    @torch.inference_mode()
    def _score(self, pairs: list[tuple[list[int], list[int]]], k: int) -> list[Scored]:
        model = self._live_model()
        ids, mask, positions = _left_pad([p + c for p, c in pairs], self._device)
        # Left padding puts every completion at the end of its row: keep only those logits.
        lengths = [len(c) for _, c in pairs]
        keep = max(lengths) + 1
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep)
        # Position j of a completion is predicted by the logits one step before it, so the
        # first keep - 1 columns predict the completions, right-aligned like the rows.
        logits, width = out.logits[:, :-1], keep - 1
        targets = torch.zeros((len(pairs), width), dtype=torch.long)
        for i, (_, completion) in enumerate(pairs):
            targets[i, width - len(completion) :] = torch.tensor(completion, dtype=torch.long)
        eos = torch.as_tensor(self._eos, device=self._device)
        # Whole rows at a time, as many as fit SCORE_CHUNK_ELEMENTS of fp32 logprobs: one set
        # of tensor ops per chunk instead of per answer (a per-answer loop of small ops held the
        # GIL for ~0.1 ms per answer), with memory bounded for large vocabularies.
        rows_per_chunk = max(1, SCORE_CHUNK_ELEMENTS // max(1, width * logits.shape[-1]))
        parts: list[list[np.ndarray]] = [[], [], [], [], []]
        for lo in range(0, len(pairs), rows_per_chunk):
            logprobs = torch.log_softmax(logits[lo : lo + rows_per_chunk].float(), dim=-1)
            target = targets[lo : lo + rows_per_chunk].to(self._device)
            target_lp = logprobs.gather(-1, target[..., None])
            # vLLM's convention: the count of tokens at least as likely (a tie ranks the
            # given token last), so both engines agree where logits tie exactly.
            ranks = (logprobs >= target_lp).sum(-1)
            values, indices = logprobs.topk(k, dim=-1)
            eos_lp = logprobs[..., eos].logsumexp(-1)
            outputs = (indices, values, target_lp[..., 0], ranks, eos_lp)
            for part, t in zip(parts, outputs, strict=True):
                part.append(t.cpu().numpy())
        top_ids, top_lp, target_lps, target_ranks, eos_lps = (np.concatenate(p) for p in parts)
        return [
            Scored(
                top_ids=top_ids[i, width - p :].astype(np.int64),
                top_logprobs=top_lp[i, width - p :].astype(np.float32),
                target_logprobs=target_lps[i, width - p :].astype(np.float32),
                target_ranks=target_ranks[i, width - p :].astype(np.int64),
                eos_logprobs=eos_lps[i, width - p :].astype(np.float32),
                provenance=self._info.provenance,
            )
            for i, p in enumerate(lengths)
        ]
